"""The ``evaluate`` job: one lm-eval task (or group) on a loaded variant, through ``simple_evaluate``.

``job["task"] = {"name", "path" (abs yaml path or None), "limit", "num_fewshot"}``, ``job["seed"]``
seeds python, numpy, torch and the few-shot sampler, ``job["eval"]`` holds the batching options
(``max_batch_tokens``, ``prefix_sharing``, ``bootstrap_iters``, ``generate_batch_size``) and
``job["shard"] = {"index", "count"}`` evaluates only the documents whose id is ``index`` modulo
``count`` (see :func:`moe_schema.merge.merge_shards`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from moe_schema import protocol
from moe_schema.check import SchemaError, did_you_mean, known_keys
from moe_schema.merge import task_metrics
from moe_schema.task import TASK_KEYS, check_eval_options, check_limit, check_num_fewshot, check_shard
from workers.errors import JobError

_TASK_MANAGERS: dict = {}


def bad(where: str, what: str) -> JobError:
    return JobError(protocol.INVALID_PARAMS, f"{where}: {what}")


def task_manager(include_path: str | None):
    """lm-eval's TaskManager, one per process and include path (building the index is slow).

    A local task (yaml path given) is indexed from its folder only; a named task from lm-eval's
    own catalogue.
    """
    key = include_path or ""
    if key not in _TASK_MANAGERS:
        from lm_eval.tasks import TaskManager

        from workers.compat import on_task_configs

        if include_path:
            tm = TaskManager(include_path=include_path, include_defaults=False)
            on_task_configs(tm, lambda config, yaml: _data_paths(config, yaml, Path(include_path)))
            _TASK_MANAGERS[key] = tm
        else:
            _TASK_MANAGERS[key] = TaskManager()
    return _TASK_MANAGERS[key]


#: the job's eval.data_outside_task_folder and task.origin (one job at a time per daemon)
_DATA: dict = {"outside_ok": False, "origin": None}


def _data_paths(config: dict, yaml: Path, root: Path) -> dict:
    """A local task's data paths against its own folder, whatever this daemon's working directory
    (``moe_schema.taskfiles.data_paths``; an absolute path into the folder a shipped copy came from
    is read in the copy); a path outside the task folder fails the job in one line."""
    from moe_schema.taskfiles import TaskFilesError, data_paths

    try:
        return data_paths(config, yaml.parent, outside_ok=_DATA["outside_ok"], where=yaml.name, root=root,
                          origin=_DATA["origin"])
    except TaskFilesError as exc:
        raise bad("job.task.path", str(exc)) from None


def check_job(job: dict) -> tuple[dict, int, dict, dict | None]:
    """Validate the evaluate-specific fields; return ``(task, seed, eval options, shard)``."""
    task = job.get("task")
    if not isinstance(task, dict):
        raise bad("job.task", f"expected a map with name, path, limit, num_fewshot, got {type(task).__name__}")
    try:
        known_keys("job.task", task, TASK_KEYS)
    except SchemaError as exc:
        raise bad(exc.path, exc.message) from None
    if not isinstance(task.get("name"), str) or not task["name"]:
        raise bad("job.task.name", f"expected a task name, got {task.get('name')!r}")
    path = task.get("path")
    if path is not None:
        if not isinstance(path, str) or not Path(path).is_absolute():
            raise bad("job.task.path", f"expected an absolute yaml path or None, got {path!r}")
        if not Path(path).is_file():
            raise bad("job.task.path", f"no such file: {path}")
    origin = task.get("origin")
    if origin is not None and not (isinstance(origin, str) and Path(origin).is_absolute() and path is not None):
        raise bad("job.task.origin", f"expected the absolute folder a local task was shipped from, got {origin!r}")
    try:  # the checks the suite parser ran on tasks[i] (moe_schema.task)
        check_limit(task.get("limit"), "job.task.limit")
        check_num_fewshot(task.get("num_fewshot"), "job.task.num_fewshot")
    except SchemaError as exc:
        raise bad(exc.path, exc.message) from None
    seed = job.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise bad("job.seed", f"expected an integer, got {seed!r}")
    try:
        options = check_eval_options(job.get("eval") or {}, "job.eval")  # the suite's eval: check
    except SchemaError as exc:
        raise bad(exc.path, exc.message) from None
    try:
        shard = check_shard(job.get("shard"), "job.shard")
    except SchemaError as exc:
        raise bad(exc.path, exc.message) from None
    return task, seed, options, shard


def load_task(task: dict):
    """``(task manager, {leaf name: Task}, is_group)`` for the job's task; unknown names fail with a hint."""
    folder = str(Path(task["path"]).parent) if task["path"] else None
    tm = task_manager(folder)
    known = set(tm.all_tasks)
    if task["name"] not in known:
        where = f"in {folder}" if folder else "in lm-eval's catalogue"
        raise bad("job.task.name", f"unknown task {task['name']!r} {where}{did_you_mean(task['name'], sorted(known))}")
    built = tm.load([task["name"]])
    return tm, built["tasks"], bool(built["groups"])


