"""Over seeds: each model's figures as mean ± sd over its training seeds, and each pair seed by seed."""

from __future__ import annotations

from harness.report import answers as A
from harness.report.section import Context, Section


def seeds_section(ctx: Context) -> Section:
    return Section("seeds", "Over seeds",
                   "Each model's figures as mean ± standard deviation over its training seeds, and each pair's "
                   "difference seed by seed (within-seed bootstrap) and over seeds (t-interval).",
                   [A.seeds_table(ctx.run), A.seed_pairs_table(ctx.run)], [],
                   "No model was trained with more than one seed.")
