"""Throughput probe: tokens per second over a batch-size sweep, prefill and decode apart."""

from __future__ import annotations

from workers.probes.steps import ProbeContext, timed_row


def run(config, ctx: ProbeContext) -> list[dict]:
    rows = []
    total = len(config.batch_sizes)
    for i, batch in enumerate(config.batch_sizes):
        ctx.check_cancelled()
        samples, census = ctx.prefill(batch, config.prompt_length, config.warmup, config.repeats)
        rows.append(timed_row(ctx, "prefill", batch, config.prompt_length, samples, census))
        if config.new_tokens > 0:
            ctx.check_cancelled()
            samples, census = ctx.decode(batch, config.context_length, config.new_tokens, config.warmup,
                                         config.repeats)
            rows.append(timed_row(ctx, "decode", batch, config.context_length, samples, census,
                                  config.new_tokens))
        ctx.progress(i + 1, total, f"throughput batch {batch}")
    return rows
