"""The report's figures (matplotlib, Agg), each returned as a base64 PNG for a self-contained page.

Every function takes a loaded Run and returns a list of ``Figure(title, png_base64)``, empty when the
run holds nothing to draw, so the caller can say so in one line.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

from harness.report.buckets import BUCKETS, bucket_groups, bucket_values, group_metrics, member_tasks, primary_metric
from harness.report.run import Run
from harness.report.seeds import mean_sd, seed_groups

MOE_COLOR, DENSE_COLOR = "#d95f02", "#1b9e77"


@dataclass
class Figure:
    title: str
    png_base64: str


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    # text.parse_math off: a label is shown as written; a task or variant name holding ``$...$`` (or
    # two prices) was read as mathtext, failed to parse, and no report was written at all
    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9,
                         "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3, "text.parse_math": False})
    return plt


#: tests set this to a callable that receives every figure before it is saved (tests/test_ticks.py)
FIGURE_HOOK = None


def _encode(fig) -> str:
    from harness.report.ticks import fit_ticks

    plt = _plt()
    fit_ticks(fig)
    if FIGURE_HOOK is not None:
        FIGURE_HOOK(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _colors(n: int):
    plt = _plt()
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool = True) -> list[tuple[float, float]]:
    """The points no other point beats on both cost (x, lower better) and quality (y), sorted by x."""
    front, best = [], -math.inf
    for x, y in sorted(points, key=lambda p: (p[0], -p[1] if higher_is_better else p[1])):
        score = y if higher_is_better else -y
        if score > best:
            front.append((x, y))
            best = score
    return front


def _scatter_front(ax, points, higher: bool):
    """points: [(x, y, label, is_moe)]; draws the points, their labels and the Pareto front."""
    for x, y, label, moe in points:
        ax.scatter([x], [y], s=70, color=MOE_COLOR if moe else DENSE_COLOR, marker="o" if moe else "s",
                   edgecolor="black", linewidth=0.6, zorder=3)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    front = pareto_front([(x, y) for x, y, _, _ in points], higher)
    if len(front) > 1:
        ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="gray", lw=1.2, zorder=2,
                label="Pareto front")
    ax.scatter([], [], color=MOE_COLOR, marker="o", edgecolor="black", label="MoE")
    ax.scatter([], [], color=DENSE_COLOR, marker="s", edgecolor="black", label="dense")
    ax.legend(loc="best")


def quality_vs_params(run: Run) -> list[Figure]:
    """Per task: primary metric vs active and vs total parameters and, for a multiple-choice task whose
    evaluation time and device price are known, vs USD per correct answer; each with its Pareto front."""
    from harness.report.costs import answer_costs
    from harness.report.numbers import unit

    plt = _plt()
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
            _scatter_front(ax, [(pt[idx], pt[3], pt[0], pt[4]) for pt in (priced if idx == 5 else points)], higher)
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_title(f"{task} {metric} vs {label}" + (" parameters" if idx != 5 else " per correct answer"))
        axes[0][0].set_ylabel(f"{metric} ({unit(metric)})")
        fig.tight_layout()
        figures.append(Figure(f"{task}: {metric} vs active and total parameters"
                              + (" and cost per correct answer" if priced else ""), _encode(fig)))
    return figures


def quality_vs_cost(run: Run) -> list[Figure]:
    """Primary metric vs measured decode ms per token at batch 1, one panel per task (when probes measured decode)."""
    from harness.report.probes import decode_ms_per_token

    cost = decode_ms_per_token(run)
    hidden = member_tasks(run)
    tasks = [t for t in run.tasks() if t not in hidden and any(v in cost and t in run.metrics(v) for v in run.variants)]
    if not tasks:
        return []
    plt = _plt()
    fig, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.3), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        metric = primary_metric(run, task)
        pts = [(cost[v][0], run.metrics(v)[task][metric], v, run.is_moe(v)) for v in run.variants
               if v in cost and isinstance(run.metrics(v).get(task, {}).get(metric), (int, float))]
        _scatter_front(ax, pts, not run.lower_is_better(task, metric))
        bs = sorted({cost[v][1] for v in cost})
        ax.set_xlabel(f"decode ms per token, p50 (batch {'/'.join(map(str, bs))})")
        ax.set_ylabel(metric)
        ax.set_title(f"{task} {metric} vs decode cost")
    fig.tight_layout()
    return [Figure("Accuracy vs measured decode cost (ms per token at batch 1)", _encode(fig))]


def buckets(run: Run) -> list[Figure]:
    """Per bucket group: the primary metric per popularity bucket, one line per model (seeds: mean ± sd)."""
    plt = _plt()
    figures = []
    for group in bucket_groups(run):
        metrics = group_metrics(run, group)
        if not metrics:
            continue
        metric = metrics[0]
        models = []
        for model, variants in seed_groups(run).items():
            per = [bucket_values(run, v, group, metric) for v in variants]
            names = [b for b in BUCKETS if any(b in p for p in per)]
            if names:
                stats = [mean_sd([p[b] for p in per if b in p]) for b in names]
                models.append((model, variants[0], names, stats, len(variants)))
        if not models:
            continue
        fig, ax = plt.subplots(figsize=(8.5, 4.5))
        for i, ((model, v, names, stats, n), color) in enumerate(zip(models, _colors(len(models)))):
            xs = [BUCKETS.index(b) + (i - (len(models) - 1) / 2) * 0.04 for b in names]
            moe = run.is_moe(v)
            ax.errorbar(xs, [m for m, _ in stats], yerr=[sd or 0.0 for _, sd in stats], fmt="o-" if moe else "s--",
                        color=color, capsize=4, lw=2, ms=7, label=model + (f" ({n} seeds)" if n > 1 else ""))
        ax.set_xticks(range(len(BUCKETS)), [f"{b}\n({'frequent' if b == 'head' else 'rare' if b == 'tail' else 'mid'})"
                                             for b in BUCKETS])
        ax.set_xlabel("entity popularity bucket")
        ax.set_ylabel(metric)
        ax.set_title(f"{group.name}: {metric} per popularity bucket (solid: MoE, dashed: dense)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        figures.append(Figure(f"{group.name}: {metric} per long-tail bucket", _encode(fig)))
    return figures


def expert_load(run: Run) -> list[Figure]:
    """Per MoE variant: layer × expert heatmap of each expert's token share, and the experts/token histogram."""
    plt = _plt()
    import numpy as np

    figures = []
    for v in run.variants:
        routing = run.routing(v)
        if not routing:
            continue
        layers = [l for l in routing["layers"] if l.get("tokens_per_expert")]
        if not layers:
            continue
        width = max(len(l["tokens_per_expert"]) for l in layers)
        grid = np.full((len(layers), width), np.nan)
        for i, l in enumerate(layers):
            counts = np.asarray(l["tokens_per_expert"], dtype=float)
            grid[i, : counts.size] = counts / counts.sum() if counts.sum() > 0 else 0.0
        hists = [l.get("experts_per_token_hist") for l in layers if isinstance(l.get("experts_per_token_hist"), dict)]
        ncols = 2 if hists else 1
        fig, axes = plt.subplots(1, ncols, figsize=(12 if hists else 8, max(2.6, 0.45 * len(layers) + 2)),
                                 squeeze=False, gridspec_kw={"width_ratios": [3, 1.2][:ncols]})
        ax = axes[0][0]
        im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0)
        ax.grid(False)
        ax.set_xlabel("expert")
        ax.set_ylabel("layer")
        ax.set_yticks(range(len(layers)), [str(l.get("layer", i)) for i, l in enumerate(layers)])
        if width <= 32:
            ax.set_xticks(range(width))
        ax.set_title(f"{v}: share of routed tokens per expert (uniform = {1 / width:.3f})")
        fig.colorbar(im, ax=ax, label="token share")
        if hists:
            ax_h = axes[0][1]
            keys = sorted({k for h in hists for k in h}, key=lambda k: float(k))
            mean = [sum(float(h.get(k, 0)) for h in hists) / len(hists) for k in keys]
            ax_h.bar(keys, mean, color=MOE_COLOR, edgecolor="black", linewidth=0.5)
            ax_h.set_xlabel("experts per token")
            ax_h.set_ylabel("share of tokens (mean over layers)")
            ax_h.set_title("Experts per token")
        fig.tight_layout()
        figures.append(Figure(f"{v}: expert load and experts per token", _encode(fig)))
    return figures
