"""Tick labels that can be read: every figure passes through :func:`fit_ticks` before it is saved.

- numeric labels follow the report's number rule (:func:`harness.report.numbers.tick`: 3 significant
  digits, scientific beyond 10^6), so a log axis reads ``120,000`` or ``1.2e5``, never mathtext
  ``1.2×10^5`` minor labels side by side;
- a log axis gets major ticks at 1, 2 and 5 times powers of its base (powers alone for base 2) and
  no minor labels; where that leaves fewer than two ticks in view (an axis spanning less than a
  decade), three geometrically spaced ticks rounded to 2 significant digits;
- then, drawn with the figure's own renderer, any axis whose labels still overlap gets fewer ticks
  (linear: fewer bins; log: powers of the base only, then every other one), and text labels (a
  figure's own, ``set_xticks(locs, labels)``, or categories) are rotated, never renumbered, until
  none overlap.

:func:`overlaps` is the check itself (also used by the tests): pairs of tick labels of one Axes
whose rendered bounding boxes intersect.
"""

from __future__ import annotations

import math

from harness.report.numbers import tick

#: rounds of thinning before giving up (each removes roughly half the labels of an axis)
ROUNDS = 6
#: pixels :func:`fit_ticks` keeps between two labels (the check, :func:`overlaps`, asks for none to intersect)
GAP_PX = 6.0


def _in_view(axis, loc: float) -> bool:
    lo, hi = sorted(axis.get_view_interval())
    span = abs(hi - lo) or 1.0
    return lo - 1e-9 * span <= loc <= hi + 1e-9 * span


def _labels(axis, renderer):
    """(text, bbox) of the visible, non-empty tick labels of one axis (major and minor) in view."""
    out = []
    for ticks in (axis.get_major_ticks(), axis.get_minor_ticks()):
        for t in ticks:
            for label in (t.label1, t.label2):
                if label.get_visible() and label.get_text() and _in_view(axis, t.get_loc()):
                    out.append((label.get_text(), label.get_window_extent(renderer)))
    return out


def _intersect(a, b, gap: float = 0.0) -> bool:
    """Do the boxes intersect (by more than half a pixel), or come closer than ``gap`` pixels?"""
    w = min(a.x1, b.x1) - max(a.x0, b.x0) + gap
    h = min(a.y1, b.y1) - max(a.y0, b.y0) + gap
    return w > 0.5 and h > 0.5


def overlaps(fig) -> list[tuple[str, str, str]]:
    """(axes title, label, label) for every two tick labels of one Axes whose boxes intersect."""
    if not hasattr(fig.canvas, "get_renderer"):  # a figure pyplot has closed: give it an Agg canvas again
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    found = []
    for ax in fig.axes:
        labels = _labels(ax.xaxis, renderer) + _labels(ax.yaxis, renderer)
        for i in range(len(labels)):
            for j in range(i + 1, len(labels)):
                if _intersect(labels[i][1], labels[j][1]):
                    found.append((ax.get_title() or ax.get_label(), labels[i][0], labels[j][0]))
    return found


def _axis_overlaps(axis, renderer) -> bool:
    labels = _labels(axis, renderer)
    return any(_intersect(labels[i][1], labels[j][1], GAP_PX)
               for i in range(len(labels)) for j in range(i + 1, len(labels)))


def _log_base(axis) -> float:
    return float(getattr(axis.get_transform(), "base", 10.0))


def _nice_geometric(lo: float, hi: float, n: int = 3) -> list[float]:
    if lo <= 0 or hi <= 0 or lo == hi:
        return [lo, hi]
    out = []
    for i in range(n):  # 2 significant digits, the ends rounded inward so they stay in view
        x = lo * (hi / lo) ** (i / (n - 1))
        step = 10.0 ** (math.floor(math.log10(x)) - 1)
        r = math.ceil(x / step) if i == 0 else math.floor(x / step) if i == n - 1 else round(x / step)
        out.append(float(f"{r * step:.2g}") if r * step < 100 else r * step)
    return sorted({x for x in out if lo <= x <= hi})


def _set_log(axis, subs) -> None:
    from matplotlib.ticker import FixedLocator, LogLocator, NullFormatter

    base = _log_base(axis)
    locator = LogLocator(base=base, subs=subs, numticks=12)
    axis.set_major_locator(locator)
    axis.set_minor_formatter(NullFormatter())
    lo, hi = sorted(axis.get_view_interval())
    if lo > 0 and sum(1 for x in locator.tick_values(lo, hi) if lo <= x <= hi) < 2:
        axis.set_major_locator(FixedLocator(_nice_geometric(lo, hi)))


def _fixed_text(axis) -> bool:
    """Are the axis's labels text the figure chose (``set_xticks(locs, labels)``, categories), which
    the number rule must leave alone? matplotlib >= 3.9 gives such labels a ``FuncFormatter`` over
    its own lookup, older ones a ``FixedFormatter``; categorical axes a ``StrCategoryFormatter``. A
    ``FuncFormatter`` is numeric only when it is the number rule's own."""
    from matplotlib.category import StrCategoryFormatter
    from matplotlib.ticker import FixedFormatter, FuncFormatter

    formatter = axis.get_major_formatter()
    if isinstance(formatter, FuncFormatter):
        return formatter.func is not tick
    return isinstance(formatter, (FixedFormatter, StrCategoryFormatter))


def fit_ticks(fig) -> None:
    """Apply the number rule to every numeric tick label of ``fig`` and thin any axis whose labels overlap."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

    axes = [(ax, axis) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)]
    for _, axis in axes:
        if _fixed_text(axis):
            continue
        if axis.get_scale() == "log":
            _set_log(axis, (1.0,) if _log_base(axis) == 2 else (1.0, 2.0, 5.0))
        if axis.get_scale() in ("log", "linear"):
            axis.set_major_formatter(FuncFormatter(tick))
    for round_ in range(ROUNDS):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        crowded = [(ax, axis) for ax, axis in axes if _axis_overlaps(axis, renderer)]
        if not crowded:
            return
        for ax, axis in crowded:
            if _fixed_text(axis):
                for label in axis.get_majorticklabels():
                    label.set_rotation(30 if round_ == 0 else 90)
                    label.set_horizontalalignment("right" if axis is ax.xaxis and round_ == 0 else "center")
                continue
            locs = [x for x in axis.get_majorticklocs() if _in_view(axis, x)]
            if axis.get_scale() == "log" and round_ == 0 and _log_base(axis) != 2:
                _set_log(axis, (1.0,))
            elif len(locs) > 2:
                if axis.get_scale() == "linear":
                    axis.set_major_locator(MaxNLocator(nbins=max(2, len(locs) // 2), steps=[1, 2, 2.5, 5, 10]))
                else:
                    axis.set_major_locator(FixedLocator(locs[::2]))
            else:
                for label in axis.get_majorticklabels():
                    label.set_rotation(90 if axis is ax.xaxis else 0)
