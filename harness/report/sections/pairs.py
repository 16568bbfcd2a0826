"""Equal-active and equal-total pairs: each MoE variant against its dense twins."""

from __future__ import annotations

from harness.report import tables as T
from harness.report.section import Context, Section


def pairs_sections(ctx: Context) -> list[Section]:
    return [Section("pairs-active", "Equal-active pairs",
                    "Each MoE variant against the dense model with the same active parameters per token.",
                    [T.pairs_table(ctx.run, "active")], [], ""),
            Section("pairs-total", "Equal-total pairs",
                    "Each MoE variant against the dense model with the same total parameters.",
                    [T.pairs_table(ctx.run, "total")], [], "")]
