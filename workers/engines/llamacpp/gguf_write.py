"""A build's Hugging Face checkpoint -> a GGUF file llama.cpp loads, and its quantization.

``write_gguf`` writes an F32 GGUF with the ``gguf`` package's ``GGUFWriter`` and its tensor-name maps
(HF names -> ``blk.N.attn_q`` ...), for the families of ``spec.ARCHITECTURES``. What llama.cpp reads
was checked against its source (``src/models/<arch>.cpp``, ``src/llama-model.cpp``):

- hyperparameters: ``<arch>.context_length``, ``embedding_length``, ``block_count``,
  ``feed_forward_length``, ``attention.head_count``/``head_count_kv``/``key_length``/``value_length``,
  ``rope.dimension_count``/``freq_base``, ``attention.layer_norm_rms_epsilon``; for MoE
  ``expert_count``, ``expert_used_count`` and (qwen3moe) ``expert_feed_forward_length``. None of
  these architectures reads ``expert_weights_norm``: llama (mixtral) and qwen3moe always renormalise
  the chosen experts' weights, olmoe never does. The writer writes the checkpoint as it is; what
  llama.cpp would compute differently is refused by the spec (``spec.Llamacpp.build_refusal``).
- the llama architecture rotates query/key pairs (i, i+1) where transformers rotates (i, i+d/2):
  its q/k rows are permuted to match. qwen3, qwen3moe and olmoe rotate as transformers does.
- experts: one ``[experts, out, in]`` tensor per projection and layer (``ffn_gate_exps`` ...),
  stacked from the checkpoint's per-expert matrices.
- tied embeddings: no ``output`` tensor (llama.cpp falls back to ``token_embd``), except for olmoe,
  whose ``output`` is required: there it is a copy of the embedding.
- vocabulary: the harness's byte tokenizer (``workers.builds.tokenizer``) as an SPM ("llama")
  vocabulary, ``<0xXX>`` BYTE tokens at ids 0..255, the specials as CONTROL tokens, UNUSED tokens up to
  the embedding's rows. Tokenization stays on the harness side (llama.cpp gets token ids): the vocab
  only has to load. Any other tokenizer is refused.

Anything else the GGUF cannot say (``spec.unwritable``: another activation, rope scaling, sliding
windows, biases, dense layers inside an MoE; the spec refuses the same at plan time) raises
``UnsupportedCheckpoint`` with one line naming the checkpoint.
``quantize`` is llama.cpp's own ``llama_model_quantize``. ``gguf_cache`` caches both per build.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from workers.engines.llamacpp.spec import ARCHITECTURES, QUANTS, REFUSED_FAMILIES, unwritable

#: joins the cache key of every GGUF written (``gguf_cache``): bump it when the output changes
WRITER_VERSION = 1
#: the files ``write_gguf`` reads from a checkpoint (and the cache key hashes)
READS = ("config.json", "tokenizer.json", "*.safetensors", "*.safetensors.index.json")
_EXPERT = re.compile(r"\.experts\.(\d+)\.")


class UnsupportedCheckpoint(ValueError):
    """A checkpoint the writer cannot express as GGUF; the message is one line naming it."""


def write_gguf(checkpoint_dir: str | Path, out_path: str | Path) -> Path:
    """Write ``checkpoint_dir`` (config.json, safetensors, the byte tokenizer) as an F32 GGUF at
    ``out_path``; return ``out_path``. Raises ``UnsupportedCheckpoint`` before writing anything (the
    weights are held in memory as float32 until the file is written: 4 bytes per parameter)."""
    import gguf

    ckpt, out = Path(checkpoint_dir), Path(out_path)
    config = _config(ckpt)
    n_vocab = _check_tokenizer(ckpt, config)
    arch = ARCHITECTURES[config.model_type]
    writer = gguf.GGUFWriter(out, arch)
    _hparams(writer, config, n_vocab)
    _vocab(writer, n_vocab)
    tensor_map = gguf.get_tensor_name_map(_model_arch(arch), config.num_hidden_layers)
    for name, array in _tensors(ckpt, config):
        gguf_name = tensor_map.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UnsupportedCheckpoint(f"checkpoint {ckpt}: tensor {name!r} has no GGUF name for llama.cpp's {arch}")
        writer.add_tensor(gguf_name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def quantize(src: str | Path, dst: str | Path, quant: str, threads: int = 1) -> Path:
    """``src`` (an F32 GGUF) quantized to ``quant`` (``spec.QUANTS``, not f32: that is ``src`` itself)
    at ``dst``, by llama.cpp's ``llama_model_quantize``; return ``dst``."""
    import ctypes

    import llama_cpp

    if quant not in QUANTS or quant == "f32":
        raise ValueError(f"quant {quant!r}: quantize writes one of {', '.join(q for q in QUANTS if q != 'f32')}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{QUANTS[quant][0]}")
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize {src} -> {quant} failed (return code {rc})")
    return Path(dst)


