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

from workers import devices


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
        return self.layers * 2 * self.kv_heads * self.head_dim * self.kv_bytes

    @classmethod
    def from_config(cls, cfg: dict, bytes_per_param: float = 2.0, kv_bytes: float | None = None) -> "ModelShape":
        """Parameter counts worked out from a transformers config dict of a family in moe_schema.families."""
        return _shape_from_config(cfg, bytes_per_param, bytes_per_param if kv_bytes is None else kv_bytes)


def _need(cfg: dict, key: str):
    if key not in cfg:
        raise ValueError(f"config for roofline: missing key {key!r} (model_type {cfg.get('model_type')!r})")
    return cfg[key]


def _shape_from_config(cfg: dict, bpp: float, kvb: float) -> ModelShape:
    mt = _need(cfg, "model_type")
    supported = ("llama", "olmo", "qwen3", "granite", "olmoe", "mixtral", "qwen2_moe", "qwen3_moe", "granitemoe")
    if mt not in supported:
        raise ValueError(f"config for roofline: model_type {mt!r} not supported; known: {', '.join(supported)}")
    h, L, V = _need(cfg, "hidden_size"), _need(cfg, "num_hidden_layers"), _need(cfg, "vocab_size")
    nh = _need(cfg, "num_attention_heads")
    kv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or h // nh
    tied = bool(cfg.get("tie_word_embeddings", False))
    bias = bool(cfg.get("qkv_bias", True)) if mt == "qwen2_moe" else bool(cfg.get("attention_bias", False))
    o_bias = bias and mt != "qwen2_moe"

    attn = h * nh * hd + 2 * h * kv * hd + nh * hd * h
    attn += (nh * hd + 2 * kv * hd) * bias + h * o_bias
    norms = 0 if mt == "olmo" else 2 * h  # OLMo's LayerNorm has no weights
    if mt == "olmoe":
        norms += h + (h // nh) * kv  # q_norm over the hidden size, k_norm over the kv width
    elif mt in ("qwen3", "qwen3_moe"):
        norms += 2 * hd  # q_norm, k_norm over one head

    def mlp(width: int) -> int:
        extra = (2 * width + h) if cfg.get("mlp_bias") else 0
        return 3 * h * width + extra

    moe_layers = E = k = per_expert = 0
    other = L * (attn + norms) + (0 if mt == "olmo" else h)  # + final norm
    if mt in ("llama", "olmo", "qwen3", "granite"):
        other += L * mlp(_need(cfg, "intermediate_size"))
    else:
        E = _need(cfg, "num_local_experts" if mt in ("mixtral", "granitemoe") else "num_experts")
        k = _need(cfg, "num_experts_per_tok")
        width = _need(cfg, "moe_intermediate_size" if mt in ("qwen2_moe", "qwen3_moe") else "intermediate_size")
        per_expert = 3 * h * width
        step = cfg.get("decoder_sparse_step", 1) or 1
        dense_only = set(cfg.get("mlp_only_layers") or [])
        for i in range(L):
            if i not in dense_only and (i + 1) % step == 0:
                moe_layers += 1
                other += h * E  # router
                shared = cfg.get("shared_expert_intermediate_size", 0) if mt == "qwen2_moe" else 0
                if shared:
                    other += mlp(shared) + h  # shared expert and its gate
            else:
                other += mlp(_need(cfg, "intermediate_size"))
    return ModelShape(
        layers=L, hidden=h, heads=nh, kv_heads=kv, head_dim=hd, vocab=V, embed_params=V * h,
        head_params=V * h, tied=tied, other_params=other, moe_layers=moe_layers, num_experts=E, top_k=k,
        expert_params=per_expert, bytes_per_param=bpp, kv_bytes=kvb)


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

@attrs.frozen(kw_only=True)
class Peaks:
    name: str
    bandwidth_gbs: float  # memory bandwidth, GB/s (1e9 bytes)
    tflops: float  # peak dense FLOP/s for the dtype in use, 1e12
    source: str  # "table", "measured" or "suite"

    def as_dict(self) -> dict:
        return attrs.asdict(self)


def table_peaks(device_name: str, dtype: str = "bfloat16") -> Peaks | None:
    """Peaks of a known accelerator (by a fragment of its name, workers.devices), or None."""
    device = devices.by_name(device_name)
    if device is None:
        return None
    return Peaks(name=device_name, bandwidth_gbs=device.bandwidth_gbs, tflops=device.tflops(dtype), source="table")


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
