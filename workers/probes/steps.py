"""The prefill and decode loops the probes share, written around ``model.forward`` with a StaticCache.

A decode sample is one step: the forward of one new token per sequence against a static KV cache
holding ``context`` tokens, so the time is the model's. The next token (greedy) is chosen between
samples, untimed. Each (batch, length) point runs: an untimed prefill, one eager *census* pass with
router hooks (how many experts the steps touch, for the roofline), ``warmup`` passes, then
``repeats`` timed passes. Decode steps may run as a captured CUDA graph (``compile: graphs``) or
through ``torch.compile``; prefill always runs eagerly.
"""

from __future__ import annotations

import torch
from transformers import StaticCache

from workers.compat import cache_kwargs
from workers.errors import JobCancelled, Unsupported
from moe_schema import roofline
from workers.probes.census import ExpertCensus
from workers.probes.timer import StepTimer, summarize

_TEXT = (
    "The committee met on a grey morning to decide where the new bridge would cross the river. "
    "Engineers brought drawings of three designs: a suspension span, a steel arch and a row of "
    "concrete piers. Farmers worried about the roads to market, the mayor about the cost, and the "
    "children of the town only wanted to know whether boats with tall masts could still pass. "
    "In 1887 the old ferry had carried 412 passengers a day; by now it carried twice as many. "
    "def area(radius):\n    return 3.14159 * radius ** 2\n"
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen inside the leaf. "
)


def rewind(cache, position: int) -> None:
    """Set a static cache's write position back to ``position`` (the next step overwrites from there)."""
    for layer in cache.layers:
        length = getattr(layer, "cumulative_length", None)
        if isinstance(length, torch.Tensor):
            length.fill_(position)
        elif isinstance(length, int):
            layer.cumulative_length = position
        if hasattr(layer, "cumulative_length_int"):
            layer.cumulative_length_int = position


def resolve_compile(requested: str | None, device: torch.device) -> str:
    """The decode step's execution mode: the request, or graphs on CUDA and none elsewhere."""
    if requested is None:
        return "graphs" if device.type == "cuda" else "none"
    if requested == "graphs" and device.type != "cuda":
        raise Unsupported(f"probe option compile='graphs' needs a CUDA device, this one is {device.type}; "
                          f"use compile: none or compile")
    return requested


class ProbeContext:
    """What a probe's ``run(config, ctx)`` gets: the model, its shape, the device peaks, the step loops."""

    def __init__(self, model, tokenizer, shape, peaks, compile_mode: str, seed: int, progress, cancelled):
        self.model, self.tokenizer, self.shape, self.peaks = model, tokenizer, shape, peaks
        self.device = next(model.parameters()).device
        self.compile = compile_mode
        self.compile_note: str | None = None
        self.seed = seed
        self.progress = progress or (lambda done, total, note="": None)
        self.cancelled = cancelled
        self.timer = StepTimer(self.device)
        self._compiled = None
        self._stream: torch.Tensor | None = None

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

    # --- prefill --------------------------------------------------------------------------------

    def prefill(self, batch: int, length: int, warmup: int, repeats: int) -> tuple[list[float], dict | None]:
        """Seconds per prefill of ``batch`` x ``length`` tokens into a fresh StaticCache; and the census."""
        model, ids = self.model, self.prompts(batch, length)
        cache = StaticCache(config=model.config, max_cache_len=length)
        position = torch.arange(length, device=self.device)

        def forward():
            model(input_ids=ids, **cache_kwargs(cache), cache_position=position, use_cache=True, logits_to_keep=1)

        samples = []
        with torch.inference_mode():
            with ExpertCensus(model) as census:
                forward()
            for i in range(warmup + repeats):
                self.check_cancelled()  # per forward, not per row: a row of large batches takes minutes
                cache.reset()
                self.timer.sync()
                t = self.timer.time(forward)
                if i >= warmup:
                    samples.append(t)
        return samples, census.summary()

    # --- decode ---------------------------------------------------------------------------------

    def decode(self, batch: int, context: int, new_tokens: int, warmup: int,
               repeats: int) -> tuple[list[float], dict | None]:
        """Seconds per decode step (``repeats`` x ``new_tokens`` samples) from ``context`` cached tokens."""
        model, device = self.model, self.device
        cache = StaticCache(config=model.config, max_cache_len=context + new_tokens)
        tok = torch.zeros(batch, 1, dtype=torch.long, device=device)
        pos = torch.full((1,), context, dtype=torch.long, device=device)
        pos_ids = torch.full((batch, 1), context, dtype=torch.long, device=device)
        box = {}

        def eager():
            box["logits"] = model(input_ids=tok, **cache_kwargs(cache), cache_position=pos,
                                  position_ids=pos_ids, use_cache=True).logits

        with torch.inference_mode():
            ids = self.prompts(batch, context)
            out = model(input_ids=ids, **cache_kwargs(cache), cache_position=torch.arange(context, device=device),
                        use_cache=True, logits_to_keep=1)
            first = out.logits[:, -1].argmax(-1, keepdim=True)

            def run_pass(step, timed: bool) -> list[float]:
                tok.copy_(first)
                rewind(cache, context)
                times = []
                for i in range(new_tokens):
                    self.check_cancelled()
                    pos.fill_(context + i)
                    pos_ids.fill_(context + i)
                    if timed:
                        times.append(self.timer.time(step))
                    else:
                        step()
                    tok.copy_(box["logits"][:, -1].argmax(-1, keepdim=True))
                return times

            with ExpertCensus(model) as census:
                run_pass(eager, timed=False)
            step = self._decode_step(eager, box, tok, pos, pos_ids, cache)
            warm = max(warmup, 1) if self.compile != "none" else warmup
            for _ in range(warm):
                run_pass(step, timed=False)
            samples = []
            for _ in range(repeats):
                samples += run_pass(step, timed=True)
        return samples, census.summary()

    def _decode_step(self, eager, box, tok, pos, pos_ids, cache):
        """The timed step for this context's compile mode (eager, CUDA graph replay, or compiled)."""
        if self.compile == "none":
            return eager
        if self.compile == "compile":
            if self._compiled is None:
                mode = "reduce-overhead" if self.device.type == "cuda" else "default"
                self._compiled = torch.compile(self.model.forward, mode=mode, dynamic=False)
            compiled = self._compiled

            def step():
                box["logits"] = compiled(input_ids=tok, **cache_kwargs(cache), cache_position=pos,
                                         position_ids=pos_ids, use_cache=True).logits
            return step
        try:  # graphs: capture one step; the inputs live in static buffers the loop updates
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(2):
                    rewind(cache, int(pos))
                    eager()
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            rewind(cache, int(pos))
            with torch.cuda.graph(graph):
                eager()
            captured = box["logits"]

            def replay():
                graph.replay()
                box["logits"] = captured
            return replay
        except Exception as e:  # some models cannot be captured: time them eagerly and say so
            torch.cuda.synchronize()
            self.compile = "none"
            self.compile_note = f"CUDA graph capture failed, decode timed eagerly: {type(e).__name__}: {e}"[:300]
            return eager


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
