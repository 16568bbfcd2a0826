"""MoE model − dense twin differences, seed by seed, with a paired bootstrap CI and the seed spread.

A difference is marked real where the 95% CI excludes zero and, when the run trained several
seeds, its size also exceeds the seed spread (the larger of the two models' standard deviations
over seeds): a gap smaller than the seed-to-seed wobble is not evidence.

With several seeds each row also carries the per-seed differences (MoE − twin, same seed) and their
t-interval over seeds (:func:`harness.report.stats.t_interval`): the bootstrap says how much the
evaluation documents move the answer, the t-interval how much training does.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from harness.report.bootstrap import Diff, seeded_paired_diff
from harness.report.buckets import main_metrics, member_tasks, task_samples
from harness.report.run import Run
from harness.report.seeds import ModelPair, mean_sd, model_pairs
from harness.report.stats import SeedCI, t_interval

#: cell(variant) -> (value, per-document samples)
Cell = Callable[[str], tuple]


class PairRow(NamedTuple):
    pair: ModelPair
    task: str
    metric: str
    moe: float            # mean over seeds
    dense: float
    diff: Diff | str      # the bootstrap interval, or why there is none
    spread: float | None  # seed spread (None: one seed)
    n_seeds: int
    per_seed: tuple = ()          # MoE − twin of each seed that has both values, in pair.seeds order
    seed_ci: SeedCI | None = None  # t-interval over per_seed (None: fewer than two seeds)
    seed_variants: tuple = ()     # the MoE variant behind each per_seed entry

    @property
    def real(self) -> bool:
        if not isinstance(self.diff, Diff) or not self.diff.significant:
            return False
        return self.spread is None or abs(self.diff.mean) > self.spread


def no_ci_reason(samples_a: list, samples_b: list, metric: str) -> str:
    """Why a metric has no paired interval: no samples, or values that are not per-document numbers."""
    values = [s.get(metric) for s in samples_a[:1] + samples_b[:1] if metric in s]
    if not samples_a or not samples_b:
        return "no per-document samples"
    if values and not all(isinstance(v, (int, float, list)) for v in values):
        return "corpus-level metric: no per-document value"
    return "no shared documents"


def compare_pair(pair: ModelPair, task: str, metric: str, cell: Cell, seed: int = 0) -> PairRow | None:
    """One row: the seeds where both sides have a value; None where there is none."""
    a_vals, b_vals, sa, sb, used = [], [], [], [], []
    for moe_v, dense_v in pair.seeds:
        (a, a_s), (b, b_s) = cell(moe_v), cell(dense_v)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            a_vals.append(float(a)), b_vals.append(float(b)), sa.append(a_s), sb.append(b_s), used.append(moe_v)
    if not a_vals:
        return None
    diff = seeded_paired_diff(sa, sb, metric, seed=seed)  # None where a seed has no samples
    if diff is None:
        diff = no_ci_reason(sa[0], sb[0], metric)
    sd_a, sd_b = mean_sd(a_vals)[1], mean_sd(b_vals)[1]
    spread = None if sd_a is None else max(sd_a, sd_b)  # one seed: no spread (sd_b is None too)
    per_seed = tuple(a - b for a, b in zip(a_vals, b_vals))
    return PairRow(pair, task, metric, mean_sd(a_vals)[0], mean_sd(b_vals)[0], diff, spread, len(a_vals),
                   per_seed, t_interval(per_seed), tuple(used))


def pair_diffs(run: Run, kind: str, seed: int = 0) -> list[PairRow]:
    """Every task metric of every ``kind`` pair ("active" / "total"), except the per-bucket tasks."""
    hidden = member_tasks(run)
    out = []
    for pair in model_pairs(run):
        if pair.kind != kind:
            continue
        for task in run.tasks():
            if task in hidden:
                continue
            for metric in main_metrics(run, task):
                cell = lambda v: (run.metrics(v).get(task, {}).get(metric), task_samples(run, v, task))  # noqa: E731
                row = compare_pair(pair, task, metric, cell, seed=seed)
                if row is not None:
                    out.append(row)
    return out
