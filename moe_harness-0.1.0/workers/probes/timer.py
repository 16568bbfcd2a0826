"""Timing method: one sample per model step, CUDA events on GPU, perf_counter on CPU; summary stats."""

from __future__ import annotations

import math
import time


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        raise ValueError("percentile of no samples")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def summarize(samples_s: list[float]) -> dict:
    """ms_p50, ms_p90, ms_p95, ms_p99, ms_mean, ms_std (sample stdev) and n, from samples in seconds."""
    ms = [x * 1e3 for x in samples_s]
    n = len(ms)
    mean = sum(ms) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in ms) / (n - 1)) if n > 1 else 0.0
    out = {f"ms_p{q}": percentile(ms, q) for q in (50, 90, 95, 99)}
    out.update(ms_mean=mean, ms_std=std, n=n)
    return out


class StepTimer:
    """Times one call: CUDA events around it on a CUDA device (then waits for them), else perf_counter.

    On CUDA the call's kernels are what is timed; the host launching them is not, except where it
    stalls the GPU. ``sync()`` waits for the device before an untimed step between samples.
    """

    def __init__(self, device):
        import torch

        self._torch = torch
        self.cuda = getattr(device, "type", str(device)) == "cuda"
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)

    def sync(self) -> None:
        if self.cuda:
            self._torch.cuda.synchronize()

    def time(self, fn) -> float:
        """Seconds ``fn()`` takes on the device."""
        if self.cuda:
            self._torch.cuda.synchronize()
            self._start.record()
            fn()
            self._end.record()
            self._end.synchronize()
            return self._start.elapsed_time(self._end) / 1e3
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
