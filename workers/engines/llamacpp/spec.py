"""The torch-free spec of the ``llamacpp`` engine: what a suite may ask of llama.cpp, and what it refuses.

Registered by an entry point (``moe_harness.engines``, pyproject.toml), as a third party's engine
would be: this module imports nothing but ``moe_schema``, so the coordinator reads it without torch
or llama.cpp. The worker side is ``workers.engines.llamacpp.engine``.

The facts below were read from llama.cpp's own source as vendored by ``llama-cpp-python`` 0.3.36
and checked on tiny builds (tests/engine_llamacpp):

- **families**: llama.cpp has an architecture for each family in ``ARCHITECTURES``; the harness
  writes the GGUF itself (``workers.engines.llamacpp.gguf_write``).
- **routing**: the number of experts a token uses is a load-time hyperparameter
  (``<arch>.expert_used_count``, set through ``kv_overrides``): ``native`` and ``topk`` run, nothing
  else can. ``k`` below 1 or above the build's experts aborts the process inside llama.cpp with no
  exception, so it is refused here, before any load.
- **what differs from transformers**, refused: qwen3_moe with ``norm_topk_prob: false`` (llama.cpp
  always renormalises the chosen experts' weights), olmoe with ``norm_topk_prob: true`` (llama.cpp's
  olmoe never does; neither architecture reads ``expert_weights_norm``), olmoe with fewer KV heads than heads (its
  ``attn_k_norm`` is read with the query's shape and the load fails), qwen2_moe (NaN logits where a
  token's embedding row is zero, as transformers' init leaves the pad token's: the shared-expert
  gate computes 0/0).
- **quantization** (``quant``): the weights' storage type; ``f32`` with an ``f32`` KV cache computes
  the build's own weights in float32 and is held to the engines' float32 parity tolerance, every
  other setting is an approximation and is reported as its measured error instead (``exact``).
"""

from __future__ import annotations

import attrs

from moe_schema.check import SchemaError, is_type
from moe_schema.engines import EngineSpec

#: harness family -> llama.cpp architecture (``general.architecture`` of the GGUF the harness writes)
ARCHITECTURES = {
    "llama": "llama", "mixtral": "llama", "qwen3": "qwen3", "qwen3_moe": "qwen3moe", "olmoe": "olmoe",
}
#: families llama.cpp has an architecture for, refused for a reason of their own (module docstring)
REFUSED_FAMILIES = {
    "qwen2_moe": ("llama.cpp gives NaN logits for qwen2_moe where a token's embedding row is zero (transformers' "
                  "init zeroes the pad token's): its shared-expert gate computes 0/0"),
}
#: ``quant`` -> (llama.cpp's file type name, bits per weight of its main tensors). Block formats store a
#: scale per block: q8_0 34 bytes per 32 weights, q4_0 18 per 32, q4_K 144 per 256 (ggml-common.h).
#: q4_k_m mixes q4_K with q6_K for some tensors: its real bytes are read from the file it writes.
QUANTS = {
    "f32": ("F32", 32.0), "f16": ("F16", 16.0), "q8_0": ("Q8_0", 8.5), "q4_0": ("Q4_0", 4.5),
    "q4_k_m": ("Q4_K_M", 4.5),
}
KV_CACHE = ("f32", "f16")


def _one_of(choices):
    def check(inst, attribute, value):
        if value not in choices:
            raise SchemaError(attribute.name, f"expected one of {', '.join(choices)}, got {value!r}")
    return check


def _optional_positive(inst, attribute, value):
    if value is not None and (not is_type(int, value) or value < 1):
        raise SchemaError(attribute.name, f"must be an integer >= 1 or null, got {value!r}")


@attrs.frozen(kw_only=True)
class LlamacppParams:
    """``quant``: the weights' storage (``QUANTS``); ``kv_cache``: the KV cache's type (llama.cpp's
    default is f16; f32 here, so the f32 variant computes in float32 throughout); ``threads``: CPU
    threads (null: the cores free when the worker loads the build; a number is capped at the cores
    free, and the result records the count used); ``n_ctx``: tokens per sequence (null: the build's
    ``max_position_embeddings``)."""

    quant: str = attrs.field(default="f32", validator=_one_of(tuple(QUANTS)))
    kv_cache: str = attrs.field(default="f32", validator=_one_of(KV_CACHE))
    threads: int | None = attrs.field(default=None, validator=_optional_positive)
    n_ctx: int | None = attrs.field(default=None, validator=_optional_positive)


