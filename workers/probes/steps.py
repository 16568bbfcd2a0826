"""What the probes share on every engine: ``ProbeContext``, the base of each engine's step context
(``workers/engines/<engine>/steps.py``), and ``timed_row``, a result row from timed samples.

A probe's ``run(config, ctx)`` asks the context for prompts (``prompts``: windows of a fixed text,
the same ids on every engine), timed prefills and decode steps (``prefill``, ``decode``: each
engine's own loops) and engine-specific row fields (``extra``). ``facts()`` is what the probe
job's result says about how the steps ran (device, experts implementation, compile mode).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from moe_schema import protocol, roofline
from moe_schema.roofline import resolve_peaks
from workers.errors import JobCancelled, JobError, Unsupported
from workers.probes.timer import summarize

_TEXT = (
    "The committee met on a grey morning to decide where the new bridge would cross the river. "
    "Engineers brought drawings of three designs: a suspension span, a steel arch and a row of "
    "concrete piers. Farmers worried about the roads to market, the mayor about the cost, and the "
    "children of the town only wanted to know whether boats with tall masts could still pass. "
    "In 1887 the old ferry had carried 412 passengers a day; by now it carried twice as many. "
    "def area(radius):\n    return 3.14159 * radius ** 2\n"
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen inside the leaf. "
)


def device_name(device: torch.device) -> str:
    return torch.cuda.getdevice_name(device) if device.type == "cuda" else "cpu"


def probe_bytes(config, shape) -> tuple[int, int, int]:
    """``(bytes, batch, tokens)``: an estimate of what the probe's largest step allocates besides
    the weights: the KV cache of its largest batch at its longest context plus new tokens, the
    activations of a prefill of that many tokens (a few hidden-size and MLP-width buffers per
    token, and the attention scores of one layer) and the last position's logits."""
    batch = max(getattr(config, "batch_sizes", None) or (1,))
    lengths = [*(getattr(config, "prompt_lengths", None) or ()), *(getattr(config, "context_lengths", None) or ()),
               getattr(config, "prompt_length", 0) or 0, getattr(config, "context_length", 0) or 0, 1]
    tokens = max(lengths) + (getattr(config, "new_tokens", 0) or 0)
    elt = shape.bytes_per_param
    kv = int(shape.kv_bytes_per_token() * tokens * batch)
    width = max(shape.hidden * 4, (shape.expert_params // max(1, shape.hidden)) * max(1, shape.top_k))
    activations = batch * tokens * (shape.hidden * 6 + width) * elt + batch * shape.heads * tokens * tokens * 4
    return kv + activations + batch * shape.vocab * 4, batch, tokens


def admit(config, shape, device) -> None:
    """A probe whose largest step cannot fit the device's free memory (the cgroup's on a CPU)
    fails at once with OUT_OF_MEMORY, before it allocates: a batch of 10^5 was the daemon's death."""
    from workers.memory import device_memory

    need, batch, tokens = probe_bytes(config, shape)
    free = device_memory(str(device))["free"]
    if need > free:
        raise JobError(protocol.OUT_OF_MEMORY,
                       f"probe {config.name!r}: batch {batch:,} at {tokens:,} tokens needs an estimated {need:,} "
                       f"bytes beside the weights but {device} has {free:,} bytes free; not run (lower "
                       "batch_sizes or the context)")


def peaks_for(config, device, dtype: str):
    """The device's peak bandwidth and FLOP/s for a timed probe's roofline (the suite's
    ``device_peaks`` or the table's); a device the table lacks is the probe's one-line refusal."""
    try:
        return resolve_peaks(device_name(device), dtype, config.device_peaks)
    except ValueError as e:
        raise Unsupported(f"probe {config.name!r}: {e}") from None


class ProbeContext(ABC):
    """What a probe's ``run(config, ctx)`` gets: the model (a transformers model: the one that runs,
    or an engine's meta-device twin), its shape, the device peaks, the step loops."""

    compile: str = "none"  # the decode step's execution mode
    compile_note: str | None = None  # why it differs from the one asked for
    experts_implementation: str | None = None  # how the experts ran (None: dense)

    def __init__(self, model, tokenizer, shape, peaks, seed: int, progress, cancelled, device: torch.device):
        self.model, self.tokenizer, self.shape, self.peaks = model, tokenizer, shape, peaks
        self.device = device
        self.seed = seed
        self.progress = progress or (lambda done, total, note="": None)
        self.cancelled = cancelled
        self._stream: torch.Tensor | None = None
        self.device_info: dict = {}  # name, type, dtype, and the peaks the roofline used

    @abstractmethod
    def prefill(self, batch: int, length: int, warmup: int, repeats: int) -> tuple[list[float], dict | None]:
        """Seconds per prefill of ``batch`` x ``length`` tokens (``repeats`` samples after ``warmup``),
        and the experts census (``{"experts_touched", "experts_per_token", ...}``; None: dense)."""

    @abstractmethod
    def decode(self, batch: int, context: int, new_tokens: int, warmup: int,
               repeats: int) -> tuple[list[float], dict | None]:
        """Seconds per decode step from ``context`` cached tokens, and the census of the steps."""

    def facts(self) -> dict:
        """What the probe job's result says about how the steps ran."""
        return {"device": self.device_info, "experts_implementation": self.experts_implementation,
                "compile": self.compile, "compile_note": self.compile_note,
                "torch_threads": torch.get_num_threads() if self.device.type == "cpu" else None}

    def extra(self, phase: str, batch: int, length: int, samples: list[float]) -> dict:
        """Row fields the serving view adds: time to first token (a prefill of the batch) and time
        per output token (a decode step), in seconds at the median."""
        from workers.probes.timer import percentile

        median = percentile(samples, 50) if samples else None
        return {"ttft_s": median if phase == "prefill" else None,
                "tpot_s": median if phase == "decode" else None}

    def check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled.is_set():
            raise JobCancelled("probe cancelled")

    # --- inputs ---------------------------------------------------------------------------------

    def prompts(self, batch: int, length: int) -> torch.Tensor:
        """``batch`` different rows of ``length`` token ids: windows of a fixed text, or seeded random ids."""
        vocab = self.shape.vocab
        if self._stream is None:
            ids = None
            if self.tokenizer is not None:
                try:
                    ids = torch.tensor(self.tokenizer(_TEXT)["input_ids"], dtype=torch.long)
                except Exception:  # a tokenizer that cannot encode plain text: fall back to random ids
                    ids = None
            if ids is None or ids.numel() < 64 or int(ids.max()) >= vocab:
                g = torch.Generator().manual_seed(self.seed)
                ids = torch.randint(0, vocab, (4096,), generator=g)
            self._stream = ids
        n = self._stream.numel()
        reps = (length + 7919 * batch) // n + 2
        stream = self._stream.repeat(reps)
        rows = [stream[(b * 7919) % n:(b * 7919) % n + length] for b in range(batch)]
        return torch.stack(rows).to(self.device)


def timed_row(ctx: ProbeContext, phase: str, batch: int, length: int, samples: list[float],
              census: dict | None, new_tokens: int = 0) -> dict:
    """One result row: timing stats, tokens/s, the roofline and measured/roofline, experts touched.

    ``length`` is the prompt length for prefill and the starting context for decode; the decode
    roofline is taken at the mean context of the timed steps.
    """
    shape = ctx.shape
    touched = census["experts_touched"] if census and shape.moe else None
    per_token = census["experts_per_token"] if census and shape.moe else None
    if phase == "prefill":
        cost = roofline.prefill_cost(shape, batch, length, touched, per_token)
        tokens, uniform_tokens = batch * length, batch * length
    else:
        cost = roofline.decode_cost(shape, batch, length + (new_tokens - 1) / 2, touched, per_token)
        tokens, uniform_tokens = batch, batch
    stats = summarize(samples)
    roof = roofline.roofline_ms(cost, ctx.peaks)
    seconds = stats["ms_p50"] / 1e3
    return {
        "phase": phase, "batch_size": batch,
        "context": length if phase == "decode" else 0,
        "prompt_length": length if phase == "prefill" else None,
        "new_tokens": new_tokens if phase == "decode" else None,
        **stats,
        "tokens_per_s": tokens / (stats["ms_p50"] / 1e3) if stats["ms_p50"] > 0 else None,
        "roofline_ms": roof["roofline_ms"], "roofline_memory_ms": roof["memory_ms"],
        "roofline_compute_ms": roof["compute_ms"], "roofline_bound": roof["bound"],
        "measured_over_roofline": stats["ms_p50"] / roof["roofline_ms"],
        # MoE-CAP's sparsity-aware utilisation (arXiv 2412.07067): bytes of the weights of the experts
        # this step activated plus the KV cache over time x peak bandwidth, and FLOPs of the activated
        # experts over time x peak FLOP/s: comparable with that benchmark's figures
        "s_mbu": cost["bytes"] / seconds / (ctx.peaks.bandwidth_gbs * 1e9) if seconds > 0 else None,
        "s_mfu": cost["flops"] / seconds / (ctx.peaks.tflops * 1e12) if seconds > 0 else None,
        "bytes": cost["bytes"], "kv_bytes": cost["kv_bytes"], "flops": cost["flops"],
        "experts_touched": touched,
        "experts_touched_uniform": (roofline.expected_experts_touched(shape.num_experts, shape.top_k, uniform_tokens)
                                    if shape.moe else None),
        "experts_per_token": per_token,
        **ctx.extra(phase, batch, length, samples),
    }