def cancellable_requests(tasks: dict, cancelled, progress, every: int = 2000) -> None:
    """lm-eval builds every request of a task (templates, few-shot contexts) before the LM sees the
    first: minutes for 10^6 documents without a limit, during which cancel and SIGTERM went
    unheard. Each task's ``doc_iterator`` and ``construct_requests`` (once per document) check
    ``cancelled``, and the latter reports progress every ``every`` documents."""
    from workers.errors import JobCancelled

    for name, task in tasks.items():
        original = getattr(task, "construct_requests", None)
        if original is None:
            continue
        try:
            total = len(task.eval_docs)
        except Exception:  # a task whose documents are not counted up front
            total = 0
        count = [0]

        def construct(*args, _original=original, _name=name, _count=count, _total=total, **kwargs):
            if cancelled is not None and cancelled.is_set():
                raise JobCancelled(f"cancelled while building the requests of {_name} "
                                   f"({_count[0]} of {_total or '?'} documents)")
            _count[0] += 1
            if _count[0] % every == 0:
                progress(_count[0], _total, f"{_name}: building requests")
            return _original(*args, **kwargs)

        task.construct_requests = construct
        iterate = getattr(task, "doc_iterator", None)
        if iterate is not None:  # lm-eval lists every document first: check there too

            def doc_iterator(*args, _iterate=iterate, _name=name, **kwargs):
                for i, item in enumerate(_iterate(*args, **kwargs)):
                    if i % 256 == 0 and cancelled is not None and cancelled.is_set():
                        raise JobCancelled(f"cancelled while reading the documents of {_name}")
                    yield item

            task.doc_iterator = doc_iterator


def aggregation_names(task_obj) -> dict[str, str]:
    """``{metric: aggregation name}`` from a Task's aggregation functions."""
    from lm_eval.api.registry import AGGREGATION_REGISTRY

    by_fn = {fn: name for name, fn in AGGREGATION_REGISTRY.items()}
    return {m: by_fn.get(fn, getattr(fn, "__name__", "custom")) for m, fn in task_obj.aggregation().items()}


def _plain(value):
    """A msgpack/JSON-safe copy: tuples to lists, numpy scalars to python, NaN kept."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _metric_key(metric: str, filter_key: str) -> str:
    return metric if filter_key == "none" else f"{metric},{filter_key}"


def _samples(logged: list[dict]) -> list[dict]:
    """lm-eval's logged samples → one entry per document (metrics of every filter)."""
    by_doc: dict = {}
    for s in logged:
        entry = by_doc.setdefault(s["doc_id"], {"doc_id": s["doc_id"], "target": _plain(s["target"])})
        for metric in s["metrics"]:
            entry[_metric_key(metric, s["filter"])] = _plain(s[metric])
        resps = s["filtered_resps"]
        if resps and isinstance(resps[0], str):
            entry["responses"] = list(resps)
        else:
            entry["loglikelihoods"] = [float(r[0]) if isinstance(r, (list, tuple)) else float(r) for r in resps]
    return [by_doc[d] for d in sorted(by_doc)]


def _per_key(aggregations: dict[str, str], samples: list[dict]) -> dict[str, str]:
    """Aggregation names keyed like the samples' metrics (``metric`` or ``metric,filter``)."""
    keys = {k for s in samples for k in s if k.split(",", 1)[0] in aggregations}
    return {k: aggregations[k.split(",", 1)[0]] for k in sorted(keys)} if keys else dict(aggregations)


def _metrics(results: dict) -> dict:
    out = {}
    for task, row in results.items():
        out[task] = {}
        for key, value in row.items():
            if "," not in key:
                continue  # alias, sample counts
            metric, filter_key = key.split(",", 1)
            if value == "N/A" or (isinstance(value, float) and math.isnan(value) and metric.endswith("_stderr")):
                value = None
            out[task][_metric_key(metric, filter_key)] = _plain(value)
    return out


_ENV_INFO: dict = {}


