"""Knowledge capacity: bits stored per parameter against the corpus's ceiling and the paper's law
(``harness.report.capacity``), and its log-log figure."""

from __future__ import annotations

from harness.report import capacity as C
from harness.report.capacity import points
from harness.report.figure import Figure, encode, pyplot
from harness.report.run import Run
from harness.report.section import Context, Section


def capacity_section(ctx: Context) -> Section:
    return Section("capacity", "Knowledge capacity",
                   "Bits each build stores about a bios population (Allen-Zhu & Li's measure, every person scored), "
                   "per parameter counted with one embedding table (R), beside the most the corpus lets it show "
                   "(R_max) and what the paper's law predicts for it (min(R_max, peak)); each MoE against the best "
                   "dense R at its exposure count, and its equal-total twin.",
                   [C.capacity_table(ctx.run), C.moe_factor_table(ctx.run)], ctx.fig(bits_vs_params),
                   "No train result carries a capacity scoring in this run.")


def bits_vs_params(run: Run) -> list[Figure]:
    """Bits stored against parameters (P, the paper's count; and without embeddings), log-log, with
    the 1 and 2 bits/param lines and, per build, the most its corpus holds (R_max x P) and the paper's
    expectation (expected R x P)."""
    pts = [p for p in points(run) if p.stored["bits"] > 0]
    if not pts:
        return []
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    exposures = sorted({round(p.exposures) for p in pts if p.exposures})
    colors = {e: c for e, c in zip(exposures, ("tab:blue", "tab:orange", "tab:green", "tab:red"))}
    for ax, key, label in ((axes[0], "p", "P, one embedding table"),
                           (axes[1], "no_embed", "parameters without embeddings")):
        xs = [getattr(p, key) for p in pts if getattr(p, key)]
        if not xs:
            continue
        for p in pts:
            x = getattr(p, key)
            if not x:
                continue
            color = colors.get(round(p.exposures or 0), "gray")
            ax.scatter([x], [p.stored["bits"]], marker="s" if p.moe else "o", color=color)
            ax.scatter([x], [p.stored["max_bits"]], marker="_", s=200, color=color)
            e = p.expected
            if e is not None:
                ax.scatter([x], [e["expected"] * p.p], marker="x", color=color)
        lo, hi = min(xs) / 1.5, max(xs) * 1.5
        for slope, style in ((2, "-"), (1, "--")):
            ax.plot([lo, hi], [slope * lo, slope * hi], style, color="black", lw=1, label=f"{slope} bit/param")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label + " (log)")
        ax.set_ylabel("bits stored (log)")
    for e, c in colors.items():
        axes[0].scatter([], [], color=c, label=f"{e} exposures")
    axes[0].scatter([], [], marker="s", color="gray", label="MoE")
    axes[0].scatter([], [], marker="o", color="gray", label="dense")
    axes[0].scatter([], [], marker="_", s=200, color="gray", label="most the corpus holds (R_max x P)")
    axes[0].scatter([], [], marker="x", color="gray", label="paper expects (min(R_max, peak) x P)")
    axes[0].legend(loc="best", fontsize="small")
    fig.suptitle("Bits stored vs parameters (Allen-Zhu & Li's bound): measured, the corpus's most, the paper's "
                 "expectation")
    fig.tight_layout()
    return [Figure("Bits stored vs parameters, log-log, with 2 and 1 bit/param, R_max and the paper's expectation",
                   encode(fig))]
