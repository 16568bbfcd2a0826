"""The report's plotting primitives (matplotlib, Agg, imported at first use): ``pyplot()``, ``encode()``
(a figure as base64 PNG, its ticks fitted first), ``colors()``, the MoE / dense colours, ``Figure`` and
the Pareto front. Each section's figures are drawn in its own module, ``harness.report.sections.<subject>``.

Every figure function takes a loaded Run and returns a list of ``Figure(title, png_base64)``, empty when
the run holds nothing to draw, so the caller can say so in one line.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass

from harness.report.ticks import fit_ticks

MOE_COLOR, DENSE_COLOR = "#d95f02", "#1b9e77"


@dataclass
class Figure:
    title: str
    png_base64: str


def pyplot():
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


def encode(fig) -> str:
    plt = pyplot()
    fit_ticks(fig)
    if FIGURE_HOOK is not None:
        FIGURE_HOOK(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def colors(n: int):
    plt = pyplot()
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


def scatter_front(ax, points, higher: bool):
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
