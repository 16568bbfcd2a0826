"""Full-size checkpoints with no data: config.json plus a safetensors file whose header is real and
whose tensor bytes are a sparse hole (written as a header, then truncated out to the full size).

What `harness describe` and `plan` must count without reading tensor data: a 47B-parameter
Mixtral takes 93 GB on paper and a few MB on disk. The tensor names are the model's own (from the
meta device), laid out as transformers writes them, one tensor per expert
(``...experts.3.gate_up_proj``), unless ``fused=True`` keeps the 3-D ``[experts, ...]`` tensors.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

# Published shapes (each checkpoint's config.json), the suite of issue 15.
PUBLIC = {
    "olmoe-1b-7b": dict(model_type="olmoe", vocab_size=50304, hidden_size=2048, intermediate_size=1024,
                        num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16, num_experts=64,
                        num_experts_per_tok=8),
    "mixtral-8x7b": dict(model_type="mixtral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                         num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, num_local_experts=8,
                         num_experts_per_tok=2),
    "qwen3-30b-a3b": dict(model_type="qwen3_moe", vocab_size=151936, hidden_size=2048, intermediate_size=6144,
                          num_hidden_layers=48, num_attention_heads=32, num_key_value_heads=4, head_dim=128,
                          num_experts=128, num_experts_per_tok=8, moe_intermediate_size=768),
    "olmo-1b": dict(model_type="olmo", vocab_size=50304, hidden_size=2048, intermediate_size=8192,
                    num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16, tie_word_embeddings=True),
}
_SAFETENSORS_DTYPE = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}


def model_tensors(config: dict) -> dict[str, list]:
    """name -> [torch dtype, shape] of the config build's parameters (meta device, tied ones once)."""
    from workers.builds.meta import count

    return count(config, tensors=True)["tensors"]


def write_hollow_checkpoint(directory: Path, config: dict, tensors: dict, dtype: str = "bfloat16",
                            fused: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=1))
    st_dtype, size = _SAFETENSORS_DTYPE[dtype], {"bfloat16": 2, "float16": 2, "float32": 4}[dtype]
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, (_, shape) in tensors.items():
        parent, _, leaf = name.rpartition(".")
        parts = ([(f"{parent}.{e}.{leaf}", shape[1:]) for e in range(shape[0])]
                 if len(shape) == 3 and not fused else [(name, shape)])
        for part, part_shape in parts:
            n = size
            for d in part_shape:
                n *= d
            header[part] = {"dtype": st_dtype, "shape": list(part_shape), "data_offsets": [offset, offset + n]}
            offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path = directory / "model.safetensors"
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        fh.truncate(8 + len(raw) + offset)  # the data: a hole, no blocks on disk
    return directory
