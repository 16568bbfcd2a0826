"""Routing probe: distinct experts touched per prefill and per decode step, by batch size.

The roofline of an MoE decode step reads only the touched experts; this probe measures how many a
layer touches (router hooks, see census.py) next to the uniform-routing expectation E(1-(1-k/E)^T).
"""

from __future__ import annotations

from workers.errors import Unsupported
from moe_schema.roofline import expected_experts_touched
from workers.probes.steps import ProbeContext


def _row(ctx: ProbeContext, phase: str, batch: int, length: int, tokens: int, census: dict) -> dict:
    shape = ctx.shape
    touched = census["experts_touched"]
    return {
        "phase": phase, "batch_size": batch,
        "context": length if phase == "decode" else 0,
        "prompt_length": length if phase == "prefill" else None,
        "tokens": tokens, "num_experts": shape.num_experts, "top_k": shape.top_k,
        "experts_touched": touched, "experts_touched_per_layer": census["experts_touched_per_layer"],
        "experts_touched_fraction": touched / shape.num_experts,
        "experts_touched_uniform": expected_experts_touched(shape.num_experts, shape.top_k, tokens),
        "experts_per_token": census["experts_per_token"], "passes": census["passes"],
    }


def run(config, ctx: ProbeContext) -> list[dict]:
    if not ctx.shape.moe:
        raise Unsupported("routing probe: this model has no MoE blocks (no module with a gate and experts)")
    rows = []
    for i, batch in enumerate(config.batch_sizes):
        ctx.check_cancelled()
        _, census = ctx.prefill(batch, config.prompt_length, warmup=0, repeats=0)
        rows.append(_row(ctx, "prefill", batch, config.prompt_length, batch * config.prompt_length, census))
        if config.new_tokens > 0:
            _, census = ctx.decode(batch, config.prompt_length, config.new_tokens, warmup=0, repeats=0)
            rows.append(_row(ctx, "decode", batch, config.prompt_length, batch, census))
        ctx.progress(i + 1, len(config.batch_sizes), f"routing batch {batch}")
    return rows
