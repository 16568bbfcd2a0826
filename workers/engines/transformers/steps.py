"""The transformers engine's probe steps: prefill and decode loops written around ``model.forward``
with a StaticCache.

A decode sample is one step: the forward of one new token per sequence against a static KV cache
holding ``context`` tokens, so the time is the model's. The next token (greedy) is chosen between
samples, untimed. Each (batch, length) point runs: an untimed prefill, one eager *census* pass with
router hooks (how many experts the steps touch, for the roofline), ``warmup`` passes, then
``repeats`` timed passes. Decode steps may run as a captured CUDA graph (``compile: graphs``) or
through ``torch.compile``; prefill always runs eagerly.
"""

from __future__ import annotations

import contextlib

import torch
from transformers import StaticCache

from workers.compat import cache_kwargs
from workers.errors import Unsupported
from workers.moe_blocks import find_moe_blocks
from workers.probes.census import ExpertCensus
from workers.probes.steps import ProbeContext
from workers.probes.timer import StepTimer


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


@contextlib.contextmanager
def experts_implementation(model, requested: str | None):
    """Use ``requested`` for the model's experts while inside; yields the implementation in use (None: dense)."""
    if not find_moe_blocks(model) or not hasattr(model, "set_experts_implementation"):
        yield None
        return
    before = model.get_experts_implementation()
    if requested is not None:
        from workers.experts import register, unsupported

        register()  # "harness" and "harness_triton" are selectable here too
        why = unsupported(model, requested, next(model.parameters()).device)
        if why is not None:
            raise Unsupported(f"probe option experts_implementation={requested!r}: {why}")
        try:
            model.set_experts_implementation(requested)
        except (ValueError, KeyError) as e:
            raise Unsupported(f"probe option experts_implementation={requested!r}: {e}") from None
    try:
        yield model.config._experts_implementation
    finally:
        if requested is not None:
            model.set_experts_implementation(before)


class TransformersProbeContext(ProbeContext):
    """The steps of a model the harness runs itself, on its own device."""

    def __init__(self, model, tokenizer, shape, peaks, compile_mode: str, seed: int, progress, cancelled):
        super().__init__(model, tokenizer, shape, peaks, seed, progress, cancelled, next(model.parameters()).device)
        self.compile = compile_mode
        self.timer = StepTimer(self.device)
        self._compiled = None

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
