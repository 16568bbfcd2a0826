"""Memory probe: peak memory of a prefill, split into weights, KV cache and activations.

Honest about method, per figure:
- weights: computed, the bytes of the model's parameters and buffers;
- KV cache: measured as the bytes of the StaticCache's tensors after the prefill, next to the
  analytic figure (layers x 2 x kv heads x head dim x tokens x bytes);
- activations: on CUDA, max_memory_allocated during the prefill minus what was allocated before it
  and the KV cache; on CPU, the rise of the process's peak resident set (VmHWM, reset through
  /proc/self/clear_refs) minus the KV cache: approximate, as freed memory the allocator reuses
  hides some and other threads' allocations add some; None where the kernel does not allow the reset.
"""

from __future__ import annotations

import gc

import torch
from transformers import StaticCache

from workers.compat import cache_kwargs
from workers.probes.steps import ProbeContext


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _cache_bytes(cache) -> int:
    total = 0
    for layer in cache.layers:
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
            if isinstance(t, torch.Tensor):
                total += t.numel() * t.element_size()
    return total


def _weights_bytes(model) -> int:
    tensors = {id(t): t for t in list(model.parameters()) + list(model.buffers())}
    return sum(t.numel() * t.element_size() for t in tensors.values())


def _prefill_peak(ctx: ProbeContext, batch: int, length: int) -> tuple[int, int | None, str]:
    """(KV cache bytes, activation peak bytes or None, method) of one prefill into a new StaticCache."""
    model, device = ctx.model, ctx.device
    ids = ctx.prompts(batch, length)
    position = torch.arange(length, device=device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        before = (_status_kb("VmRSS") or 0) * 1024
        can_reset = _reset_rss_peak()
    with torch.inference_mode():
        cache = StaticCache(config=model.config, max_cache_len=length)
        model(input_ids=ids, **cache_kwargs(cache), cache_position=position, use_cache=True, logits_to_keep=1)
    kv = _cache_bytes(cache)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated(device) - before
        method = "measured: cuda max_memory_allocated delta minus KV cache"
    elif can_reset and _status_kb("VmHWM") is not None:
        peak = _status_kb("VmHWM") * 1024 - before
        method = "measured: peak RSS (VmHWM) rise minus KV cache; approximate"
    else:
        del cache
        return kv, None, "unavailable: /proc/self/clear_refs cannot be written"
    del cache
    return kv, max(peak - kv, 0), method


def run(config, ctx: ProbeContext) -> list[dict]:
    shape = ctx.shape
    if hasattr(ctx, "memory_point"):  # an engine that allocates its own KV cache (vLLM)
        return _engine_rows(config, ctx)
    weights = _weights_bytes(ctx.model)
    points = [(b, c) for b in config.batch_sizes for c in config.context_lengths]
    rows = []
    for i, (batch, length) in enumerate(points):
        ctx.check_cancelled()
        kv, activations, method = _prefill_peak(ctx, batch, length)
        rows.append({
            "phase": "prefill", "batch_size": batch, "context": length, "prompt_length": length,
            "weights_bytes": weights, "weights_method": "computed: parameter and buffer bytes",
            "kv_cache_bytes": kv, "kv_cache_method": "measured: StaticCache tensor bytes",
            "kv_cache_bytes_analytic": shape.kv_bytes_per_token() * batch * length,
            "activations_peak_bytes": activations, "activations_method": method,
            "peak_bytes": weights + kv + (activations or 0),
        })
        ctx.progress(i + 1, len(points), f"memory batch {batch} context {length}")
    return rows


def _engine_rows(config, ctx) -> list[dict]:
    """The same rows on an engine that holds its weights and a KV cache of fixed size itself."""
    points = [(b, c) for b in config.batch_sizes for c in config.context_lengths]
    rows = []
    for i, (batch, length) in enumerate(points):
        ctx.check_cancelled()
        weights, kv, activations, method = ctx.memory_point(batch, length)
        rows.append({
            "phase": "prefill", "batch_size": batch, "context": length, "prompt_length": length,
            "weights_bytes": weights,
            "weights_method": getattr(ctx, "weights_method", "computed: the engine model's parameter and buffer bytes"),
            "kv_cache_bytes": kv,
            "kv_cache_method": getattr(ctx, "kv_method", "allocated: the engine's KV cache (kv_cache_memory_bytes)"),
            "kv_cache_bytes_analytic": ctx.shape.kv_bytes_per_token() * batch * length,
            "activations_peak_bytes": activations, "activations_method": method,
            "peak_bytes": weights + kv + (activations or 0),
        })
        ctx.progress(i + 1, len(points), f"memory batch {batch} context {length}")
    return rows
