"""lm-eval tasks on the knowledge corpus, written as local task YAMLs with jsonl data (absolute
paths, so ``TaskManager(include_path=<dir>)`` loads them from anywhere). Three kinds:

- ``longtail_<bucket>`` (group ``longtail``): for ``eval_per_bucket`` entities of each popularity
  bucket and every attribute, a 4-way multiple choice. The prompt is the first template's text
  before the value ("Ada Kalomir was born in"); the choices are the true value and three distractors
  from the same attribute's value set.
- ``longtail_values_<bucket>`` (group ``longtail_values``): the same questions asked over ALL values
  of the attribute, so chance is 1/V, not 1/4 (4-way accuracy hides how little a small model
  knows). Per document: ``acc`` and ``bits``, the knowledge the model holds of that fact after Allen-Zhu
  & Li (arXiv 2404.05405): ``log2 V`` minus the cross-entropy in bits of the true value under the
  model's distribution normalised over the V values, floored at 0 (``values_utils.py``).
- ``longtail_heldout_seen`` / ``longtail_heldout_unseen`` (group ``longtail_heldout``): rolling
  log-likelihood (``bits_per_byte``) of biographies that are not in the training text: fresh ones
  of trained entities (knowledge plus language), and ones of entities never mentioned (language
  alone). Their gap is what knowing the facts is worth in loss.

Each row also carries ``bucket``, ``attribute``, ``entity`` and ``exposures`` for per-attribute
analysis; every YAML's ``metadata.regime`` holds the corpus's regime (entities, exposures per bucket,
value counts, chance, fact bits) so a result says what it was measured in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from moe_schema.knowledge import ATTRIBUTES, BUCKETS, GROUP, HELDOUT, TASK_NAMES  # noqa: F401
from workers.corpora.knowledge import render, unseen_entities

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

_VALUES = """\
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
process_results: !function values_utils.process_results
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: bits
    aggregation: mean
    higher_is_better: true
"""

_HELDOUT = """\
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: loglikelihood_rolling
test_split: test
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: bits_per_byte
    aggregation: bits_per_byte
    higher_is_better: false
  - metric: byte_perplexity
    aggregation: weighted_perplexity
    higher_is_better: false
"""

_VALUES_UTILS = '''"""Per-document metrics of the exact knowledge tasks (written by workers.corpora.tasks)."""

import math


def process_results(doc, results):
    """acc over all V values, and bits = max(0, log2 V + log2 p(true)), p normalised over the V values."""
    lls = [r[0] for r in results]
    top = max(lls)
    log_z = top + math.log(sum(math.exp(x - top) for x in lls))
    label = doc["label"]
    bits = math.log2(len(lls)) + (lls[label] - log_z) / math.log(2)
    return {"acc": float(max(range(len(lls)), key=lls.__getitem__) == label), "bits": max(0.0, bits)}
'''


def _metadata(regime: dict) -> str:
    return "metadata:\n  version: 1.0\n  regime: " + json.dumps(regime, sort_keys=True) + "\n"


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


def value_questions(entities: dict, rows: dict[str, list[dict]], spec: dict) -> dict[str, list[dict]]:
    """The 4-way questions' entities and attributes asked over every value of the attribute."""
    out = {}
    for bucket, bucket_rows in rows.items():
        out[bucket] = []
        for r in bucket_rows:
            value_set = ATTRIBUTES[r["attribute"]][0]
            out[bucket].append({**r, "choices": list(value_set),
                                "label": int(entities["values"][r["attribute"]][r["entity"]])})
    return out


def heldout_documents(entities: dict, exposures: np.ndarray, spec: dict) -> dict[str, list[dict]]:
    """Biographies outside the training text: ``seen`` of ``heldout_docs`` trained entities drawn
    uniformly (every popularity, freshly rendered), ``unseen`` of as many never-mentioned entities."""
    n, count, attributes = spec["entities"], spec["heldout_docs"], spec["attributes"]
    rng = np.random.default_rng([spec["seed"], 6])
    seen_ids = np.sort(rng.choice(n, size=min(count, n), replace=False))
    ranks = bucket_ranges(n, spec["buckets"])
    bucket_of = {e: b for b, (lo, hi) in ranks.items() for e in range(lo, hi)}
    seen = [{"text": t, "entity": int(e), "bucket": bucket_of[int(e)], "exposures": int(exposures[e])}
            for e, t in zip(seen_ids.tolist(), render(entities, seen_ids, attributes, rng))]
    fresh = unseen_entities(n, count, attributes, spec["seed"])
    unseen = [{"text": t, "entity": None, "bucket": None, "exposures": 0}
              for t in render(fresh, np.arange(count), attributes, rng)]
    return {"seen": seen, "unseen": unseen}


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _group(directory: Path, group: str, members: list[str], metric: str, regime: dict, paths: dict) -> None:
    agg = ("aggregate_metric_list:\n  - metric: " + metric + "\n    aggregation: mean\n"
           "    weight_by_size: true\n")
    text = f"group: {group}\ntask:\n" + "".join(f"  - {m}\n" for m in members) + agg + _metadata(regime)
    path = directory / f"{group}.yaml"
    path.write_text(text)
    paths[group] = str(path.resolve())


def write_tasks(directory: Path, rows: dict[str, list[dict]], values: dict[str, list[dict]] | None = None,
                heldout: dict[str, list[dict]] | None = None, regime: dict | None = None) -> dict[str, str]:
    """Write the task YAMLs and data into ``directory``; return ``{task or group name: yaml path}``."""
    directory.mkdir(parents=True, exist_ok=True)
    regime = regime or {}
    paths = {}

    def task(name: str, template: str, data_rows: list[dict]) -> None:
        data = directory / f"{name}.jsonl"
        _write_jsonl(data, data_rows)
        path = directory / f"{name}.yaml"
        text = template.format(task=name, data=json.dumps(str(data.resolve())))
        path.write_text(text if "metadata:" in text else text + _metadata(regime))
        paths[name] = str(path.resolve())

    for bucket, bucket_rows in rows.items():
        task(f"{GROUP}_{bucket}", _SUBTASK, bucket_rows)
    group = directory / f"{GROUP}.yaml"
    group.write_text(_GROUP.format(group=GROUP, tasks="".join(f"  - {GROUP}_{b}\n" for b in rows)))
    paths[GROUP] = str(group.resolve())
    if values is not None:
        (directory / "values_utils.py").write_text(_VALUES_UTILS)
        for bucket, bucket_rows in values.items():
            task(f"{GROUP}_values_{bucket}", _VALUES, bucket_rows)
        _group(directory, f"{GROUP}_values", [f"{GROUP}_values_{b}" for b in values], "bits", regime, paths)
    if heldout is not None:
        for kind, docs in heldout.items():
            task(f"{GROUP}_heldout_{kind}", _HELDOUT, docs)
        _group(directory, f"{GROUP}_heldout", [f"{GROUP}_heldout_{k}" for k in heldout], "bits_per_byte",
               regime, paths)
    return paths
