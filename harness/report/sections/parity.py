"""Engine parity: one build on two engines, document by document (``harness.report.parity``)."""

from __future__ import annotations

from harness.report.parity import MARGIN, parity_lines, parity_table, routing_effect_table
from harness.report.section import Context, Section


def parity_section(ctx: Context) -> list[Section]:
    """The report's engine-parity section (``parity_rows``, shared in ``ctx.parity``), right after the answer, or
    nothing when no build ran on two engines (a one-engine run's report is unchanged)."""
    run, rows = ctx.run, ctx.parity
    if not rows:
        return []
    return [Section("engine-parity", "Engine parity",
                    "The same build evaluated on two engines, document by document: the paired loglikelihood "
                    "difference with its 95% CI and largest value, chosen answers and greedy generations that "
                    "differ out of N, and routing telemetry equal per layer. Flagged here, in every dtype: a "
                    "request beyond the dtype's tolerance (float32: atol 1e-3 + rtol 1e-4 × |loglikelihood|, "
                    "the numbers of lm-eval's own engine parity test), a NaN or infinite loglikelihood, any "
                    "changed answer or generation, and a metric difference beyond the smallest claim margin "
                    f"({MARGIN:.0%}).",
                    [parity_table(run, rows), routing_effect_table(run, rows)], [], "",
                    lines=parity_lines(run, rows))]
