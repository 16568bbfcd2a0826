"""lm-eval tasks asking for the knowledge corpus's facts, one task per popularity bucket.

For ``eval_per_bucket`` entities of each bucket and every attribute, a 4-way multiple choice: the
prompt is the first template's text before the value ("Ada Kalomir was born in"), the choices the
true value and three distractors from the same attribute's value set. Written as local task YAMLs
(``longtail_head``, ``longtail_torso``, ``longtail_tail`` in the group ``longtail``) with jsonl data
using absolute paths, so ``TaskManager(include_path=<dir>)`` loads them from anywhere. Each row
also carries ``bucket``, ``attribute``, ``entity`` and ``exposures`` for per-attribute analysis.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from moe_schema.knowledge import ATTRIBUTES, BUCKETS, GROUP

_SUBTASK = """\
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{prompt}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

_GROUP = """\
group: {group}
task:
{tasks}
aggregate_metric_list:
  - metric: acc
    aggregation: mean
    weight_by_size: true
metadata:
  version: 1.0
"""


def bucket_ranges(n: int, buckets: dict) -> dict[str, tuple[int, int]]:
    """Popularity ranks ``[start, stop)`` of each bucket: head first, tail the rest."""
    head = max(1, int(round(buckets["head"] * n)))
    torso = min(n - 1, head + max(1, int(round(buckets["torso"] * n))))
    return {"head": (0, head), "torso": (head, torso), "tail": (torso, n)}


def questions(entities: dict, exposures: np.ndarray, spec: dict) -> dict[str, list[dict]]:
    """The multiple-choice rows of each bucket."""
    rng = np.random.default_rng([spec["seed"], 4])
    out = {}
    for bucket, (start, stop) in bucket_ranges(spec["entities"], spec["buckets"]).items():
        count = min(spec["eval_per_bucket"], stop - start)
        chosen = np.sort(rng.choice(np.arange(start, stop), size=count, replace=False))
        rows = []
        for e in chosen.tolist():
            for attribute in spec["attributes"]:
                value_set, templates = ATTRIBUTES[attribute]
                true = int(entities["values"][attribute][e])
                others = rng.choice(len(value_set) - 1, size=3, replace=False)
                others = [int(o) + (o >= true) for o in others]  # skip the true value
                label = int(rng.integers(4))
                picks = others[:label] + [true] + others[label:]
                prompt = templates[0].split("{v}")[0].format(name=entities["names"][e]).rstrip()
                rows.append({"prompt": prompt, "choices": [value_set[i] for i in picks], "label": label,
                             "bucket": bucket, "attribute": attribute, "entity": e,
                             "exposures": int(exposures[e])})
        out[bucket] = rows
    return out


def write_tasks(directory: Path, rows: dict[str, list[dict]]) -> dict[str, str]:
    """Write the task YAMLs and data into ``directory``; return ``{task or group name: yaml path}``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for bucket, bucket_rows in rows.items():
        task = f"{GROUP}_{bucket}"
        data = directory / f"{task}.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in bucket_rows))
        path = directory / f"{task}.yaml"
        path.write_text(_SUBTASK.format(task=task, data=json.dumps(str(data.resolve()))))
        paths[task] = str(path.resolve())
    group = directory / f"{GROUP}.yaml"
    group.write_text(_GROUP.format(group=GROUP, tasks="".join(f"  - {GROUP}_{b}\n" for b in rows)))
    paths[GROUP] = str(group.resolve())
    return paths
