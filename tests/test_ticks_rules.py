"""How a plot's axes are labelled (harness.report.ticks), on small figures drawn with matplotlib's own
renderer: numbers under the number rule, 1-2-5 ticks on a log axis, three readable ticks on an axis
spanning less than a decade, a figure's own text labels kept (rotated, never renumbered), and
crowded axes thinned until no two labels overlap."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from harness.report import ticks  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(axis) -> list[str]:
    axis.figure.canvas.draw()
    lo, hi = sorted(axis.get_view_interval())
    return [t.label1.get_text() for t in axis.get_major_ticks() if lo - 1e-9 <= t.get_loc() <= hi + 1e-9]


def _locs(axis) -> list[float]:
    lo, hi = sorted(axis.get_view_interval())
    return [float(x) for x in axis.get_majorticklocs() if lo * (1 - 1e-9) <= x <= hi * (1 + 1e-9)]


# ---------------------------------------------------------------- pure pieces

@pytest.mark.parametrize("lo, hi, n, want", [
    (2, 7, 3, [2.0, 3.7, 7.0]), (150, 900, 3, [150.0, 370.0, 900.0]), (2.05, 7.9, 3, [2.1, 4.0, 7.9]),
    (1.2e-3, 3.3e-3, 3, [0.0012, 0.002, 0.0033]), (2, 7, 4, [2.0, 3.0, 4.6, 7.0]), (0, 5, 3, [0, 5]),
    (-1, 5, 3, [-1, 5]), (3, 3, 3, [3, 3]), (3, -2, 3, [3, -2])])
def test_three_geometric_ticks_rounded_to_two_digits_inside_the_view(lo, hi, n, want):
    """The ends round inward (2.05 -> 2.1, not 2.0 which is out of view), the middle to nearest; an
    axis not strictly positive, or of no width, keeps its ends."""
    got = ticks._nice_geometric(lo, hi, n) if n != 3 else ticks._nice_geometric(lo, hi)
    assert got == pytest.approx(want)
    assert all(lo <= x <= hi for x in got) or lo <= 0 or lo >= hi


def test_geometric_ticks_are_the_printed_numbers_exactly_and_the_last_rounds_down_into_view():
    """5.9, not 5.9000000000000004 (the label and the tick's place agree); to 9.96 the last tick is 9.9,
    rounded down into the view, not 10 (outside it); an upper end at 0 keeps the ends."""
    assert ticks._nice_geometric(5, 7) == [5.0, 5.9, 7.0]
    assert ticks._nice_geometric(1, 9.96) == [1.0, 3.2, 9.9]
    assert ticks._nice_geometric(5, 0) == [5, 0]


def test_boxes_intersect_by_more_than_half_a_pixel_or_within_the_gap():
    a = Bbox.from_extents(0, 0, 10, 10)
    assert ticks._intersect(a, Bbox.from_extents(9, 0, 20, 10))  # 1 px of overlap
    assert not ticks._intersect(a, Bbox.from_extents(9.5, 0, 20, 10))  # half a pixel: touching
    assert not ticks._intersect(a, Bbox.from_extents(9, 9.5, 20, 20))  # overlapping in x, touching in y
    assert ticks._intersect(a, Bbox.from_extents(5, 9, 20, 20))  # 1 px of overlap in y (5 in x)
    assert not ticks._intersect(a, Bbox.from_extents(14, 0, 20, 10), gap=4.0)  # 4 px apart, 4 px gap
    assert ticks._intersect(a, Bbox.from_extents(13, 0, 20, 10), gap=4.0)  # 3 px apart within a 4 px gap
    assert ticks._intersect(a, Bbox.from_extents(13, 0, 20, 10), gap=ticks.GAP_PX)


def test_a_tick_is_in_view_within_a_billionth_of_the_span():
    fig, ax = plt.subplots()
    ax.set_xlim(0, 10)
    assert ticks._in_view(ax.xaxis, 0) and ticks._in_view(ax.xaxis, 10) and ticks._in_view(ax.xaxis, 10 + 5e-9)
    assert ticks._in_view(ax.xaxis, -5e-9)  # the same tolerance below the view as above it
    assert not ticks._in_view(ax.xaxis, 10 + 2e-8) and not ticks._in_view(ax.xaxis, -2e-8)
    assert ticks._in_view(ax.xaxis, -1e-9 * 10) and ticks._in_view(ax.xaxis, 10 + 1e-9 * 10)  # the edges are in
    ax.set_xlim(5, 10)  # the tolerance is a billionth of the span (5), not of the far end
    assert ticks._in_view(ax.xaxis, 10 + 4e-9) and not ticks._in_view(ax.xaxis, 10 + 1e-8)
    ax.set_xlim(10, 0)  # inverted
    assert ticks._in_view(ax.xaxis, 3) and not ticks._in_view(ax.xaxis, 11)


# ---------------------------------------------------------------- log axes

def test_a_log_axis_over_many_decades_reads_plainly_and_without_overlap():
    """1 to 10^6 on a small axis: powers of ten, every other one, labelled 1, 100, 10,000, 1e6."""
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([1, 1e6], [1, 2])
    ax.set_xscale("log")
    ticks.fit_ticks(fig)
    assert _texts(ax.xaxis) == ["1", "100", "10,000", "1e6"]
    assert ticks.overlaps(fig) == []


def test_a_wide_log_axis_gets_1_2_5_ticks():
    """1 to 1000 on a wide axis: 1, 2, 5, 10, 20, 50, ... with room for all of them, no minor labels."""
    fig, ax = plt.subplots(figsize=(12, 3))
    ax.plot([1, 1000], [1, 2])
    ax.set_xscale("log")
    ticks.fit_ticks(fig)
    assert _locs(ax.xaxis) == pytest.approx([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000])
    assert _texts(ax.xaxis)[:4] == ["1", "2", "5", "10"]
    assert all(not t.label1.get_text() for t in ax.xaxis.get_minor_ticks())


def test_a_base_2_log_axis_gets_powers_of_two_only():
    fig, ax = plt.subplots(figsize=(12, 3))
    ax.plot([1, 64], [1, 2])
    ax.set_xscale("log", base=2)
    ticks.fit_ticks(fig)
    assert _locs(ax.xaxis) == pytest.approx([1, 2, 4, 8, 16, 32, 64])
    assert _texts(ax.xaxis) == ["1", "2", "4", "8", "16", "32", "64"]


@pytest.mark.parametrize("lo, hi, want", [(5, 7, [5, 5.9, 7]), (33, 60, [33, 44, 60]), (3, 7, [3, 4.6, 7]), (2, 9, [2, 4, 8]), (2, 5, [2, 4]), (2, 4, [2, 4]), (0.5, 0.7, [0.5, 0.59, 0.7])])
def test_a_log_axis_with_fewer_than_two_powers_in_view_gets_three_readable_ticks(lo, hi, want):
    """Base 2 from 5 to 7 holds no power of two: three geometric ticks (5, 5.9, 7) instead of none;
    3 to 7 holds only one (4): geometric too; 2 to 5 holds two (2, 4) and 2 to 9 three: kept."""
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([lo, hi], [1, 2])
    ax.set_xscale("log", base=2)
    ax.set_xlim(lo, hi)
    ticks.fit_ticks(fig)
    assert _locs(ax.xaxis) == pytest.approx(want)


def test_a_narrow_base_10_axis_has_at_least_two_plain_labels():
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([2.05, 4.5], [1, 2])
    ax.set_xscale("log")
    ax.set_xlim(2.05, 4.5)
    ticks.fit_ticks(fig)
    texts = _texts(ax.xaxis)
    assert len(texts) >= 2 and not any("$" in t or "times" in t for t in texts)


# ---------------------------------------------------------------- text labels and crowding

def test_a_figures_own_text_labels_are_kept_not_renumbered():
    """``set_xticks(locs, labels)`` (the buckets plot's head / mid / tail) keeps its words; the numeric
    y axis beside it is under the number rule."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(range(3), [1000, 2000, 3000])
    ax.set_xticks(range(3), ["head\n(frequent)", "mid", "tail"])
    ticks.fit_ticks(fig)
    assert _texts(ax.xaxis) == ["head\n(frequent)", "mid", "tail"]
    assert "1,000" in _texts(ax.yaxis) and "3,000" in _texts(ax.yaxis)


def test_crowded_category_labels_are_rotated_not_dropped():
    """Eight long variant names under a narrow plot: all eight stay, rotated until none overlap
    (30 degrees right-aligned first, then upright). Matplotlib's default style, so the label widths
    do not depend on which report figure an earlier test drew (figure.pyplot() sets a larger font)."""
    with plt.style.context("default"):
        _crowded_category_labels()


def _crowded_category_labels():
    names = [f"variant-number-{i}" for i in range(8)]
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.bar(names, range(8))
    assert ticks.overlaps(fig) != []  # crowded before
    ticks.fit_ticks(fig)
    assert _texts(ax.xaxis) == names
    assert {label.get_rotation() for label in ax.get_xticklabels()} == {90.0}
    assert ticks.overlaps(fig) == []
    fig2, ax2 = plt.subplots(figsize=(8, 2))  # crowded flat, room at 30 degrees
    ax2.bar([f"a-rather-long-variant-name-{i}" for i in range(3)], range(3))
    ticks.fit_ticks(fig2)
    labels = ax2.get_xticklabels()
    assert {label.get_rotation() for label in labels} == {30.0} and labels[0].get_horizontalalignment() == "right"
    assert ticks.overlaps(fig2) == []


def test_a_crowded_linear_axis_gets_fewer_ticks_until_none_overlap():
    """Values to 1.2e8 on a narrow axis: fewer, scientific labels (1e8), none overlapping."""
    fig, ax = plt.subplots(figsize=(1.2, 3))
    ax.plot([0, 123456789], [0, 1])
    ticks.fit_ticks(fig)
    assert ticks.overlaps(fig) == []
    texts = _texts(ax.xaxis)
    assert 2 <= len(texts) <= 4 and "1e8" in texts


def test_thirteen_crowded_linear_ticks_are_thinned_to_round_steps():
    """Ticks every 10 from 0 to 120 on a 2-inch axis overlap: half as many bins on 1-2-2.5-5-10 steps
    leave 0, 50, 100 in view, none overlapping."""
    import numpy as np
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 123.4], [0, 1])
    ax.set_xticks(np.linspace(0, 120, 13))
    assert ticks.overlaps(fig) != []
    ticks.fit_ticks(fig)
    assert [t for t in _locs(ax.xaxis) if 0 <= t <= 123.4] == [0, 50, 100] and ticks.overlaps(fig) == []


