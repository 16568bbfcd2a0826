"""Variants: every variant's parameters and metrics, and quality against parameters and cost."""

from __future__ import annotations

from harness.report import tables as T
from harness.report.buckets import member_tasks, primary_metric
from harness.report.costs import answer_costs
from harness.report.figure import Figure, encode, pyplot, scatter_front
from harness.report.numbers import unit
from harness.report.probes import decode_ms_per_token
from harness.report.run import Run
from harness.report.section import Context, Section


def variants_section(ctx: Context) -> Section:
    return Section("variants", "Variants",
                   "Every variant of the run: parameters (with and without embeddings), each task's metrics, "
                   "measured experts per token and expert load balance.",
                   [T.variants_table(ctx.run)], ctx.fig(quality_vs_params) + ctx.fig(quality_vs_cost),
                   "No variant was described or evaluated in this run.")


def quality_vs_params(run: Run) -> list[Figure]:
    """Per task: primary metric vs active and vs total parameters and, for a multiple-choice task whose
    evaluation time and device price are known, vs USD per correct answer; each with its Pareto front."""
    plt = pyplot()
    figures = []
    hidden = member_tasks(run)
    usd = {(c.variant, c.task): c.usd_per_correct for c in answer_costs(run) if c.usd_per_correct}
    for task in [t for t in run.tasks() if t not in hidden]:
        metric = primary_metric(run, task)
        points = []
        for v in run.variants:
            p, value = run.params(v), run.metrics(v).get(task, {}).get(metric)
            if isinstance(value, (int, float)) and p.get("active") and p.get("total"):
                points.append((v, p["active"], p["total"], value, run.is_moe(v), usd.get((v, task))))
        if not points:
            continue
        priced = [pt for pt in points if pt[5]]
        panels = [(1, "active", "active parameters (count, log scale)"), (2, "total", "total parameters (count, log scale)")]
        if priced:
            panels.append((5, "cost", "cost per correct answer (USD, log scale)"))
        fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.3), sharey=True, squeeze=False)
        higher = not run.lower_is_better(task, metric)
        for ax, (idx, label, xlabel) in zip(axes[0], panels):
            scatter_front(ax, [(pt[idx], pt[3], pt[0], pt[4]) for pt in (priced if idx == 5 else points)], higher)
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_title(f"{task} {metric} vs {label}" + (" parameters" if idx != 5 else " per correct answer"))
        axes[0][0].set_ylabel(f"{metric} ({unit(metric)})")
        fig.tight_layout()
        figures.append(Figure(f"{task}: {metric} vs active and total parameters"
                              + (" and cost per correct answer" if priced else ""), encode(fig)))
    return figures


def quality_vs_cost(run: Run) -> list[Figure]:
    """Primary metric vs measured decode ms per token at batch 1, one panel per task (when probes measured decode)."""
    cost = decode_ms_per_token(run)
    hidden = member_tasks(run)
    tasks = [t for t in run.tasks() if t not in hidden and any(v in cost and t in run.metrics(v) for v in run.variants)]
    if not tasks:
        return []
    plt = pyplot()
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        metric = primary_metric(run, task)
        pts = [(cost[v][0], run.metrics(v)[task][metric], v, run.is_moe(v)) for v in run.variants
               if v in cost and isinstance(run.metrics(v).get(task, {}).get(metric), (int, float))]
        scatter_front(ax, pts, not run.lower_is_better(task, metric))
        bs = sorted({cost[v][1] for v in cost})
        ax.set_xlabel(f"decode ms per token, p50 (batch {'/'.join(map(str, bs))})")
        ax.set_ylabel(metric)
        ax.set_title(f"{task} {metric} vs decode cost")
    fig.tight_layout()
    return [Figure("Accuracy vs measured decode cost (ms per token at batch 1)", encode(fig))]
