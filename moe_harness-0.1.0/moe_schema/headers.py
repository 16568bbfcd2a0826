"""Checkpoint facts from safetensors headers alone: tensor names, dtypes and shapes, never their data.

A safetensors file starts with an 8-byte little-endian header length and a JSON header mapping each
tensor name to ``{"dtype", "shape", "data_offsets"}``. Reading those bytes is all it takes to count
a 47B-parameter checkpoint (and to estimate its memory) on a laptop: ``harness describe`` and
``harness plan`` count checkpoints this way, and the worker's admission check sizes them with it.

``count_tensors(tensors, config)`` counts the way ``workers.builds.params.count_params`` counts the
loaded model: routed experts are found by their names, in either layout a checkpoint may have:

- per expert (what transformers writes, and what the hub holds):
  ``model.layers.0.block_sparse_moe.experts.3.w1.weight`` — one block per prefix before
  ``.experts.``, ``E`` = the number of distinct indices;
- fused, one 3-D tensor per projection (``model.layers.0.mlp.experts.gate_up_proj``, ``[E, ...]``):
  every tensor of the module holding it belongs to the block, ``E`` = its first dimension.

A token uses ``k`` of a block's ``E`` experts (``num_experts_per_tok`` in the config, or the routing
strategy's count), so the block counts ``k / E`` as active. Shared experts (``shared_expert.``,
``shared_experts.``) carry no index and count whole. Torch-free.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

HEADER_LIMIT = 100 * 2**20  # safetensors' own limit on the JSON header (100 MB)
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
               "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
SUITE_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
_PER_EXPERT = re.compile(r"^(?P<block>.+)\.experts\.(?P<index>\d+)\.")
_EMBED = re.compile(r"(^|\.)(embed_tokens|wte|word_embeddings)\.weight$")
_LAYER = re.compile(r"(^|\.)layers\.(\d+)\.")
# Where families keep their experts per token in config.json, most common first.
TOP_K_KEYS = ("num_experts_per_tok", "num_experts_per_token", "moe_topk", "moe_top_k", "top_k", "moe_k",
              "num_selected_experts")
# Persistent buffers families save beside their weights (not parameters once loaded), found by
# surveying the installed transformers (benchmarks/moe_families.py): DeepSeek-style routers' bias
# (deepseek_v3, glm4_moe, exaone_moe, ...), MiniMax's lightning-attention decays. Two families keep
# the router bias as a parameter instead.
BUFFER_SUFFIXES = ("e_score_correction_bias", "diagonal_decay", "key_decay", "query_decay", "slope_rate")
BIAS_IS_PARAMETER = ("laguna", "ernie4_5_moe")


class HeaderError(ValueError):
    """A file that is not a readable safetensors header; the message names the file."""


def read_header(path: str | Path) -> dict:
    """The JSON header of one safetensors file (``__metadata__`` dropped): name -> {dtype, shape, ...}."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise HeaderError(f"{path}: too short for a safetensors header")
        (n,) = struct.unpack("<Q", head)
        if n > HEADER_LIMIT:
            raise HeaderError(f"{path}: header length {n} is over safetensors' limit of {HEADER_LIMIT}")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError(f"{path}: header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise HeaderError(f"{path}: header is not a JSON object")
    header.pop("__metadata__", None)
    return header


def checkpoint_tensors(directory: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (safetensors dtype, shape) over every ``*.safetensors`` file of a checkpoint directory."""
    directory = Path(directory)
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise HeaderError(f"{directory}: no *.safetensors files")
    out = {}
    for f in files:
        for name, info in read_header(f).items():
            out[name] = (info["dtype"], tuple(int(d) for d in info["shape"]))
    return out


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def tensor_bytes(tensors: dict, dtype: str = "auto") -> int:
    """Bytes the tensors take in memory in ``dtype`` (a suite dtype), or as stored with ``"auto"``."""
    size = SUITE_DTYPE_BYTES.get(dtype)
    return sum(_numel(shape) * (size or DTYPE_BYTES.get(dt, 4)) for dt, shape in tensors.values())


def expert_blocks(tensors: dict) -> dict[str, tuple[int, int]]:
    """experts module -> (parameters of its routed experts, number of experts)."""
    # a fused expert tensor is a 3-D tensor of a module named ``experts`` (where workers.moe_blocks
    # finds them); other 3-D weights (a linear-attention conv1d, say) are dense
    fused = {name.rpartition(".")[0]: shape[0] for name, (_, shape) in tensors.items()
             if len(shape) == 3 and name.rpartition(".")[0].rpartition(".")[2] == "experts"}
    sizes: dict[str, int] = {}
    indices: dict[str, set] = {}
    for name, (_, shape) in tensors.items():
        parent = name.rpartition(".")[0]
        m = _PER_EXPERT.match(name)
        block = parent if parent in fused else (f"{m['block']}.experts" if m else None)
        if block is None:
            continue
        sizes[block] = sizes.get(block, 0) + _numel(shape)
        if m and parent not in fused:
            indices.setdefault(block, set()).add(int(m["index"]))
    return {b: (size, fused[b] if b in fused else len(indices[b])) for b, size in sizes.items()}


def model_tensors(tensors: dict, config: dict) -> dict:
    """The tensors the model loads: without saved buffers, and without layers past
    ``num_hidden_layers`` (DeepSeek-V3's multi-token-prediction layer, which transformers skips)."""
    layers = config.get("num_hidden_layers")
    buffers = tuple(b for b in BUFFER_SUFFIXES
                    if not (b == "e_score_correction_bias" and config.get("model_type") in BIAS_IS_PARAMETER))
    out = {}
    for name, value in tensors.items():
        if name.endswith(buffers):
            continue
        m = _LAYER.search(name)
        if m and isinstance(layers, int) and int(m[2]) >= layers:
            continue
        out[name] = value
    return out


def count_tensors(tensors: dict, config: dict, experts_per_token: float | None = None) -> dict:
    """Parameters of a checkpoint from its tensor table and config.json: ``count_params``'s keys."""
    tensors = model_tensors(tensors, config)
    names = [n for n in tensors if _EMBED.search(n)]
    embed_name = min(names, key=len) if names else None
    has_head = "lm_head.weight" in tensors
    tied = config.get("tie_word_embeddings", not has_head)
    total = sum(_numel(shape) for _, shape in tensors.values())
    embed = _numel(tensors[embed_name][1]) if embed_name else 0
    if has_head and tied and embed_name:  # stored twice but one parameter once loaded
        total -= _numel(tensors["lm_head.weight"][1])
    elif has_head:
        embed += _numel(tensors["lm_head.weight"][1])
    elif not tied and embed_name:  # an untied head the checkpoint does not hold: created at load
        total += _numel(tensors[embed_name][1])
        embed *= 2
    blocks = expert_blocks(tensors)
    native_k = next((config[key] for key in TOP_K_KEYS if isinstance(config.get(key), int)), None)
    k = experts_per_token if experts_per_token is not None else native_k
    if blocks and not isinstance(k, (int, float)):
        raise HeaderError(f"config.json: routed experts found but no experts per token ({', '.join(TOP_K_KEYS)})")
    routed = sum(size for size, _ in blocks.values())
    active_routed = sum(size * min(k, n) / n for size, n in blocks.values())
    active = round(total - routed + active_routed)
    return {
        "total": total, "active": active, "total_no_embed": total - embed, "active_no_embed": active - embed,
        "num_experts": max((n for _, n in blocks.values()), default=None),
        "experts_per_token": float(k) if blocks else None,
        "active_measured": False,
    }
