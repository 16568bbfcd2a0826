"""Latency probe: prefill time per prompt length (one request), decode time per token by batch and context."""

from __future__ import annotations

from workers.probes.steps import ProbeContext, timed_row


def run(config, ctx: ProbeContext) -> list[dict]:
    points = [("prefill", 1, n) for n in config.prompt_lengths]
    if config.new_tokens > 0:
        points += [("decode", b, c) for b in config.batch_sizes for c in config.context_lengths]
    rows = []
    for i, (phase, batch, length) in enumerate(points):
        ctx.check_cancelled()
        if phase == "prefill":
            samples, census = ctx.prefill(batch, length, config.warmup, config.repeats)
            rows.append(timed_row(ctx, phase, batch, length, samples, census))
        else:
            samples, census = ctx.decode(batch, length, config.new_tokens, config.warmup, config.repeats)
            rows.append(timed_row(ctx, phase, batch, length, samples, census, config.new_tokens))
        ctx.progress(i + 1, len(points), f"latency {phase} batch {batch} length {length}")
    return rows
