"""The report's sections, in reading order: tables plus (for HTML) figures, or one line saying why empty."""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.report import tables as T
from harness.report.run import Run


@dataclass
class Section:
    id: str
    title: str
    intro: str
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    empty: str = ""
    lines: list = field(default_factory=list)  # sentences shown before the tables (the verdicts)
    card: object = None      # the answer card (harness.report.card.Card), shown first and never collapsed
    collapse: bool = False   # HTML: the lines and tables inside <details> (the card stays open)
    details_intro: str = ""  # one line opening the collapsed part

    @property
    def has_data(self) -> bool:
        return (self.card is not None or bool(self.lines) or bool(self.figures)
                or any(t.rows or t.notes for t in self.tables))


@dataclass
class Context:
    """What the section builders share: the run, its verdicts, sweep series and engine parity (each
    used by more than one table, figure or sentence), and whether to draw figures."""

    run: Run
    with_figures: bool = True
    _memo: dict = field(default_factory=dict, repr=False)

    def fig(self, f) -> list:
        return f(self.run) if self.with_figures else []

    @property
    def verdicts(self) -> dict:
        if "verdicts" not in self._memo:
            from harness.report.verdicts import all_verdicts
            self._memo["verdicts"] = all_verdicts(self.run)
        return self._memo["verdicts"]

    @property
    def parity(self) -> list:
        """One build on two engines, per task (``parity.parity_rows``): read by the card and its section."""
        if "parity" not in self._memo:
            from harness.report.parity import parity_rows
            self._memo["parity"] = parity_rows(self.run)
        return self._memo["parity"]

    @property
    def series(self) -> list:
        if "series" not in self._memo:
            from harness.report.sweeps import sweep_series
            self._memo["series"] = sweep_series(self.run)
        return self._memo["series"]


def answer_section(ctx: Context) -> Section:
    from harness.report import answers as A
    from harness.report.card import build_card
    from harness.report.parity import parity_flags
    from harness.report.verdicts import EQUIVALENCE_MARGIN

    from harness.report.trust import mark_verdicts, unauthenticated

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
                                 f"{EQUIVALENCE_MARGIN:.0%} of the dense twin's value.")


def variants_section(ctx: Context) -> Section:
    from harness.report import plots as P

    return Section("variants", "Variants",
                   "Every variant of the run: parameters (with and without embeddings), each task's metrics, "
                   "measured experts per token and expert load balance.",
                   [T.variants_table(ctx.run)], ctx.fig(P.quality_vs_params) + ctx.fig(P.quality_vs_cost),
                   "No variant was described or evaluated in this run.")


def cost_section(ctx: Context) -> Section:
    from harness.report import costs as C

    return Section("cost", "Cost per answer",
                   "What a correct answer cost on the device that ran it: evaluation seconds per correct answer and "
                   "US dollars at the device's hourly price, per multiple-choice task and variant.",
                   [C.cost_per_answer_table(ctx.run), C.prices_table(ctx.run)], [],
                   "No multiple-choice task with an accuracy and a measured evaluation time in this run.")


def seeds_section(ctx: Context) -> Section:
    from harness.report import answers as A

    return Section("seeds", "Over seeds",
                   "Each model's figures as mean ± standard deviation over its training seeds, and each pair's "
                   "difference seed by seed (within-seed bootstrap) and over seeds (t-interval).",
                   [A.seeds_table(ctx.run), A.seed_pairs_table(ctx.run)], [],
                   "No model was trained with more than one seed.")


def pairs_sections(ctx: Context) -> list[Section]:
    return [Section("pairs-active", "Equal-active pairs",
                    "Each MoE variant against the dense model with the same active parameters per token.",
                    [T.pairs_table(ctx.run, "active")], [], ""),
            Section("pairs-total", "Equal-total pairs",
                    "Each MoE variant against the dense model with the same total parameters.",
                    [T.pairs_table(ctx.run, "total")], [], "")]


def efficiency_section(ctx: Context) -> Section:
    from harness.report import answers as A
    from harness.report import plots_answers as PA

    return Section("efficiency", "Held-out loss along training and token efficiency",
                   "Held-out loss of each build against training tokens and seconds (mean over seeds, ±1 sd band), "
                   "and for each equal-active pair the share of its twin's tokens and seconds the MoE needed to "
                   "reach the twin's final held-out loss.",
                   [A.efficiency_table(ctx.run)], ctx.fig(PA.heldout_curves),
                   "No train result carries train.heldout_curve: no held-out curves and no token efficiency.")


