"""Long-tail (entity popularity) buckets: where a run's per-bucket results are, in any of three forms.

- ``tasks``:   one lm-eval task per bucket, named ``<group>_head``, ``<group>_torso``, ``<group>_tail``
               (the knowledge corpus's tasks; the group's own row, if any, is the task ``<group>``);
- ``metrics``: one task whose metrics include ``<metric>_head``, ``<metric>_torso``, ...;
- ``samples``: one task whose per-document samples carry a ``bucket`` tag.

Each form gives, per variant and bucket, a value and the per-document samples behind it, so the
same pair and seed code serves all three.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.report.run import Run, is_stderr, metric_names
from moe_schema.knowledge import BUCKETS  # the corpus's popularity buckets: one place

ALL = "all"


def is_bucket_metric(metric: str) -> bool:
    return any(metric.endswith("_" + b) for b in BUCKETS)


def main_metrics(run: Run, task: str) -> list[str]:
    """The task's metrics without the per-bucket ones (those get their own section)."""
    return [m for m in run.task_metrics(task) if not is_bucket_metric(m)]


def primary_metric(run: Run, task: str) -> str | None:
    names = main_metrics(run, task)
    return names[0] if names else None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass
class BucketGroup:
    name: str                 # the group (tasks form) or the task (other forms)
    form: str                 # "tasks" | "metrics" | "samples"
    tasks: dict[str, str] = field(default_factory=dict)  # bucket -> task holding it


def bucket_groups(run: Run) -> list[BucketGroup]:
    """Every bucketed result set of the run, tasks form first."""
    tasks = run.tasks()
    members: dict[str, dict[str, str]] = {}
    for t in tasks:
        for b in BUCKETS:
            if t.endswith("_" + b):
                members.setdefault(t[: -len(b) - 1], {})[b] = t
    groups = [BucketGroup(g, "tasks", {b: m[b] for b in BUCKETS if b in m}) for g, m in members.items() if len(m) >= 2]
    taken = {g.name for g in groups} | {t for g in groups for t in g.tasks.values()}
    for t in tasks:
        if t in taken:
            continue
        if any(is_bucket_metric(m) for v in run.variants for m in run.metrics(v).get(t, {}) if not is_stderr(m)):
            groups.append(BucketGroup(t, "metrics", {b: t for b in BUCKETS}))
        elif any("bucket" in s for v in run.variants for s in run.samples(v).get(t, [])[:1]):
            groups.append(BucketGroup(t, "samples", {b: t for b in BUCKETS}))
    return groups


def member_tasks(run: Run) -> set[str]:
    """The per-bucket tasks of tasks-form groups (shown in the long-tail section, not the main tables)."""
    return {t for g in bucket_groups(run) if g.form == "tasks" for t in g.tasks.values()}


def group_metrics(run: Run, group: BucketGroup) -> list[str]:
    """The metric names reported per bucket, preferred first."""
    merged: dict = {}
    for v in run.variants:
        for task in dict.fromkeys(group.tasks.values()):
            merged.update({k: x for k, x in run.metrics(v).get(task, {}).items() if k not in merged})
    if group.form == "tasks":
        return metric_names(merged)
    if group.form == "metrics":
        bases = {m.rsplit("_", 1)[0]: 1.0 for m in merged if is_bucket_metric(m) and not is_stderr(m)}
        return metric_names(bases)
    return [m for m in metric_names(merged) if not is_bucket_metric(m)][:1]


def bucket_cell(run: Run, variant: str, group: BucketGroup, bucket: str, metric: str) -> tuple[float | None, list]:
    """(value, per-document samples) of one variant in one bucket (or ``ALL``) of a group."""
    metrics, samples = run.metrics(variant), run.samples(variant)
    if bucket == ALL:
        return group_value(run, variant, group, metric), group_samples(run, variant, group)
    task = group.tasks.get(bucket)
    if task is None:
        return None, []
    if group.form == "tasks":
        return metrics.get(task, {}).get(metric), samples.get(task, [])
    rows = [s for s in samples.get(task, []) if s.get("bucket") == bucket]
    if group.form == "metrics":
        return metrics.get(task, {}).get(f"{metric}_{bucket}"), rows
    vals = [float(s[metric]) for s in rows if _number(s.get(metric))]
    return (sum(vals) / len(vals) if vals else None), rows


def group_samples(run: Run, variant: str, group: BucketGroup) -> list:
    """All the group's documents; tasks-form doc ids become (bucket, doc_id) so they stay unique."""
    samples = run.samples(variant)
    if group.form != "tasks":
        return samples.get(group.name, [])
    return [{**s, "doc_id": (b, s["doc_id"])} for b, t in group.tasks.items() for s in samples.get(t, []) if "doc_id" in s]


def group_value(run: Run, variant: str, group: BucketGroup, metric: str) -> float | None:
    """The group's overall value: lm-eval's group row where there is one, else the mean over documents."""
    value = run.metrics(variant).get(group.name, {}).get(metric)
    if _number(value):
        return value
    vals = [float(s[metric]) for s in group_samples(run, variant, group) if _number(s.get(metric))]
    return sum(vals) / len(vals) if vals else None


def task_samples(run: Run, variant: str, task: str) -> list:
    """A task's samples; for a bucket group's own row (no samples of its own) its members' samples."""
    rows = run.samples(variant).get(task)
    if rows:
        return rows
    for g in bucket_groups(run):
        if g.form == "tasks" and g.name == task:
            return group_samples(run, variant, g)
    return []


def bucket_values(run: Run, variant: str, group: BucketGroup, metric: str) -> dict[str, float]:
    """{bucket: value} for the buckets this variant has."""
    out = {}
    for b in BUCKETS:
        value, _ = bucket_cell(run, variant, group, b, metric)
        if _number(value):
            out[b] = float(value)
    return out
