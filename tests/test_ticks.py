"""No two tick labels of a figure overlap: every figure of the smoke-shaped and claims-shaped reports,
built from constructed results (tests/data: no models), checked with matplotlib's own renderer."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"


def _smoke_with_untrained_perplexities(tmp_path: Path) -> Path:
    """run_fixture with the word perplexities of random weights (~3e12, as the issue saw): log axes and
    scientific tick labels over many decades."""
    run = tmp_path / "smoke"
    shutil.copytree(DATA / "run_fixture", run)
    lines = []
    for i, line in enumerate((run / "results.jsonl").read_text().splitlines()):
        r = json.loads(line)
        for values in (r.get("metrics") or {}).values():
            if "word_perplexity" in values:
                values["word_perplexity"] *= 3e11 * (1 + 0.1 * i)
        lines.append(json.dumps(r))
    (run / "results.jsonl").write_text("\n".join(lines) + "\n")
    return run


def _figures(run_dir: Path, monkeypatch) -> list:
    from harness.report import figure
    from harness.report.run import Run
    from harness.report.sections import efficiency, longtail, probes, routing, sweeps, training, variants
    from harness.report.sweeps import sweep_series

    seen = []
    monkeypatch.setattr(figure, "FIGURE_HOOK", seen.append)
    run = Run.load(run_dir)
    made = []
    for f in (variants.quality_vs_params, variants.quality_vs_cost, longtail.buckets, routing.expert_load,
              efficiency.heldout_curves, probes.decode_vs_batch, probes.experts_touched, training.loss_curves):
        made += f(run)
    made += sweeps.sweeps(run, sweep_series(run))
    assert len(seen) == len(made)  # every figure passed through encode (and so through fit_ticks)
    return seen


@pytest.mark.parametrize("which", ["smoke", "claims"])
def test_no_two_tick_labels_overlap(which, tmp_path, monkeypatch):
    from harness.report.ticks import _labels, overlaps

    run = _smoke_with_untrained_perplexities(tmp_path) if which == "smoke" else DATA / "answers_fixture"
    figures = _figures(run, monkeypatch)
    assert len(figures) >= (8 if which == "smoke" else 5)
    bad = {f"figure {i} ({fig.axes[0].get_title()})": hits[:3] for i, fig in enumerate(figures)
           if (hits := overlaps(fig))}
    assert not bad, bad
    # and no axis was thinned (or mis-formatted) into showing nothing: every x axis keeps two labels
    renderer = None
    for fig in figures:
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            if ax.get_label() == "<colorbar>":
                continue
            labels = [t for t, _ in _labels(ax.xaxis, renderer)]
            assert len(labels) >= 2, (ax.get_title(), labels)


def test_the_check_sees_overlapping_labels():
    """The check itself: a log axis over less than a decade with matplotlib's default minor labels
    overlaps (the issue's 1.2×10^5 1.4×10^5 ...); after fit_ticks it does not."""
    from harness.report.figure import pyplot
    from harness.report.ticks import fit_ticks, overlaps

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.plot([118_000, 121_000, 163_000, 171_000], [0.5, 0.6, 0.55, 0.7], "o")
    ax.set_xscale("log")
    ax.set_yticks([0.5, 0.501, 0.502])
    assert overlaps(fig)
    fit_ticks(fig)
    assert not overlaps(fig)
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all("\\times" not in t for t in labels)
    plt.close(fig)
