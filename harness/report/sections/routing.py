"""Routing: how the routers spread tokens over experts (telemetry recorded during evaluation)."""

from __future__ import annotations

import numpy as np

from harness.report import answers as A
from harness.report import tables as T
from harness.report.figure import MOE_COLOR, Figure, encode, pyplot
from harness.report.run import Run
from harness.report.section import Context, Section


def routing_section(ctx: Context) -> Section:
    return Section("routing", "Routing",
                   "How the routers spread tokens over experts (telemetry recorded during evaluation).",
                   [T.routing_table(ctx.run), A.routing_answers_table(ctx.run)], ctx.fig(expert_load),
                   "No routing telemetry in this run (no MoE variant, or none recorded).")


def expert_load(run: Run) -> list[Figure]:
    """Per MoE variant: layer × expert heatmap of each expert's token share, and the experts/token histogram."""
    plt = pyplot()
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
        figures.append(Figure(f"{v}: expert load and experts per token", encode(fig)))
    return figures
