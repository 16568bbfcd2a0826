"""The roofline: the fastest a step can be on a device, from bytes moved and FLOPs done. Torch-free.

A model is a ``ModelShape`` (parameter counts by role, attention shape, bytes per value), made from
a config dict (``ModelShape.from_config``) or, on the worker, from the loaded model's own
parameters (``workers.probes.shape.shape_of``).

Decode step (one new token for each of ``batch`` sequences at ``context`` cached tokens):
  bytes = every non-expert weight (attention, norms, routers, dense and shared MLPs, the LM head)
        + only the ``batch`` rows of the input embedding that are looked up (an untied table is not read)
        + per MoE layer, the weights of the experts the step touches (measured, or under uniform
          routing the expected E * (1 - (1 - k/E)^tokens))
        + the KV cache read (context tokens) and written (one token), all sequences.
  flops = 2 * active weights per token * batch + attention (4 * heads * head_dim * context per layer).
Prefill of ``batch`` prompts of ``length`` tokens: flops = 2 * active weights * tokens + causal
attention, with the LM head on the last token only (``logits_to_keep=1``); bytes = weights touched
+ KV cache written. The roofline time is max(bytes / bandwidth, flops / peak FLOP/s).
"""

from __future__ import annotations

import functools
import time

import attrs

from moe_schema import devices
from moe_schema.devices import Peaks, table_peaks  # noqa: F401  (the one table, re-exported)
from moe_schema.families import FAMILIES
from moe_schema.params import FAMILY_DEFAULTS, parts


@attrs.frozen(kw_only=True)
class ModelShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    embed_params: int  # input embedding table
    head_params: int  # LM head (the embedding table itself when tied)
    tied: bool
    other_params: int  # every other non-expert weight: attention, norms, routers, dense / shared MLPs
    moe_layers: int = 0
    num_experts: int = 0
    top_k: int = 0
    expert_params: int = 0  # one routed expert in one layer
    bytes_per_param: float = 2.0
    kv_bytes: float = 2.0  # bytes per cached key / value element

    @property
    def moe(self) -> bool:
        return self.moe_layers > 0 and self.num_experts > 0

    @property
    def total_params(self) -> int:
        head = 0 if self.tied else self.head_params
        return self.embed_params + head + self.other_params + self.moe_layers * self.num_experts * self.expert_params

    @property
    def active_params(self) -> int:
        """Weights a token multiplies through (no embedding lookup; LM head included)."""
        return self.other_params + self.head_params + self.moe_layers * self.top_k * self.expert_params

    def kv_bytes_per_token(self) -> float:
        """KV cache bytes one token of one sequence occupies, all layers."""
        return kv_bytes_per_token(self.layers, self.kv_heads, self.head_dim, self.kv_bytes)

    @classmethod
    def from_config(cls, cfg: dict, bytes_per_param: float = 2.0, kv_bytes: float | None = None) -> "ModelShape":
        """Parameter counts worked out from a transformers config dict of a family in moe_schema.families."""
        return _shape_from_config(cfg, bytes_per_param, bytes_per_param if kv_bytes is None else kv_bytes)


def kv_bytes_per_token(layers: int, kv_heads: int, head_dim: float, element_bytes: float) -> float:
    """The one count of a KV cache: K and V of every layer for one token of one sequence
    (layers x 2 x kv heads x head size x bytes per element)."""
    return layers * 2 * kv_heads * head_dim * element_bytes


def _need(cfg: dict, key: str):
    if key not in cfg:
        raise ValueError(f"config for roofline: missing key {key!r} (model_type {cfg.get('model_type')!r})")
    return cfg[key]


def _shape_from_config(cfg: dict, bpp: float, kvb: float) -> ModelShape:
    """The shared parameter arithmetic (``moe_schema.params.parts``), on a config that names every
    size itself: a roofline of transformers' defaults would be a roofline of some other model."""
    mt = _need(cfg, "model_type")
    if mt not in FAMILY_DEFAULTS:
        raise ValueError(f"config for roofline: model_type {mt!r} not supported; known: {', '.join(FAMILY_DEFAULTS)}")
    family = FAMILIES[mt]
    for key in ("hidden_size", "num_hidden_layers", "vocab_size", "num_attention_heads"):
        _need(cfg, key)
    if family.moe:
        _need(cfg, family.num_experts_key), _need(cfg, "num_experts_per_tok"), _need(cfg, family.expert_width_key)
    p = parts(cfg, where="config for roofline")
    return ModelShape(
        layers=p["layers"], hidden=p["hidden"], heads=p["heads"], kv_heads=p["kv_heads"], head_dim=p["head_dim"],
        vocab=p["vocab"], embed_params=p["embed"], head_params=p["head"], tied=p["tied"], other_params=p["other"],
        moe_layers=p["moe_layers"], num_experts=p["num_experts"], top_k=p["top_k"], expert_params=p["expert"],
        bytes_per_param=bpp, kv_bytes=kvb)


