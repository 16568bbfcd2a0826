"""Sweeps: each pair's difference against the swept setting, and where it changes sign. Pure logic.

A suite's ``sweep: {setting: [values]}`` makes one copy of every model per value; the variant specs
carry ``"sweep": {setting: value}`` and pairs form within one point (:func:`harness.report.seeds.model_pairs`).
A series is one (pair kind, MoE model, dense model, setting, task, metric) across the setting's values;
each point's difference (MoE − dense) has a 95% CI over seeds (t) when the point trained two or more
seeds, else the within-seed paired bootstrap over documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.report.bootstrap import Diff
from harness.report.buckets import task_samples
from harness.report.knowledge import values_groups
from harness.report.pairdiff import PairRow, compare_pair
from harness.report.run import Run
from harness.report.seeds import SWEEP_SUFFIX, ModelPair, model_pairs
from harness.report.verdicts import heldout_tasks


@dataclass
class SweepPoint:
    value: object
    pair: ModelPair
    row: PairRow

    @property
    def mean(self) -> float:
        ci = self.row.seed_ci
        if ci is not None:
            return ci.mean
        return self.row.diff.mean if isinstance(self.row.diff, Diff) else self.row.moe - self.row.dense

    @property
    def interval(self) -> tuple[float, float, str] | None:
        """(lo, hi, source) of the difference, source "seeds" or "bootstrap"; None without one."""
        if self.row.seed_ci is not None:
            return self.row.seed_ci.lo, self.row.seed_ci.hi, "seeds"
        if isinstance(self.row.diff, Diff):
            return self.row.diff.lo, self.row.diff.hi, "bootstrap"
        return None


@dataclass
class Series:
    kind: str
    moe: str       # model names without the sweep point
    dense: str
    setting: str
    task: str
    metric: str
    fixed: str = ""  # the other settings of a grid, held at these values
    points: list[SweepPoint] = field(default_factory=list)

    def sign_changes(self) -> list[tuple[int, int]]:
        """(i, j): consecutive points with a nonzero difference whose signs differ (zeros skipped)."""
        signed = [(i, p.mean > 0) for i, p in enumerate(self.points) if p.mean != 0]
        return [(a, b) for (a, sa), (b, sb) in zip(signed, signed[1:]) if sa != sb]


def _sort_key(value):
    return (0, float(value), "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0.0, str(value))


def sweep_tasks(run: Run) -> list[tuple[str, str]]:
    """(task, metric) plotted along sweeps: held-out bits per byte and tail-bucket knowledge bits,
    else every task's first metric."""
    out = []
    for task in heldout_tasks(run):
        names = run.task_metrics(task)
        if names:
            out.append((task, "bits_per_byte" if "bits_per_byte" in names else names[0]))
    for g in values_groups(run):
        task = g.tasks.get("tail")
        if task and "bits" in run.task_metrics(task):
            out.append((task, "bits"))
    if not out:
        out = [(t, run.task_metrics(t)[0]) for t in run.tasks() if run.task_metrics(t)]
    return out


def sweep_series(run: Run) -> list[Series]:
    series: dict[tuple, Series] = {}
    tasks = sweep_tasks(run)
    for pair in model_pairs(run, native_only=True):
        if not pair.sweep:
            continue
        moe, dense = SWEEP_SUFFIX.sub("", pair.moe), SWEEP_SUFFIX.sub("", pair.dense)
        for setting, value in pair.sweep.items():
            fixed = ", ".join(f"{k}={v}" for k, v in pair.sweep.items() if k != setting)
            for task, metric in tasks:
                cell = lambda v, t=task, m=metric: (run.metrics(v).get(t, {}).get(m), task_samples(run, v, t))  # noqa: E731
                row = compare_pair(pair, task, metric, cell)
                if row is None:
                    continue
                key = (pair.kind, moe, dense, setting, fixed, task, metric)
                s = series.setdefault(key, Series(pair.kind, moe, dense, setting, task, metric, fixed))
                s.points.append(SweepPoint(value, pair, row))
    out = []
    for s in series.values():
        s.points.sort(key=lambda p: _sort_key(p.value))
        out.append(s)
    return out