def test_crowded_y_labels_on_a_two_tick_axis_are_laid_flat():
    """With only two ticks left to thin, a crowded y axis keeps them and lays its labels horizontal."""
    fig, ax = plt.subplots(figsize=(3, 0.35))
    ax.plot([0, 1], [1000000.5, 1000001.5])
    ax.set_yticks([1000000.5, 1000001.5])
    ticks.fit_ticks(fig)
    assert len(_locs(ax.yaxis)) == 2


def test_crowded_x_labels_on_a_two_tick_axis_stand_upright_and_y_labels_lie_flat():
    """Two ticks left to thin: x labels turn to 90 degrees, y labels to 0, and none overlap."""
    fig, ax = plt.subplots(figsize=(0.3, 3))
    ax.plot([1000000.5, 1000001.5], [0, 1])
    assert ticks.overlaps(fig) != []  # crowded before
    ax.set_xticks([1000000.5, 1000001.5])
    ticks.fit_ticks(fig)
    assert len(_locs(ax.xaxis)) == 2 and {label.get_rotation() for label in ax.get_xticklabels()} == {90.0}
    assert ticks.overlaps(fig) == []
    fig, ax = plt.subplots(figsize=(3, 0.35))
    ax.plot([0, 1], [1000000.5, 1000001.5])
    ax.set_yticks([1000000.5, 1000001.5])
    for label in ax.get_yticklabels():
        label.set_rotation(45)
    ticks.fit_ticks(fig)
    assert {label.get_rotation() for label in ax.get_yticklabels()} == {0.0}


def test_the_check_finds_two_labels_on_top_of_each_other_and_names_the_axes():
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.set_title("quality")
    ax.set_xticks([0, 0.001], ["a long label", "another long one"])
    found = ticks.overlaps(fig)
    assert found == [("quality", "a long label", "another long one")]
    plt.close(fig)
    assert ticks.overlaps(fig) == found  # a closed figure is drawn again on its own canvas
