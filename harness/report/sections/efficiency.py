"""Held-out loss along training (vs tokens, vs seconds) and token efficiency, with seeds' bands."""

from __future__ import annotations

from harness.report import answers as A
from harness.report.curves import KINDS, heldout_curve, points
from harness.report.figure import Figure, colors, encode, pyplot
from harness.report.run import Run
from harness.report.section import Context, Section
from harness.report.seeds import is_native, mean_sd, seed_groups


def efficiency_section(ctx: Context) -> Section:
    return Section("efficiency", "Held-out loss along training and token efficiency",
                   "Held-out loss of each build against training tokens and seconds (mean over seeds, ±1 sd band), "
                   "and for each equal-active pair the share of its twin's tokens and seconds the MoE needed to "
                   "reach the twin's final held-out loss.",
                   [A.efficiency_table(ctx.run)], ctx.fig(heldout_curves),
                   "No train result carries train.heldout_curve: no held-out curves and no token efficiency.")


def _model_curves(run: Run) -> dict[str, tuple[str, list[list[dict]]]]:
    """{model: (first variant, its seeds' curves)}, builds under their own routing only (a routing
    variant of a trained MoE shares its checkpoint and curve)."""
    out = {}
    for model, variants in seed_groups(run).items():
        curves = [c for c in (heldout_curve(run, v) for v in variants if is_native(run, v)) if c]
        if curves:
            out[model] = (variants[0], curves)
    return out


def _mean_band(curves: list[list[dict]], kind: str, x: str):
    """(xs, mean loss, sd loss) at the token counts every seed evaluated; xs = tokens, or the seeds'
    mean seconds at those token counts."""
    shared = sorted(set.intersection(*({p["tokens"] for p in c} for c in curves)))
    xs, mean, sd = [], [], []
    for t in shared:
        at = [next(p for p in c if p["tokens"] == t) for c in curves]
        losses = [p["loss"].get(kind) for p in at]
        xv = [p.get(x) for p in at]
        if not all(isinstance(v, (int, float)) for v in losses + xv):
            continue
        m, s = mean_sd([float(v) for v in losses])
        xs.append(sum(xv) / len(xv))
        mean.append(m)
        sd.append(s or 0.0)
    return xs, mean, sd


def heldout_curves(run: Run) -> list[Figure]:
    """Per axis (tokens, training seconds): held-out loss of every build, seen and unseen panels; thin
    lines single seeds, thick the mean over seeds with a ±1 sd band."""
    models = _model_curves(run)
    if not models:
        return []
    plt = pyplot()
    figures = []
    for x, label in (("tokens", "training tokens"), ("seconds", "training seconds")):
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), squeeze=False)
        drawn = False
        for ax, kind in zip(axes[0], KINDS):
            for (model, (first, curves)), color in zip(models.items(), colors(len(models))):
                style = "-" if run.is_moe(first) else "--"
                for c in curves:
                    pts = points(c, kind, x)
                    if len(curves) > 1 and pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color, lw=0.7, alpha=0.45)
                xs, mean, sd = _mean_band(curves, kind, x)
                if not xs:
                    continue
                drawn = True
                n = len(curves)
                ax.plot(xs, mean, style, color=color, lw=2.2, marker="o", ms=4,
                        label=model + (f" (mean of {n} seeds ± sd)" if n > 1 else ""))
                if n > 1:
                    ax.fill_between(xs, [m - s for m, s in zip(mean, sd)], [m + s for m, s in zip(mean, sd)],
                                    color=color, alpha=0.15, lw=0)
            if all(p > 0 for _, (_, cs) in models.items() for c in cs for p in (q.get(x) for q in c)
                   if isinstance(p, (int, float))):
                ax.set_xscale("log")
            ax.set_xlabel(label + " (log scale)")
            ax.set_ylabel("held-out loss (nats/token)")
            ax.set_title(f"held-out, {kind} entities")
        if not drawn:
            plt.close(fig)
            continue
        labelled = {}
        for ax in axes[0]:  # one panel may be empty (a curve with only one held-out kind)
            for h, lab in zip(*ax.get_legend_handles_labels()):
                labelled.setdefault(lab, h)
        axes[0][1].legend(list(labelled.values()), list(labelled), loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.suptitle(f"Held-out loss vs {label} (solid: MoE, dashed: dense)")
        fig.tight_layout()
        figures.append(Figure(f"Held-out loss vs {label}", encode(fig)))
    return figures