def sweeps_section(ctx: Context) -> Section:
    from harness.report import answers as A
    from harness.report import plots_answers as PA

    return Section("sweeps", "Sweeps",
                   "Each pair's difference against the swept setting, with its 95% CI, and where it changes sign.",
                   [A.sweep_table(ctx.run, ctx.series)], PA.sweeps(ctx.run, ctx.series) if ctx.with_figures else [],
                   "No variant carries a sweep point: no sweep in this run.")


def longtail_section(ctx: Context) -> Section:
    from harness.report import answers as A
    from harness.report import longtail as L
    from harness.report import plots as P

    run = ctx.run
    return Section("long-tail", "Long-tail buckets",
                   "Accuracy by entity popularity bucket (head: frequent, tail: rare), per model and per pair; the "
                   "training regime of the knowledge corpus and the knowledge each build stored.",
                   [L.bucket_table(run), L.bucket_pairs_table(run), L.regime_table(run), A.knowledge_bits_table(run),
                    L.knowledge_table(run)],
                   ctx.fig(P.buckets), "No per-bucket (head / torso / tail) results in this run.")


def capacity_section(ctx: Context) -> Section:
    from harness.report import capacity as C

    return Section("capacity", "Knowledge capacity",
                   "Bits each build stores about a bios population (Allen-Zhu & Li's measure, every person scored), "
                   "per parameter counted with one embedding table (R), beside the most the corpus lets it show "
                   "(R_max) and what the paper's law predicts for it (min(R_max, peak)); each MoE against the best "
                   "dense R at its exposure count, and its equal-total twin.",
                   [C.capacity_table(ctx.run), C.moe_factor_table(ctx.run)], ctx.fig(C.bits_vs_params),
                   "No train result carries a capacity scoring in this run.")


def probes_section(ctx: Context) -> Section:
    from harness.report import plots_probes as PP
    from harness.report import probes as PR

    run = ctx.run
    probes = [PR.latency_table(run), PR.throughput_table(run), PR.decode_twins_table(run), PR.memory_table(run),
              PR.routing_probe_table(run)] + PR.plain_probe_tables(run)
    return Section("probes", "Probes",
                   "Latency, throughput (with its cost per 1M tokens) and memory as measured, next to the roofline "
                   "estimate; where an MoE's decode stops being cheap against its dense twins; experts touched per "
                   "batch.",
                   probes, ctx.fig(PP.decode_vs_batch) + ctx.fig(PP.experts_touched), "No probe results in this run.")


def parity_section(ctx: Context) -> list[Section]:
    from harness.report.parity import parity_sections

    return parity_sections(ctx.run, ctx.parity)  # only when a build ran on two engines


def routing_section(ctx: Context) -> Section:
    from harness.report import answers as A
    from harness.report import plots as P

    return Section("routing", "Routing",
                   "How the routers spread tokens over experts (telemetry recorded during evaluation).",
                   [T.routing_table(ctx.run), A.routing_answers_table(ctx.run)], ctx.fig(P.expert_load),
                   "No routing telemetry in this run (no MoE variant, or none recorded).")


def training_section(ctx: Context) -> Section:
    from harness.report import plots_training as PT

    return Section("training", "Training", "Training loss curves and training speed of trained builds.",
                   [T.training_table(ctx.run)], ctx.fig(PT.loss_curves), "No training results in this run.")


def provenance_section(ctx: Context) -> Section:
    from harness.report.provenance import provenance_table

    return Section("provenance", "Provenance", "What made these numbers.", [provenance_table(ctx.run)], [], "")


#: the report's sections in reading order: each entry takes the Context and returns a Section or a list of
#: them. A new section is one function and one entry here.
SECTION_BUILDERS = [answer_section, parity_section, variants_section, cost_section, seeds_section, pairs_sections,
                    efficiency_section, sweeps_section, longtail_section, capacity_section, probes_section,
                    routing_section, training_section, provenance_section]


def build_sections(run: Run, with_figures: bool = True, builders=None) -> list[Section]:
    from harness.report.trust import mark_tables, unauthenticated

    ctx = Context(run, with_figures)
    sections: list[Section] = []
    for builder in SECTION_BUILDERS if builders is None else builders:
        made = builder(ctx)
        sections += made if isinstance(made, list) else [made]
    mark_tables([t for s in sections for t in s.tables], unauthenticated(run))  # † on --insecure results
    for s in sections:
        if not s.empty and s.tables:
            s.empty = s.tables[0].empty
        if len(s.tables) > 1 and s.has_data:  # a section with data shows only its tables that have some
            s.tables = [t for t in s.tables if t.rows or t.notes]
    return sections