def expected_experts_touched(num_experts: int, top_k: float, tokens: int) -> float:
    """Distinct experts a layer touches for ``tokens`` tokens under uniform, independent routing."""
    if num_experts <= 0 or tokens <= 0:
        return 0.0
    return num_experts * (1.0 - (1.0 - top_k / num_experts) ** tokens)


def _touched(shape: ModelShape, tokens: int, experts_touched) -> tuple[float, bool]:
    """Mean distinct experts per MoE layer: measured when given, else the uniform expectation."""
    if not shape.moe:
        return 0.0, False
    if experts_touched is None:
        return expected_experts_touched(shape.num_experts, shape.top_k, tokens), False
    return float(experts_touched), True


def _weight_bytes(shape: ModelShape, tokens: int, touched: float) -> float:
    embed_rows = min(tokens, shape.vocab) * shape.hidden if not shape.tied else 0
    params = shape.other_params + shape.head_params + embed_rows + shape.moe_layers * touched * shape.expert_params
    return params * shape.bytes_per_param


def _flops_per_token(shape: ModelShape, experts_per_token: float | None) -> float:
    k = shape.top_k if experts_per_token is None else experts_per_token
    return 2.0 * (shape.other_params + shape.moe_layers * k * shape.expert_params)


def decode_cost(shape: ModelShape, batch: int, context: int, experts_touched: float | None = None,
                experts_per_token: float | None = None) -> dict:
    """Bytes and FLOPs of one decode step (see the module docstring)."""
    touched, measured = _touched(shape, batch, experts_touched)
    weights = _weight_bytes(shape, batch, touched)
    kv = shape.kv_bytes_per_token() * batch * (context + 1)
    flops = batch * (_flops_per_token(shape, experts_per_token) + 2.0 * shape.head_params)
    flops += batch * shape.layers * 4.0 * shape.heads * shape.head_dim * (context + 1)
    return {"weight_bytes": weights, "kv_bytes": kv, "bytes": weights + kv, "flops": flops,
            "experts_touched": touched if shape.moe else None, "experts_touched_measured": measured}


def prefill_cost(shape: ModelShape, batch: int, length: int, experts_touched: float | None = None,
                 experts_per_token: float | None = None) -> dict:
    """Bytes and FLOPs of a prefill of ``batch`` prompts of ``length`` tokens (LM head on the last token)."""
    tokens = batch * length
    touched, measured = _touched(shape, tokens, experts_touched)
    weights = _weight_bytes(shape, tokens, touched)
    kv = shape.kv_bytes_per_token() * tokens
    flops = tokens * _flops_per_token(shape, experts_per_token) + batch * 2.0 * shape.head_params
    flops += batch * shape.layers * 4.0 * shape.heads * shape.head_dim * length * (length + 1) / 2
    return {"weight_bytes": weights, "kv_bytes": kv, "bytes": weights + kv, "flops": flops,
            "experts_touched": touched if shape.moe else None, "experts_touched_measured": measured}


# --- device peaks -------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def measure_cpu_peaks(dtype: str = "float32") -> Peaks:
    """This CPU's copy bandwidth and matmul FLOP/s, measured once per process with numpy (~0.3 s)."""
    import numpy as np

    src = np.ones(64 * 2**20 // 8)  # 64 MiB, well past the caches
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    bandwidth = 2 * src.nbytes / best / 1e9  # read + write
    n = 512
    a = np.ones((n, n), dtype=np.float32 if dtype != "float64" else np.float64)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t)
    return Peaks(name="cpu", bandwidth_gbs=round(bandwidth, 2), tflops=2 * n**3 / best / 1e12, source="measured")


def resolve_peaks(device_name: str, dtype: str, override: dict | None = None) -> Peaks:
    """Peaks for a device: the suite's ``device_peaks`` first, then the table, then (CPU) a measurement."""
    override = override or {}
    if "bandwidth_gbs" in override and "tflops" in override:
        return Peaks(name=device_name, bandwidth_gbs=float(override["bandwidth_gbs"]),
                     tflops=float(override["tflops"]), source="suite")
    base = measure_cpu_peaks(dtype) if device_name == "cpu" else table_peaks(device_name, dtype)
    if base is None:
        raise ValueError(f"no peak table entry for device {device_name!r}; give the probe "
                         f"device_peaks: {{bandwidth_gbs: ..., tflops: ...}}; known: {', '.join(d.fragment for d in devices.DEVICES)}")
    if not override:
        return base
    return Peaks(name=device_name, bandwidth_gbs=float(override.get("bandwidth_gbs", base.bandwidth_gbs)),
                 tflops=float(override.get("tflops", base.tflops)), source="suite")


def roofline_ms(cost: dict, peaks: Peaks) -> dict:
    """Roofline time of a step's cost: memory and compute apart, the larger one bounds."""
    memory = cost["bytes"] / (peaks.bandwidth_gbs * 1e9) * 1e3
    compute = cost["flops"] / (peaks.tflops * 1e12) * 1e3
    return {"roofline_ms": max(memory, compute), "memory_ms": memory, "compute_ms": compute,
            "bound": "memory" if memory >= compute else "compute"}
