"""Job kind → function: ``run_job(job, host, progress, cancelled) -> result dict``.

Every kind's result carries the same ``params``, ``build``, ``routing``, ``timings`` and ``env``
entries (docs/internals.md, "Job result"), assembled here in ``finish``; a kind's function returns
only what is its own (``metrics``, ``probe``, ...) and may override ``params`` (e.g. measured).
A bad job dict raises ``JobError(INVALID_PARAMS)`` naming the field.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import socket
import threading
import time
from importlib import metadata
from typing import Callable

from moe_schema import protocol
from moe_schema.check import unknown
from moe_schema.registry import PluginError, resolve
from workers.builds.params import count_params
from workers.builds.spec import bad, parse_variant
from workers.errors import JobCancelled, JobError, Unsupported

Progress = Callable[[int, int, str], None]


def run_job(job: dict, host, progress: Progress, cancelled: threading.Event) -> dict:
    """Validate ``job``, load its variant on ``host``, run its kind, return the full result dict."""
    kind, variant = parse_job(job)
    if kind == "train":
        t0 = time.perf_counter()
        return finish(_train(job, host, progress, cancelled), None, host, 0.0, time.perf_counter() - t0)
    if cancelled.is_set():
        raise JobCancelled()
    loaded = host.load(variant)  # parsed once, above: nothing below parses the dict again
    if cancelled.is_set():
        raise JobCancelled()
    t0 = time.perf_counter()
    result = KINDS[kind](job, loaded, progress, cancelled)
    return finish(result, loaded, host, loaded.load_s, time.perf_counter() - t0)


def check_job(job) -> str:
    """The job's kind, after checking the fields every kind needs."""
    return parse_job(job)[0]


def parse_job(job) -> tuple:
    """``(kind, variant)``: the job's kind and its variant parsed once (``moe_schema.variant.Variant``),
    after checking the fields every kind needs."""
    if not isinstance(job, dict):
        raise JobError(protocol.INVALID_PARAMS, f"job: expected a map, got {type(job).__name__}")
    kind = job.get("kind")
    if kind not in protocol.JOB_METHODS:
        raise bad("job.kind", unknown("job kind", kind, protocol.JOB_METHODS))
    if "variant" not in job:
        raise bad("job", "missing 'variant'")
    variant = parse_variant(job["variant"])
    for field, needed_by in (("task", "evaluate"), ("probe", "probe")):
        if kind == needed_by:
            spec = job.get(field)
            if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
                raise bad(f"job.{field}", f"an {kind} job needs a map with a string 'name', got {spec!r}")
    return kind, variant


# --- the kinds -------------------------------------------------------------------------------

def describe(job: dict, loaded, progress: Progress, cancelled: threading.Event) -> dict:
    """Parameters and build facts of a variant; everything comes from ``finish``."""
    progress(1, 1, "described")
    return {}


def _lazy(module: str, kind: str) -> Callable:
    """The kind's ``run``, imported on first use through ``moe_schema.registry.resolve`` (the one
    place a ``module:object`` reference is imported); a worker installed without that module (no
    lm-eval, say) answers UNSUPPORTED instead of failing the job with an import error."""
    try:
        return resolve(f"{module}:run", what=f"{kind} job")
    except PluginError as exc:
        missing = exc.__cause__
        if isinstance(missing, ModuleNotFoundError) and missing.name and module.startswith(missing.name):
            raise Unsupported(f"{kind} jobs need {module}, which this worker does not have") from None
        raise


def _evaluate(job, loaded, progress, cancelled) -> dict:
    task = job["task"]
    if task.get("corpus") is not None and not task.get("path"):
        # a task generated from a corpus: made (or found in the cache) on this worker
        from workers.corpora.load import prepare

        tasks = prepare(task["corpus"], loaded.home, where="job.task.corpus").meta["tasks"]
        if task["name"] not in tasks:
            raise bad("job.task.name", f"corpus has no task {task['name']!r}; known: {', '.join(tasks)}")
        task = {**{k: v for k, v in task.items() if k != "corpus"}, "path": tasks[task["name"]]}
        job = {**job, "task": task}
    elif "digest" in task:  # a local task: its folder shipped with the job, or (too big) at a shared path
        with _local_task(task, loaded.home) as task:  # in use until the evaluation ends: not evicted under it
            return _lazy("workers.evaluation.job", "evaluate")({**job, "task": task}, loaded, progress, cancelled)
    return _lazy("workers.evaluation.job", "evaluate")(job, loaded, progress, cancelled)


