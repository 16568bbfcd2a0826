"""Sweeps: each pair's difference along the swept setting, with its intervals and the sign changes marked."""

from __future__ import annotations

import math

from harness.report import answers as A
from harness.report.figure import Figure, colors, encode, pyplot
from harness.report.run import Run
from harness.report.section import Context, Section
from harness.report.sweeps import Series, sweep_series


def sweeps_section(ctx: Context) -> Section:
    return Section("sweeps", "Sweeps",
                   "Each pair's difference against the swept setting, with its 95% CI, and where it changes sign.",
                   [A.sweep_table(ctx.run, ctx.series)], sweeps(ctx.run, ctx.series) if ctx.with_figures else [],
                   "No variant carries a sweep point: no sweep in this run.")


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
    plt = pyplot()
    figures = []
    for (setting, fixed, task, metric), ss in groups.items():
        fig, ax = plt.subplots(figsize=(8.5, 4.5))
        numeric = all(_numeric(s) for s in ss)
        log = numeric and all(p.value > 0 for s in ss for p in s.points) and \
            max(p.value for s in ss for p in s.points) >= 10 * min(p.value for s in ss for p in s.points)
        cats = sorted({str(p.value) for s in ss for p in s.points}) if not numeric else []
        for i, (s, color) in enumerate(zip(ss, colors(len(ss)))):
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
        figures.append(Figure(f"Sweep: {task} {metric} difference vs {setting}", encode(fig)))
    return figures
