"""An evaluate job's task fields, checked the same way where the suite is read and on the worker.

``limit`` is a whole number of documents: lm-eval also reads a float below 1 as a fraction of the
task, but the evaluate job samples, shards and merges by document ids, so a fraction is refused
where the suite is read (``tasks[0].limit``) instead of failing every evaluate job on the workers.
"""

from __future__ import annotations

from moe_schema.check import SchemaError, expect, fits, got, is_type, known_keys, short, type_name, value_problem

#: the task fields on the wire (``job["task"]``); a worker that unpacks a shipped task folder adds
#: ``origin``, the folder it was shipped from (moe_schema.taskfiles.data_paths)
TASK_KEYS = ("name", "path", "limit", "num_fewshot", "origin")
#: the suite's ``eval:`` options, sent with every evaluate job (``job["eval"]``)
EVAL_OPTIONS = {"max_batch_tokens": int, "prefix_sharing": bool, "bootstrap_iters": int, "generate_batch_size": int,
                # a local task's data paths may leave its folder (read on each worker: moe_schema.taskfiles)
                "data_outside_task_folder": bool}


def check_limit(limit, where: str = "job.task.limit"):
    """None (every document) or a positive int."""
    if limit is None:
        return None
    if value_problem(limit):
        raise SchemaError(where, f"expected {value_problem(limit)}, got {got(limit)}")
    if is_type(float, limit) and not is_type(int, limit):
        raise SchemaError(where, f"expected a whole number of documents, got {short(limit)} (a fraction of a task "
                                 f"is not supported: evaluate jobs sample, shard and merge whole documents)")
    if not fits(int, limit) or limit < 1:
        raise SchemaError(where, f"expected a positive number of documents, got {got(limit)}")
    return limit


def check_num_fewshot(shots, where: str = "job.task.num_fewshot"):
    """None (the task's own default) or an int >= 0."""
    if shots is None:
        return None
    if not fits(int, shots) or shots < 0:
        raise SchemaError(where, f"expected an int >= 0, got {got(shots)}")
    return shots


def check_shard(shard, where: str = "job.shard"):
    """None (the whole task) or ``{"index": i, "count": n}`` with 0 <= i < n: one slice of the task's
    documents (those whose id is i modulo n); the evaluate job and its result's schema check it."""
    if shard is None:
        return None
    if not isinstance(shard, dict) or set(shard) != {"index", "count"}:
        raise SchemaError(where, f"expected {{index, count}}, got {got(shard)}")
    i, n = shard["index"], shard["count"]
    if not (fits(int, i) and fits(int, n) and n >= 1 and 0 <= i < n):
        raise SchemaError(where, f"need 0 <= index < count, got index={i!r} count={n!r}")
    return shard


def check_eval_options(options, where: str = "job.eval") -> dict:
    """The evaluate batching options: known names, each of its type."""
    options = expect(where, {} if options is None else options, dict, "a map")
    known_keys(where, options, EVAL_OPTIONS)
    for key, value in options.items():
        if not fits(EVAL_OPTIONS[key], value):
            raise SchemaError(f"{where}.{key}", f"expected {value_problem(value) or type_name(EVAL_OPTIONS[key])}, "
                                                f"got {got(value)}")
    return options