@contextlib.contextmanager
def _local_task(task: dict, home):
    """The task spec as this worker reads it (a shipped folder unpacked, held in use meanwhile)."""
    from pathlib import Path

    from moe_schema.taskfiles import SHIP_LIMIT, TaskFilesError, using

    rest = {k: v for k, v in task.items() if k not in ("files", "digest")}
    path = task.get("path")
    if not isinstance(path, str) or not path:
        raise bad("job.task.path", f"a task with a digest needs its yaml path, got {path!r}")
    if "files" in task:
        with contextlib.ExitStack() as stack:
            try:
                unpacked = stack.enter_context(using(task["files"], task["digest"], Path(path).name, home))
            except TaskFilesError as exc:
                raise bad("job.task.files", str(exc)) from None
            # the task's absolute paths name the folder it was shipped from: moe_schema.taskfiles.data_paths
            yield {**rest, "path": str(unpacked), "origin": str(Path(path).parent)}
        return
    if not Path(path).is_file():
        raise bad("job.task.path", f"no such file on this worker ({socket.gethostname()}): {path}; task "
                                   f"folders over {SHIP_LIMIT >> 20} MiB are not shipped with the job, so put "
                                   f"this one on a filesystem every worker shares")
    yield rest


def _probe(job, loaded, progress, cancelled) -> dict:
    return _lazy("workers.probes.job", "probe")(job, loaded, progress, cancelled)


def _train(job, host, progress, cancelled) -> dict:
    return _lazy("workers.training.job", "train")(job, host, progress, cancelled)


KINDS = {"describe": describe, "evaluate": _evaluate, "probe": _probe}


# --- what every result carries ---------------------------------------------------------------

def finish(result: dict, loaded, host, load_s: float, run_s: float) -> dict:
    """Add the shared entries: params, build and routing (unless the kind set them), timings, env."""
    result = dict(result or {})
    if loaded is not None:
        session = loaded.routing_session
        telemetry = session.telemetry() if session is not None else None
        result.setdefault("routing", telemetry)
        result.setdefault("params", variant_params(loaded, result["routing"]))
        result.setdefault("build", build_info(loaded))
        from workers.engines import identity

        result["engine"] = identity(loaded.variant)  # {"name", "version"}: what ran it
    result["timings"] = {**result.get("timings", {}), "load_s": load_s, "run_s": run_s,
                         "model_cached": bool(loaded is not None and loaded.cached)}
    result["env"] = env_info(host)
    return result


def strategy_config(loaded):
    """The routing strategy's config object (``experts_per_token(native_k, num_experts)``), or None:
    the one the job parsed (``loaded.strategy``)."""
    if loaded.variant["routing"] is None:
        return None
    return getattr(loaded, "strategy", None) or getattr(loaded.routing_session, "strategy_config", None)


def variant_params(loaded, telemetry: dict | None = None) -> dict:
    """``count_params`` under the variant's routing: the strategy's experts per token, or for a
    dynamic strategy (``experts_per_token`` None) the measured mean from router telemetry where
    there is one (``active_measured``), else the native count with ``experts_per_token`` None."""
    native = count_params(loaded.model)
    config = strategy_config(loaded)
    if config is None or native["num_experts"] is None:
        return native
    k = config.experts_per_token(int(native["experts_per_token"]), native["num_experts"])
    if k is not None:
        return count_params(loaded.model, experts_per_token=k)
    measured = ((telemetry or {}).get("summary") or {}).get("experts_per_token_mean")
    if measured is not None:
        return {**count_params(loaded.model, experts_per_token=float(measured)), "active_measured": True}
    return {**native, "experts_per_token": None}


def build_info(loaded) -> dict:
    """Facts about the loaded build: family, MoE or dense, where it lives, its shape."""
    model, cfg = loaded.model, loaded.model.config
    native = count_params(model)
    build = loaded.variant["build"]
    return {
        "family": cfg.model_type,
        "moe": native["num_experts"] is not None,
        "checkpoint": str(loaded.path),
        "source": "config" if "config" in build else "checkpoint",
        "seed": build.get("seed", 0) if "config" in build else None,
        "num_layers": getattr(cfg, "num_hidden_layers", None),
        "hidden_size": getattr(cfg, "hidden_size", None),
        "vocab_size": getattr(cfg, "vocab_size", None),
        "tie_word_embeddings": getattr(cfg, "tie_word_embeddings", None),
        "num_experts": native["num_experts"],
        "top_k": None if native["experts_per_token"] is None else int(native["experts_per_token"]),
        "dtype": str(model.dtype).removeprefix("torch."),
        "experts_implementation": getattr(cfg, "_experts_implementation", None),
        **(loaded.engine.describe(loaded) if getattr(loaded, "engine", None) is not None else {}),
    }


def env_info(host) -> dict:
    return {"device": host.device, "device_name": host.device_info()["name"], "hostname": socket.gethostname(),
            "pid": os.getpid(), "versions": versions()}


@functools.lru_cache(maxsize=1)
def versions() -> dict:
    """Versions of what makes a result: python, torch, transformers, lm-eval, the harness."""
    out = {"python": platform.python_version()}
    for key, dist in (("torch", "torch"), ("transformers", "transformers"), ("lm_eval", "lm_eval"),
                      ("harness", "moe-harness")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out
