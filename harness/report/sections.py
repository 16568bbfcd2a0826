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

    @property
    def has_data(self) -> bool:
        return bool(self.figures) or any(t.rows or t.notes for t in self.tables)


def build_sections(run: Run, with_figures: bool = True) -> list[Section]:
    from harness.report import plots as P

    fig = (lambda f: f(run)) if with_figures else (lambda f: [])  # noqa: E731
    probes = T.probe_tables(run)
    sections = [
        Section("variants", "Variants",
                "Every variant of the run: parameters (with and without embeddings), each task's metrics, "
                "measured experts per token and expert load balance.",
                [T.variants_table(run)], fig(P.quality_vs_params) + fig(P.quality_vs_cost),
                "No variant was described or evaluated in this run."),
        Section("pairs-active", "Equal-active pairs",
                "Each MoE variant against the dense model with the same active parameters per token.",
                [T.pairs_table(run, "active")], [], ""),
        Section("pairs-total", "Equal-total pairs",
                "Each MoE variant against the dense model with the same total parameters.",
                [T.pairs_table(run, "total")], [], ""),
        Section("long-tail", "Long-tail buckets",
                "Accuracy by entity popularity bucket (head: frequent, tail: rare).",
                [T.bucket_table(run)], fig(P.buckets), "No per-bucket (head / torso / tail) results in this run."),
        Section("probes", "Probes",
                "Latency, throughput and memory as measured, next to the roofline estimate.",
                probes, fig(P.throughput), "No probe results in this run."),
        Section("routing", "Routing",
                "How the routers spread tokens over experts (telemetry recorded during evaluation).",
                [T.routing_table(run)], fig(P.expert_load),
                "No routing telemetry in this run (no MoE variant, or none recorded)."),
        Section("training", "Training", "Loss curves and training speed of trained builds.",
                [T.training_table(run)], fig(P.loss_curves), "No training results in this run."),
        Section("provenance", "Provenance", "What made these numbers.", [T.provenance_table(run)], [], ""),
    ]
    for s in sections:
        if not s.empty and s.tables:
            s.empty = s.tables[0].empty
    return sections