def _env_info_once() -> None:
    """lm-eval adds environment info to every result by running torch's ``collect_env`` (pip and
    nvidia-smi subprocesses): ~2 s per evaluate job on a small CPU, more than a small task's own
    work. It cannot change within a daemon's life, so it is collected once per process."""
    import lm_eval.evaluator as evaluator

    original = getattr(evaluator, "add_env_info", None)
    if original is None or getattr(original, "_once", False):  # another lm-eval, or done already
        return

    def add_env_info(storage: dict) -> None:
        if not _ENV_INFO:
            fresh: dict = {}
            original(fresh)
            _ENV_INFO.update(fresh)
        storage.update(_ENV_INFO)

    add_env_info._once = True
    evaluator.add_env_info = add_env_info


def run(job: dict, loaded, progress, cancelled) -> dict:
    """Evaluate ``loaded`` (model, tokenizer, routing_session) on ``job["task"]``; see the module doc."""
    task, seed, options, shard = check_job(job)
    _DATA["outside_ok"] = bool(options.get("data_outside_task_folder", False))
    _DATA["origin"] = task.get("origin")  # only with a path (check_job)
    tm, tasks, is_group = load_task(task)
    cancellable_requests(tasks, cancelled, progress)

    import lm_eval
    import torch

    from workers.evaluation import quiet_git
    _env_info_once()

    quiet_git.install()

    engine = getattr(loaded, "engine", None)
    if engine is None:  # a Loaded made by hand (tests): the default engine
        from moe_schema.engines import DEFAULT
        from workers.engines import get

        engine = get(DEFAULT)
    lm = engine.lm(loaded, progress=progress, cancelled=cancelled, options=options)
    if shard is not None:
        lm.only_docs = lambda doc_id: doc_id % shard["count"] == shard["index"]
    start = time.perf_counter()
    try:
        res = lm_eval.simple_evaluate(
            model=lm, tasks=[task["name"]] if is_group else list(tasks.values()), task_manager=tm,
            limit=task["limit"], num_fewshot=task["num_fewshot"], log_samples=True,
            bootstrap_iters=options.get("bootstrap_iters", 100),
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        )
    except torch.OutOfMemoryError:
        raise JobError(protocol.OUT_OF_MEMORY,
                       f"out of memory evaluating {task['name']} with batches of {lm.max_batch_tokens} tokens; "
                       "lower job.eval.max_batch_tokens") from None
    eval_s = time.perf_counter() - start
    samples = {name: _samples(res["samples"].get(name, [])) for name in tasks}
    aggregations = {name: _per_key(aggregation_names(t), samples[name]) for name, t in tasks.items()}
    if shard is None:
        metrics = _metrics(res["results"])
    else:
        samples = {n: [s for s in ss if lm.only_docs(s["doc_id"])] for n, ss in samples.items()}
        metrics = {n: task_metrics(samples[n], aggregations[n], where=f"shard of {n}") for n in tasks}
    _refuse_non_finite(metrics)
    session = getattr(loaded, "routing_session", None)
    return {
        "metrics": metrics,
        "samples": samples,
        "aggregations": aggregations,
        "higher_is_better": _plain(res.get("higher_is_better", {})),
        "n_requests": lm.n_requests,
        "eval_s": eval_s,
        "shard": shard,
        "eval": {"max_batch_tokens": lm.max_batch_tokens, "prefix_sharing": lm.prefix_sharing, **lm.stats},
        "routing": session.telemetry() if session is not None else None,
        "task_regime": _regimes(res.get("configs") or {}, tasks),
    }


def _refuse_non_finite(metrics: dict) -> None:
    """A NaN or infinite metric fails the job, naming the task and the metric: it comes from a model
    whose outputs are not finite (a diverged training, an overflow), and a number like that is no
    result to cache or report. A NaN standard error alone (one document) stays a missing error bar."""
    for task, row in metrics.items():
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value) and not key.split(",", 1)[0].endswith("_stderr"):
                raise JobError(protocol.JOB_FAILED, f"{task}: metric {key} is {value}: the model's outputs are "
                               "not finite (a diverged training or an overflow in its dtype)")


def _regimes(configs: dict, tasks: dict) -> dict:
    """``{task: metadata.regime}`` for tasks whose YAML states one (the knowledge corpus's), so a
    result carries the regime it was measured in."""
    out = {}
    for name in tasks:
        meta = (configs.get(name) or {}).get("metadata") or {}
        if isinstance(meta, dict) and isinstance(meta.get("regime"), dict):
            out[name] = _plain(meta["regime"])
    return out
