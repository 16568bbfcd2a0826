"""Cost per answer: seconds and US dollars per correct answer (``harness.report.costs``)."""

from __future__ import annotations

from harness.report import costs as C
from harness.report.section import Context, Section


def cost_section(ctx: Context) -> Section:
    return Section("cost", "Cost per answer",
                   "What a correct answer cost on the device that ran it: evaluation seconds per correct answer and "
                   "US dollars at the device's hourly price, per multiple-choice task and variant.",
                   [C.cost_per_answer_table(ctx.run), C.prices_table(ctx.run)], [],
                   "No multiple-choice task with an accuracy and a measured evaluation time in this run.")
