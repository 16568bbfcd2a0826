"""The report's figures (matplotlib, Agg), each returned as a base64 PNG for a self-contained page.

Every function takes a loaded Run and returns a list of ``Figure(title, png_base64)``, empty when the
run holds nothing to draw, so the caller can say so in one line.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

from harness.report.run import Run
from harness.report.tables import BUCKETS, bucket_values, primary_metric

MOE_COLOR, DENSE_COLOR = "#d95f02", "#1b9e77"


@dataclass
class Figure:
    title: str
    png_base64: str


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 9,
                         "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3})
    return plt


def _encode(fig) -> str:
    plt = _plt()
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
    """Per task: primary metric vs active and vs total parameters, with the Pareto front."""
    plt = _plt()
    figures = []
    for task in run.tasks():
        metric = primary_metric(run, task)
        points = []
        for v in run.variants:
            p, value = run.params(v), run.metrics(v).get(task, {}).get(metric)
            if isinstance(value, (int, float)) and p.get("active") and p.get("total"):
                points.append((v, p["active"], p["total"], value, run.is_moe(v)))
        if not points:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.3), sharey=True)
        for ax, idx, label in ((axes[0], 1, "active"), (axes[1], 2, "total")):
            _scatter_front(ax, [(pt[idx], pt[3], pt[0], pt[4]) for pt in points], not run.lower_is_better(task, metric))
            ax.set_xscale("log")
            ax.set_xlabel(f"{label} parameters (log scale)")
            ax.set_title(f"{task} {metric} vs {label} parameters")
        axes[0].set_ylabel(metric)
        fig.tight_layout()
        figures.append(Figure(f"{task}: {metric} vs active and total parameters", _encode(fig)))
    return figures


def decode_cost(run: Run) -> dict[str, tuple[float, int]]:
    """Per variant: decode ms per step (p50) at its smallest measured batch size, and that batch size."""
    out = {}
    for variant, probe in run.probes():
        for row in probe.get("rows") or []:
            if row.get("phase") == "decode" and isinstance(row.get("ms_p50"), (int, float)):
                bs = row.get("batch_size") or 1
                if variant not in out or bs < out[variant][1]:
                    out[variant] = (float(row["ms_p50"]), bs)
    return out


def quality_vs_cost(run: Run) -> list[Figure]:
    """Primary metric vs measured decode latency, one panel per task (only when probes measured decode)."""
    cost = decode_cost(run)
    tasks = [t for t in run.tasks() if any(v in cost and t in run.metrics(v) for v in run.variants)]
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
        ax.set_xlabel(f"decode ms per step, p50 (batch {'/'.join(map(str, bs))})")
        ax.set_ylabel(metric)
        ax.set_title(f"{task} {metric} vs decode cost")
    fig.tight_layout()
    return [Figure("Quality vs measured decode cost", _encode(fig))]


def buckets(run: Run) -> list[Figure]:
    """Per task with bucket results: grouped bars, one group per popularity bucket, one bar per variant."""
    plt = _plt()
    figures = []
    for task in run.tasks():
        data = [(v, bucket_values(run, v, task)) for v in run.variants]
        data = [(v, d) for v, d in data if d and d[1]]
        if not data:
            continue
        names = [b for b in BUCKETS if any(b in d[1] for _, d in data)]
        names += sorted({b for _, d in data for b in d[1]} - set(names))
        fig, ax = plt.subplots(figsize=(max(7, 2.2 * len(names) + 2), 4.3))
        width = 0.8 / len(data)
        for i, ((v, (metric, per)), color) in enumerate(zip(data, _colors(len(data)))):
            xs = [j + (i - (len(data) - 1) / 2) * width for j in range(len(names))]
            ax.bar(xs, [per.get(b, float("nan")) for b in names], width, label=v, color=color,
                   hatch="//" if run.is_moe(v) else None, edgecolor="black", linewidth=0.5)
        ax.set_xticks(range(len(names)), names)
        ax.set_xlabel("entity popularity bucket")
        ax.set_ylabel(data[0][1][0])
        ax.set_title(f"{task}: {data[0][1][0]} per popularity bucket (hatched: MoE)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        figures.append(Figure(f"{task}: long-tail buckets", _encode(fig)))
    return figures


def throughput(run: Run) -> list[Figure]:
    """Decode throughput and step latency vs batch size, measured (solid) against the roofline (dashed)."""
    series: dict[str, list] = {}
    for variant, probe in run.probes():
        for row in probe.get("rows") or []:
            if row.get("phase", "decode") == "decode" and isinstance(row.get("batch_size"), (int, float)):
                series.setdefault(variant, []).append(row)
    series = {v: rows for v, rows in series.items()
              if any(isinstance(r.get("tokens_per_s"), (int, float)) or isinstance(r.get("ms_p50"), (int, float))
                     for r in rows)}
    if not series:
        return []
    plt = _plt()
    fig, (ax_t, ax_l) = plt.subplots(1, 2, figsize=(12, 4.5))
    contexts = set()
    for (variant, rows), color in zip(series.items(), _colors(len(series))):
        ctx = max(((r.get("context") or 0) for r in rows), default=0)
        rows = sorted([r for r in rows if (r.get("context") or 0) == ctx], key=lambda r: r["batch_size"])
        contexts.add(ctx)
        bs = [r["batch_size"] for r in rows]
        style = "o-" if run.is_moe(variant) else "s-"
        tps = [r.get("tokens_per_s") for r in rows]
        if all(isinstance(t, (int, float)) for t in tps):
            ax_t.plot(bs, tps, style, color=color, label=variant)
        roof = [r.get("roofline_ms") for r in rows]
        if all(isinstance(t, (int, float)) and t > 0 for t in roof):
            ax_t.plot(bs, [b * 1000.0 / t for b, t in zip(bs, roof)], "--", color=color, alpha=0.7)
            ax_l.plot(bs, roof, "--", color=color, alpha=0.7)
        lat = [r.get("ms_p50") for r in rows]
        if all(isinstance(t, (int, float)) for t in lat):
            ax_l.plot(bs, lat, style, color=color, label=variant)
    ctx_s = "/".join(str(c) for c in sorted(contexts))
    for ax in (ax_t, ax_l):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (log2)")
        ax.plot([], [], "--", color="gray", label="roofline")
        ax.legend(loc="best")
    ax_t.set_yscale("log")
    ax_t.set_ylabel("decode tokens / s (log)")
    ax_t.set_title(f"Decode throughput vs batch size (context {ctx_s})")
    ax_l.set_ylabel("ms per decode step, p50")
    ax_l.set_title(f"Decode step latency vs batch size (context {ctx_s})")
    fig.tight_layout()
    return [Figure("Decode throughput and latency vs batch size, with rooflines", _encode(fig))]


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


def loss_curves(run: Run) -> list[Figure]:
    """Training loss vs tokens seen, one line per trained variant."""
    curves = {v: (run.training(v) or {}).get("curve") for v in run.variants}
    curves = {v: c for v, c in curves.items() if c}
    if not curves:
        return []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 4.3))
    for (v, curve), color in zip(curves.items(), _colors(len(curves))):
        xs = [p.get("tokens", p.get("step")) for p in curve]
        ax.plot(xs, [p.get("loss") for p in curve], "-" if run.is_moe(v) else "--", color=color, label=v, lw=1.8)
    use_tokens = all("tokens" in p for c in curves.values() for p in c)
    ax.set_xlabel("tokens seen" if use_tokens else "step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss (solid: MoE, dashed: dense)")
    ax.legend(loc="best")
    fig.tight_layout()
    return [Figure("Training loss curves", _encode(fig))]