class Llamacpp(EngineSpec):
    """llama.cpp through ``llama-cpp-python``, on CPU, from a GGUF the harness writes from the build's
    checkpoint once per (build, quantization). See the module docstring for the facts it rests on."""

    name = "llamacpp"
    implementation = "workers.engines.llamacpp.engine:LlamacppEngine"
    library = "llama_cpp"
    distributions = ("llama_cpp_python", "llama-cpp-python")
    install = "pip install -e '.[llamacpp]' (builds llama.cpp from source: README, 'The llama.cpp engine')"
    Params = LlamacppParams
    one_build_per_process = False

    def build_refusal(self, config, dtype, family=None):
        model_type = (config or {}).get("model_type", family)
        if model_type is None:
            return None
        if model_type in REFUSED_FAMILIES:
            return REFUSED_FAMILIES[model_type]
        if model_type not in ARCHITECTURES:
            return (f"the harness writes GGUF files for families {', '.join(ARCHITECTURES)}; not {model_type!r} "
                    f"(refused: {', '.join(REFUSED_FAMILIES)})")
        c = config or {}
        unsaid = unwritable(c)
        if unsaid:
            return f"{model_type} with {'; '.join(unsaid)}: not expressed in the GGUF the harness writes"
        if model_type == "qwen3_moe" and c.get("norm_topk_prob", False) is False:
            return ("qwen3_moe with norm_topk_prob false: llama.cpp always renormalises the chosen experts' "
                    "weights, so it would compute another model")
        if model_type == "olmoe" and c.get("norm_topk_prob", False) is True:
            return ("olmoe with norm_topk_prob true: llama.cpp's olmoe never renormalises the chosen experts' "
                    "weights, so it would compute another model")
        if model_type == "olmoe":
            heads = c.get("num_attention_heads")
            kv = c.get("num_key_value_heads", heads)
            if heads is not None and kv is not None and kv < heads:
                return (f"olmoe with {kv} KV heads for {heads} heads: llama.cpp reads olmoe's attn_k_norm with the "
                        f"query's shape and the load fails")
        return None

    def routing_refusal(self, strategy, config=None):
        if strategy.name == "native":
            return None
        if strategy.name != "topk":
            return ("llama.cpp's only routing setting is the number of experts a token uses "
                    "(expert_used_count, at load time): it runs native and topk")
        if getattr(strategy, "renormalize", None) is not None:
            return ("topk's renormalize is llama.cpp's own per family (set at conversion): leave it out")
        experts = _experts(config)
        if experts is not None and not 1 <= strategy.k <= experts:
            return (f"k={strategy.k} is not between 1 and the build's {experts} experts "
                    f"(llama.cpp aborts the process on it)")
        return None

    def device_refusal(self, params, device):
        if not device.startswith("cpu"):
            return f"the harness runs llama.cpp on CPU (its CPU build, no layers offloaded); device {device} is not one"
        return None

    def checkpoint_refusal(self, path):
        return tokenizer_refusal(path)

    def exact(self, params) -> bool:
        return params.get("quant", "f32") == "f32" and params.get("kv_cache", "f32") == "f32"


def unwritable(config: dict) -> list[str]:
    """What a config of a family in ``ARCHITECTURES`` asks that the GGUF the harness writes (and the
    llama.cpp architecture reading it) cannot say; empty when nothing. Absent keys take the families'
    defaults, which are all writable, so a suite's config block and a saved config.json read alike."""
    c = config
    rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else "default"
    problems = {
        f"hidden_act {c.get('hidden_act')!r} (llama.cpp computes silu)": c.get("hidden_act", "silu") != "silu",
        f"rope_type {rope_type!r} (only default rope is written)": rope_type != "default",
        "sliding-window attention": bool(c.get("use_sliding_window"))
        or any(t != "full_attention" for t in c.get("layer_types") or ())
        or (c.get("model_type") == "mixtral" and c.get("sliding_window") is not None),
        "attention or MLP biases": bool(c.get("attention_bias") or c.get("mlp_bias")),
        "clip_qkv": c.get("clip_qkv") is not None,
        "dense layers between its MoE layers (decoder_sparse_step, mlp_only_layers)":
            c.get("decoder_sparse_step", 1) != 1 or bool(c.get("mlp_only_layers")),
    }
    return [what for what, yes in problems.items() if yes]


def _experts(config) -> int | None:
    if not config:
        return None
    from moe_schema.families import FAMILIES

    fam = FAMILIES.get(config.get("model_type"))
    key = fam.num_experts_key if fam else None
    value = config.get(key) if key else None
    if value is None and fam is not None and fam.moe:
        from moe_schema.params import FAMILY_DEFAULTS

        value = FAMILY_DEFAULTS.get(fam.model_type, {}).get(key)
    return value if is_type(int, value) else None


def tokenizer_refusal(path) -> str | None:
    """Why the GGUF writer cannot express the tokenizer of checkpoint folder ``path``, or None.

    llama.cpp needs a vocabulary to load a model even when it is only given token ids, and its SPM
    vocabulary needs a token for each byte it may print (a newline at least). The harness's byte
    tokenizer (``workers.builds.tokenizer``: ids 0..255 are the bytes) is written as SPM byte tokens;
    any other (a hub model's BPE, the bios corpus's word tokenizer) is refused."""
    import json
    from pathlib import Path

    file = Path(path) / "tokenizer.json"
    if not file.is_file():
        return f"no tokenizer.json in {path}: the GGUF writer expresses the harness's byte tokenizer only"
    try:
        model = json.loads(file.read_text()).get("model") or {}
    except (OSError, ValueError) as exc:
        return f"{file} cannot be read: {exc}"
    vocab = model.get("vocab") if isinstance(model.get("vocab"), dict) else {}
    ids = sorted(v for v in vocab.values() if isinstance(v, int))
    if model.get("type") != "BPE" or model.get("merges") or ids[:256] != list(range(256)) or len(
            [k for k, v in vocab.items() if isinstance(v, int) and v < 256 and len(k) == 1]) != 256:
        return (f"its tokenizer ({model.get('type', 'unknown')} with {len(vocab):,} tokens) is not the harness's byte "
                f"tokenizer, the one the GGUF writer expresses (as llama.cpp byte tokens)")
    return None