# ---- config and tokenizer ---------------------------------------------------------------------------
def _config(ckpt: Path):
    """The checkpoint's transformers config, refused here when the GGUF cannot say what it computes."""
    import transformers

    if not (ckpt / "config.json").is_file():
        raise UnsupportedCheckpoint(f"checkpoint {ckpt}: no config.json (a local checkpoint folder is needed)")
    model_type = json.loads((ckpt / "config.json").read_text()).get("model_type")
    if model_type not in ARCHITECTURES:
        why = REFUSED_FAMILIES.get(model_type, f"the GGUF writer knows {', '.join(ARCHITECTURES)}")
        raise UnsupportedCheckpoint(f"checkpoint {ckpt}: family {model_type!r} is not written: {why}")
    config = transformers.AutoConfig.from_pretrained(ckpt)
    unsaid = unwritable(config.to_dict())
    if unsaid:
        raise UnsupportedCheckpoint(f"checkpoint {ckpt}: {model_type} with {'; '.join(unsaid)}: not written as GGUF")
    return config


def _check_tokenizer(ckpt: Path, config) -> int:
    """The vocabulary's size (the embedding's rows) when ``ckpt`` holds the harness's byte tokenizer."""
    from workers.builds.tokenizer import BYTE_VOCAB_SIZE, build_byte_tokenizer

    path = ckpt / "tokenizer.json"
    if not path.is_file():
        raise UnsupportedCheckpoint(f"checkpoint {ckpt}: no tokenizer.json; the GGUF writer expresses only the "
                                    f"harness's byte tokenizer")
    theirs, ours = json.loads(path.read_text()), json.loads(build_byte_tokenizer().to_str())
    for part in ("model", "pre_tokenizer", "normalizer", "added_tokens"):
        if _comparable(part, theirs.get(part)) != _comparable(part, ours[part]):
            kind = (theirs.get("model") or {}).get("type", "unknown")
            raise UnsupportedCheckpoint(
                f"checkpoint {ckpt}: its tokenizer ({kind}) is not the harness's byte tokenizer (its {part} differs); "
                f"the GGUF writer expresses only that one")
    if config.vocab_size < BYTE_VOCAB_SIZE:
        raise UnsupportedCheckpoint(f"checkpoint {ckpt}: vocab_size {config.vocab_size} < {BYTE_VOCAB_SIZE} tokens")
    return config.vocab_size


def _comparable(part: str, value):
    if part == "added_tokens":  # ids and texts; flags such as lstrip do not change what an id means
        return [(t["id"], t["content"]) for t in value or ()]
    return value


# ---- GGUF metadata ---------------------------------------------------------------------------------
def _model_arch(arch: str):
    import gguf

    return next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch)


