"""The answer: one line per claim (the card) and every comparison's verdict, first in the report."""

from __future__ import annotations

from harness.report import answers as A
from harness.report.card import build_card
from harness.report.parity import parity_flags
from harness.report.section import Context, Section
from harness.report.trust import mark_verdicts, unauthenticated
from harness.report.verdicts import EQUIVALENCE_MARGIN, MARGINS


def answer_section(ctx: Context) -> Section:
    run = ctx.run
    card = build_card(run, ctx.verdicts)
    card.notes[:0] = parity_flags(run, ctx.parity)  # engines that disagree are said on the first screen
    table = A.verdict_table(run, ctx.verdicts)
    mark_verdicts(card, table, ctx.verdicts, unauthenticated(run))
    return Section("verdicts", "The answer",
                   "Each claim of docs/claims.md this run can speak to, quoted, with its verdict over all its "
                   "comparisons (holds / does not hold / inconclusive at this size), the headline comparison's "
                   "effect with its Holm-adjusted CI and units, and the regime. A verdict is about this run, at its "
                   "size and in its regime, not about MoE in general.",
                   [table], [], "No claim this run can speak to.",
                   lines=A.verdict_lines(run, ctx.verdicts), card=card, collapse=True,
                   details_intro="A verdict is about this run, at its size and in its regime, not about MoE in "
                                 "general. Every comparison: its number and 95% CI (over seeds, a t-interval of the per-seed "
                                 "paired differences, when the run trained two or more seeds; else the within-seed "
                                 "paired bootstrap over documents), the Holm-adjusted CI it is judged on, and for an "
                                 "inconclusive one what the run could detect. Claim 2 uses an equivalence margin of "
                                 f"{EQUIVALENCE_MARGIN:.0%} of the dense twin's value; claim 9 a margin of "
                                 f"{MARGINS['9']:.0%} of the twin's value at its exact (f32) setting.")
