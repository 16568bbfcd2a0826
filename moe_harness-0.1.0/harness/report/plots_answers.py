"""Figures of the answers: held-out loss along training (vs tokens, vs seconds) and pair differences
along a sweep, with their intervals and the sign changes marked."""

from __future__ import annotations

import math

from harness.report.curves import KINDS, heldout_curve, points
from harness.report.plots import Figure, _colors, _encode, _plt
from harness.report.run import Run
from harness.report.seeds import is_native, mean_sd, seed_groups
from harness.report.sweeps import Series, sweep_series


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
    plt = _plt()
    figures = []
    for x, label in (("tokens", "training tokens"), ("seconds", "training seconds")):
        fig, axes = plt.subplots(1, 2, figsize=(13, 4.6), squeeze=False)
        drawn = False
        for ax, kind in zip(axes[0], KINDS):
            for (model, (first, curves)), color in zip(models.items(), _colors(len(models))):
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
        figures.append(Figure(f"Held-out loss vs {label}", _encode(fig)))
    return figures


def _numeric(series: Series) -> bool:
    return all(isinstance(p.value, (int, float)) and not isinstance(p.value, bool) for p in series.points)


def sweeps(run: Run, series: list[Series] | None = None) -> list[Figure]:
    """Per (setting, task): each pair's difference (MoE − dense) against the setting, 95% CI as error
    bars, zero line, and a dotted line with a label where the difference changes sign."""
    series = sweep_series(run) if series is None else series
    groups: dict[tuple, list[Series]] = {}
    for s in series:
        groups.setdefault((s.setting, s.fixed, s.task, s.metric), []).append(s)
    if not groups:
        return []
    plt = _plt()
    figures = []
    for (setting, fixed, task, metric), ss in groups.items():
        fig, ax = plt.subplots(figsize=(8.5, 4.5))
        numeric = all(_numeric(s) for s in ss)
        log = numeric and all(p.value > 0 for s in ss for p in s.points) and \
            max(p.value for s in ss for p in s.points) >= 10 * min(p.value for s in ss for p in s.points)
        cats = sorted({str(p.value) for s in ss for p in s.points}) if not numeric else []
        for i, (s, color) in enumerate(zip(ss, _colors(len(ss)))):
            xs = [p.value if numeric else cats.index(str(p.value)) for p in s.points]
            if log:
                xs = [x * (1 + 0.03 * (i - (len(ss) - 1) / 2)) for x in xs]
            ys = [p.mean for p in s.points]
            err = [[y - (p.interval[0] if p.interval else y) for p, y in zip(s.points, ys)],
                   [(p.interval[1] if p.interval else y) - y for p, y in zip(s.points, ys)]]
            ax.errorbar(xs, ys, yerr=err, fmt="o-", color=color, capsize=4, lw=1.8,
                        label=f"{s.moe} − {s.dense} (equal {s.kind})")
            for a, b in s.sign_changes():
                xa, xb, ya, yb = xs[a], xs[b], ys[a], ys[b]
                f = ya / (ya - yb)  # where the line between the two points crosses zero
                mid = math.exp(math.log(xa) + f * (math.log(xb) - math.log(xa))) if log else xa + f * (xb - xa)
                ax.axvline(mid, color=color, ls=":", lw=1.5)
                ax.annotate("sign change", (mid, 0), textcoords="offset points", xytext=(4, 8), fontsize=8,
                            color=color)
        ax.axhline(0.0, color="black", lw=0.8)
        if log:
            ax.set_xscale("log")
        if cats:
            ax.set_xticks(range(len(cats)), cats)
        ax.set_xlabel(setting + (f" ({fixed})" if fixed else ""))
        ax.set_ylabel(f"Δ {metric} (MoE − dense)")
        ax.set_title(f"{task} {metric}: pair difference along {setting} (95% CI)")
        ax.legend(loc="best")
        fig.tight_layout()
        figures.append(Figure(f"Sweep: {task} {metric} difference vs {setting}", _encode(fig)))
    return figures