def _hparams(writer, config, n_vocab: int) -> None:
    import gguf

    from workers.compat import rope_parameters

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope_parameters(config)["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(n_vocab)
    experts = _num_experts(config)
    if experts:
        writer.add_expert_count(experts)
        writer.add_expert_used_count(config.num_experts_per_tok)
        if config.model_type == "qwen3_moe":
            writer.add_expert_feed_forward_length(config.moe_intermediate_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)


def _num_experts(config) -> int | None:
    for key in ("num_experts", "num_local_experts"):
        if getattr(config, key, None):
            return getattr(config, key)
    return None


def _vocab(writer, n_vocab: int) -> None:
    """The byte tokenizer as an SPM vocabulary, padded with UNUSED tokens to ``n_vocab``."""
    import gguf

    from workers.builds.tokenizer import BOS_ID, EOS_ID, PAD_ID, SPECIALS

    tokens = [f"<0x{b:02X}>" for b in range(256)] + list(SPECIALS)
    types = [gguf.TokenType.BYTE] * 256 + [gguf.TokenType.CONTROL] * len(SPECIALS)
    tokens += [f"<unused{i}>" for i in range(n_vocab - len(tokens))]
    types += [gguf.TokenType.UNUSED] * (n_vocab - len(types))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * n_vocab)
    writer.add_token_types(types)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_pad_token_id(PAD_ID)
    writer.add_add_bos_token(False)  # the harness tokenizes; nothing is added on llama.cpp's side
    writer.add_add_eos_token(False)
    writer.add_add_space_prefix(False)


# ---- tensors ---------------------------------------------------------------------------------------
def _tensors(ckpt: Path, config):
    """``(HF name, float32 array)`` in GGUF order: per-expert matrices stacked into one
    ``[experts, out, in]`` tensor named without the expert's index, llama's q/k rows permuted."""
    import numpy as np

    arch = ARCHITECTURES[config.model_type]
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    experts: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
    names = set()
    for name, array in _read(ckpt):
        names.add(name)
        if arch == "llama" and name.endswith("self_attn.q_proj.weight"):
            array = _rotate_pairs(array, heads)
        elif arch == "llama" and name.endswith("self_attn.k_proj.weight"):
            array = _rotate_pairs(array, kv_heads)
        match = _EXPERT.search(name)
        if match is None:
            if not (name == "lm_head.weight" and config.tie_word_embeddings):
                yield name, array
            continue
        group = experts[name[:match.start()] + ".experts." + name[match.end():]]
        group[int(match.group(1))] = array
        if len(group) == _num_experts(config):
            yield _EXPERT.sub(".experts.", name), np.stack([group.pop(i) for i in range(len(group))])
    unfinished = [n for n, g in experts.items() if g]
    if unfinished:
        raise UnsupportedCheckpoint(f"checkpoint {ckpt}: expert tensors {unfinished[0]!r} do not number "
                                    f"{_num_experts(config)} experts")
    tied = config.tie_word_embeddings or "lm_head.weight" not in names
    if tied and arch == "olmoe":  # olmoe's output tensor is required: the embedding, written again
        yield "lm_head.weight", _read_one(ckpt, "model.embed_tokens.weight")


def _rotate_pairs(w, heads: int):
    """Rows of a q/k projection reordered from transformers' half-split rope to llama.cpp's
    adjacent-pair rope (``LLAMA_ROPE_TYPE_NORM``): per head, row j of each half interleaved."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _shards(ckpt: Path) -> list[Path]:
    shards = sorted(ckpt.glob("*.safetensors"))
    if not shards:
        raise UnsupportedCheckpoint(f"checkpoint {ckpt}: no *.safetensors weights")
    return shards


def _read(ckpt: Path):
    """Every tensor of the checkpoint as a float32 numpy array (bf16 and f16 widened)."""
    import torch
    from safetensors import safe_open

    for shard in _shards(ckpt):
        with safe_open(str(shard), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name).to(torch.float32).numpy()


def _read_one(ckpt: Path, wanted: str):
    """One tensor of the checkpoint as float32, read from the shard that holds it."""
    import torch
    from safetensors import safe_open

    for shard in _shards(ckpt):
        with safe_open(str(shard), framework="pt") as f:
            if wanted in f.keys():
                return f.get_tensor(wanted).to(torch.float32).numpy()
    raise UnsupportedCheckpoint(f"checkpoint {ckpt}: no tensor {wanted!r}")
