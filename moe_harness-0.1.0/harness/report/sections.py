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

    @property
    def has_data(self) -> bool:
        return bool(self.lines) or bool(self.figures) or any(t.rows or t.notes for t in self.tables)


def build_sections(run: Run, with_figures: bool = True) -> list[Section]:
    from harness.report import answers as A
    from harness.report import longtail as L
    from harness.report import plots_answers as PA
    from harness.report import plots as P
    from harness.report import plots_probes as PP
    from harness.report import plots_training as PT
    from harness.report import probes as PR
    from harness.report.provenance import provenance_table
    from harness.report.sweeps import sweep_series
    from harness.report.verdicts import EQUIVALENCE_MARGIN, all_verdicts

    fig = (lambda f: f(run)) if with_figures else (lambda f: [])  # noqa: E731
    verdicts, series = all_verdicts(run), sweep_series(run)  # each used by a table and a figure or sentences
    probes = [PR.latency_table(run), PR.throughput_table(run), PR.decode_twins_table(run), PR.memory_table(run),
              PR.routing_probe_table(run)] + PR.plain_probe_tables(run)
    sections = [
        Section("verdicts", "Verdicts",
                "What this run says about each claim of CLAIMS.md it can speak to: holds, does not hold, or "
                "inconclusive at this size, with its number and 95% CI (over seeds, a t-interval of the per-seed "
                "paired differences, when the run trained two or more seeds; else the within-seed paired "
                "bootstrap over documents). Claim 2 uses an equivalence margin of "
                f"{EQUIVALENCE_MARGIN:.0%} of the dense twin's value. A verdict is about this run, at its size and "
                "in its regime, not about MoE in general.",
                [A.verdict_table(run, verdicts)], [], "No claim this run can speak to.",
                lines=A.verdict_lines(run, verdicts)),
        Section("variants", "Variants",
                "Every variant of the run: parameters (with and without embeddings), each task's metrics, "
                "measured experts per token and expert load balance.",
                [T.variants_table(run)], fig(P.quality_vs_params) + fig(P.quality_vs_cost),
                "No variant was described or evaluated in this run."),
        Section("seeds", "Over seeds",
                "Each model's figures as mean ± standard deviation over its training seeds, and each pair's "
                "difference seed by seed (within-seed bootstrap) and over seeds (t-interval).",
                [A.seeds_table(run), A.seed_pairs_table(run)], [], "No model was trained with more than one seed."),
        Section("pairs-active", "Equal-active pairs",
                "Each MoE variant against the dense model with the same active parameters per token.",
                [T.pairs_table(run, "active")], [], ""),
        Section("pairs-total", "Equal-total pairs",
                "Each MoE variant against the dense model with the same total parameters.",
                [T.pairs_table(run, "total")], [], ""),
        Section("efficiency", "Held-out loss along training and token efficiency",
                "Held-out loss of each build against training tokens and seconds (mean over seeds, ±1 sd band), "
                "and for each equal-active pair the share of its twin's tokens and seconds the MoE needed to reach "
                "the twin's final held-out loss.",
                [A.efficiency_table(run)], fig(PA.heldout_curves),
                "No train result carries train.heldout_curve: no held-out curves and no token efficiency."),
        Section("sweeps", "Sweeps",
                "Each pair's difference against the swept setting, with its 95% CI, and where it changes sign.",
                [A.sweep_table(run, series)], PA.sweeps(run, series) if with_figures else [],
                "No variant carries a sweep point: no sweep in this run."),
        Section("long-tail", "Long-tail buckets",
                "Accuracy by entity popularity bucket (head: frequent, tail: rare), per model and per pair; the "
                "training regime of the knowledge corpus and the knowledge each build stored.",
                [L.bucket_table(run), L.bucket_pairs_table(run), L.regime_table(run), A.knowledge_bits_table(run),
                 L.knowledge_table(run)],
                fig(P.buckets), "No per-bucket (head / torso / tail) results in this run."),
        Section("probes", "Probes",
                "Latency, throughput and memory as measured, next to the roofline estimate; where an MoE's decode "
                "stops being cheap against its dense twins; experts touched per batch.",
                probes, fig(PP.decode_vs_batch) + fig(PP.experts_touched), "No probe results in this run."),
        Section("routing", "Routing",
                "How the routers spread tokens over experts (telemetry recorded during evaluation).",
                [T.routing_table(run), A.routing_answers_table(run)], fig(P.expert_load),
                "No routing telemetry in this run (no MoE variant, or none recorded)."),
        Section("training", "Training", "Training loss curves and training speed of trained builds.",
                [T.training_table(run)], fig(PT.loss_curves), "No training results in this run."),
        Section("provenance", "Provenance", "What made these numbers.", [provenance_table(run)], [], ""),
    ]
    for s in sections:
        if not s.empty and s.tables:
            s.empty = s.tables[0].empty
        if len(s.tables) > 1 and s.has_data:  # a section with data shows only its tables that have some
            s.tables = [t for t in s.tables if t.rows or t.notes]
    return sections
