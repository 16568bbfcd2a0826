"""Each variant's evaluation results in lm-eval's own results layout, so lm-eval tooling reads them.

Writes ``<run>/lm_eval/<variant>/results.json`` shaped like the ``results_<date>.json`` that
lm-eval's EvaluationTracker saves (``results`` with ``"metric,filter"`` keys, ``configs``,
``versions``, ``n-shot``, ``higher_is_better``, ``n-samples``, ``config``, ...), plus one
``samples_<task>.jsonl`` per task with the per-document values.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from harness.report.run import Run, is_stderr, lower_is_better
from harness.store import write_atomic

FILTER = "none"  # lm-eval's filter name when a task defines no filter


def safe_name(name: str) -> str:
    """A variant name as a folder name: anything but letters, digits and ._@()=,+- becomes '_'."""
    out = re.sub(r"[^A-Za-z0-9._@()=,+-]", "_", name)
    return "_" + out if out.startswith(".") else out


def _key(metric: str) -> str:
    return metric if "," in metric else f"{metric},{FILTER}"


def lm_eval_results(run: Run, variant: str) -> dict | None:
    """The lm-eval results dict for one variant, or None when it has no evaluation."""
    evals = run.ok("evaluate", variant)
    if not evals:
        return None
    results, configs, versions, nshot, hib, nsamples = {}, {}, {}, {}, {}, {}
    env, started, run_s, seeds, limit = {}, None, 0.0, set(), None
    for r in evals:
        spec = r.get("spec") or {}
        task_spec = spec.get("task") if isinstance(spec.get("task"), dict) else {}
        env = r.get("env") or env
        run_s += (r.get("timings") or {}).get("run_s", 0) or 0
        if "seed" in spec:
            seeds.add(spec["seed"])
        limit = task_spec.get("limit", limit)
        extra = r.get("lm_eval") if isinstance(r.get("lm_eval"), dict) else {}
        for task, values in (r.get("metrics") or {}).items():
            # lm-eval writes "N/A" for a stderr it cannot compute (perplexities); its table expects that
            results[task] = {"alias": task, **{_key(m): ("N/A" if v is None and is_stderr(m) else v)
                                               for m, v in values.items()}}
            samples = (r.get("samples") or {}).get(task) or []
            configs[task] = (extra.get("configs") or {}).get(task) or {
                "task": task, "num_fewshot": task_spec.get("num_fewshot") or 0,
                **({"dataset_path": task_spec["path"]} if task_spec.get("path") else {}),
                "metadata": {"harness_task_spec": task_spec},
            }
            versions[task] = (extra.get("versions") or {}).get(task, "N/A")
            nshot[task] = (extra.get("n-shot") or {}).get(task, task_spec.get("num_fewshot") or 0)
            hib[task] = ((r.get("higher_is_better") or {}).get(task) or (extra.get("higher_is_better") or {}).get(task)
                         or {m: not lower_is_better(m) for m in values if not is_stderr(m)})
            n = len(samples) or None
            nsamples[task] = (extra.get("n-samples") or {}).get(task) or {"original": n, "effective": n}
    versions_env = env.get("versions") or {}
    return {
        "results": results,
        "group_subtasks": {t: [] for t in results},
        "configs": configs,
        "versions": versions,
        "n-shot": nshot,
        "higher_is_better": hib,
        "n-samples": nsamples,
        "config": {
            "model": "moe-harness",
            "model_args": run.spec(variant),
            "batch_size": None,
            "batch_sizes": [],
            "device": env.get("device"),
            "use_cache": None,
            "limit": limit,
            "bootstrap_iters": 0,
            "gen_kwargs": None,
            "random_seed": sorted(seeds)[0] if seeds else None,
            "numpy_seed": None,
            "torch_seed": None,
            "fewshot_seed": None,
        },
        "git_hash": versions_env.get("git_sha"),
        "date": started or time.time(),
        "transformers_version": versions_env.get("transformers"),
        "lm_eval_version": versions_env.get("lm_eval"),
        "task_hashes": {},
        "model_source": "moe-harness",
        "model_name": variant,
        "model_name_sanitized": safe_name(variant),
        "total_evaluation_time_seconds": str(run_s),
    }


def export_lm_eval(run: Run) -> dict[str, Path]:
    """Write every evaluated variant's results.json (and samples); returns {variant: results.json path}."""
    written = {}
    for variant in run.variants:
        data = lm_eval_results(run, variant)
        if data is None:
            continue
        folder = run.path / "lm_eval" / safe_name(variant)
        path = write_atomic(folder / "results.json", json.dumps(data, indent=2, default=str, ensure_ascii=False)
                            + "\n", under=run.path)
        for task, rows in run.samples(variant).items():
            write_atomic(folder / f"samples_{safe_name(task)}.jsonl",
                         "".join(json.dumps(row, default=str) + "\n" for row in rows), under=run.path)
        written[variant] = path
    return written
