"""What a job returns (the JSON-RPC ``result`` of a job method) and what the harness stores for each
job, checked in the house style (``moe_schema.check``): a ``SchemaError`` naming the path of the bad
value, ``result.metrics.arc_easy.acc: expected a number, string or null, got list [1]``.

Three places run it, so a malformed result never becomes a stored "ok":

- the worker daemon checks the result before sending it (a bug in a job kind, or a test runner set
  with ``MOE_HARNESS_RUN_JOB``, answers JOB_FAILED naming the bad value);
- the coordinator checks what it receives: a malformed result fails that job with the message
  (``malformed result from <worker>: ...``), it is neither a crash nor a stored record;
- the store checks a record before writing it as ok, and reads a stored ok record that does not
  pass as not done (the job runs again).

A result is a map of the entries below. Every entry is optional except each kind's ``REQUIRED``;
an entry nobody knows is refused (with did-you-mean), so a result can never overwrite the record's
own keys (``status``, ``variant``, ...). The kind-specific parts are checked where the harness reads
them (metrics, samples, probe rows, curves); what a part holds beyond that is the kind's own.
"""

from __future__ import annotations

from typing import Any

from moe_schema.check import SchemaError, expect, got, is_type, known_keys, unknown
from moe_schema.engines import ENGINES
from moe_schema.protocol import JOB_METHODS
from moe_schema.task import check_shard

#: what ``workers.jobs.finish`` adds to every kind's result (``engine``: the engine that ran it,
#: ``{"name", "version"}``; optional, so records stored before engines existed stay valid: a result
#: without it ran on transformers)
SHARED = ("params", "build", "routing", "timings", "env", "engine")
#: each kind's own entries (docs/internals.md, "Job result")
OWN = {
    "describe": (),
    "evaluate": ("metrics", "samples", "aggregations", "higher_is_better", "n_requests", "eval_s", "shard",
                 "eval", "task_regime"),
    "probe": ("probe",),
    "train": ("train", "corpus", "capacity"),
}
#: what a result of each kind must carry (what the harness reads without looking)
REQUIRED = {"describe": ("params",), "evaluate": ("metrics", "samples"), "probe": ("probe",), "train": ("train",)}
#: what a merged sharded evaluation adds (``moe_schema.merge.merge_shards``), in stored records only
MERGED = ("merged_from", "routing_shards")
#: a stored record's own keys, around the result (``harness.run.record_for``)
RECORD_KEYS = ("key", "kind", "variant", "model", "task", "probe", "status", "error", "attempts", "worker",
               "authenticated", "spec", "shard")
STATUSES = ("ok", "failed")

RESULT_KEYS = tuple(dict.fromkeys((*SHARED, *(k for own in OWN.values() for k in own))))
PARAMS_KEYS = ("total", "active", "total_no_embed", "active_no_embed", "num_experts", "experts_per_token",
               "active_measured")


def _number(where: str, value: Any, *, none: bool = False, at_least: float | None = None) -> None:
    if value is None and none:
        return
    expect(where, value, float, "a number or null" if none else "a number", finite=False)  # NaN: measured
    if at_least is not None and value < at_least:
        raise SchemaError(where, f"expected a number >= {at_least:g}, got {value!r}")


def _map_of(where: str, value: Any, check) -> None:
    """A map whose every value passes ``check(path, value)``."""
    expect(where, value, dict, "a map")
    for key, item in value.items():
        check(f"{where}.{key}", item)


def _list_of(where: str, value: Any, check) -> None:
    expect(where, value, list, "a list")
    for i, item in enumerate(value):
        check(f"{where}[{i}]", item)


def _a_map(where: str, value: Any) -> None:
    expect(where, value, dict, "a map")


def _params(where: str, p: Any) -> None:
    expect(where, p, dict, "a map")
    known_keys(where, p, PARAMS_KEYS)
    for key in ("total", "active"):
        if key not in p:
            raise SchemaError(where, f"missing {key!r}")
    for key in ("total", "active", "total_no_embed", "active_no_embed"):
        if key in p:
            _number(f"{where}.{key}", p[key], at_least=0)
    if p.get("num_experts") is not None:
        expect(f"{where}.num_experts", p["num_experts"], int)
    _number(f"{where}.experts_per_token", p.get("experts_per_token"), none=True)
    expect(f"{where}.active_measured", p.get("active_measured", False), bool)


def _build(where: str, b: Any) -> None:
    expect(where, b, dict, "a map")
    if "moe" in b:
        expect(f"{where}.moe", b["moe"], bool)
    if b.get("family") is not None:
        expect(f"{where}.family", b["family"], str)


def _routing(where: str, r: Any) -> None:
    if r is None:
        return
    expect(where, r, dict, "null or a map")
    if "layers" in r:
        def layer(path, item):
            expect(path, item, dict, "a map")
            if "tokens_per_expert" in item:
                _list_of(f"{path}.tokens_per_expert", item["tokens_per_expert"], lambda p, v: _number(p, v))
        _list_of(f"{where}.layers", r["layers"], layer)
    if "summary" in r:
        _a_map(f"{where}.summary", r["summary"])


def _engine(where: str, e: Any) -> None:
    expect(where, e, dict, "a map with the engine's 'name' and 'version'")
    known_keys(where, e, ("name", "version"))
    for key in ("name", "version"):
        if key not in e:
            raise SchemaError(where, f"missing {key!r}")
    if e["name"] not in ENGINES:
        raise SchemaError(f"{where}.name", unknown("engine", e["name"], ENGINES.names()))
    expect(f"{where}.version", e["version"], str, "a version string")


def _timing(where: str, value: Any) -> None:
    if not (value is None or is_type(bool, value) or is_type(float, value)):
        raise SchemaError(where, f"expected a number, a bool or null, got {got(value)}")


def _metric(where: str, value: Any) -> None:
    if not (value is None or isinstance(value, str) or is_type(float, value)):
        raise SchemaError(where, f"expected a number, string or null, got {got(value)}")


def _sample(where: str, s: Any) -> None:
    expect(where, s, dict, "a map")
    if "doc_id" not in s:
        raise SchemaError(where, "missing 'doc_id'")
    expect(f"{where}.doc_id", s["doc_id"], int)


def _probe(where: str, p: Any) -> None:
    expect(where, p, dict, "a map")
    expect(f"{where}.name", p.get("name"), str, "the probe's name")
    _list_of(f"{where}.rows", p.get("rows"), _a_map)
    if "params" in p:
        _a_map(f"{where}.params", p["params"])


def _train(where: str, t: Any) -> None:
    expect(where, t, dict, "a map")
    for key in ("curve", "heldout_curve"):
        if key in t:
            _list_of(f"{where}.{key}", t[key], _a_map)
    if "steps" in t:
        expect(f"{where}.steps", t["steps"], int)


_CHECKS = {
    "params": _params,
    "build": _build,
    "routing": _routing,
    "timings": lambda w, v: _map_of(w, v, _timing),
    "env": _a_map,
    "engine": _engine,
    "metrics": lambda w, v: _map_of(w, v, lambda p, m: _map_of(p, m, _metric)),
    "samples": lambda w, v: _map_of(w, v, lambda p, rows: _list_of(p, rows, _sample)),
    "aggregations": lambda w, v: _map_of(w, v, lambda p, m: _map_of(p, m, lambda q, a: expect(q, a, str))),
    "higher_is_better": lambda w, v: _map_of(w, v, _a_map),
    "n_requests": lambda w, v: expect(w, v, int),
    "eval_s": lambda w, v: _number(w, v, at_least=0),
    "shard": lambda w, v: check_shard(v, w),
    "eval": _a_map,
    "task_regime": lambda w, v: _map_of(w, v, _a_map),
    "probe": _probe,
    "train": _train,
    "corpus": lambda w, v: v is None or _a_map(w, v),
    "capacity": lambda w, v: _capacity(w, v),
    "merged_from": lambda w, v: expect(w, v, int),
    "routing_shards": lambda w, v: _list_of(w, v, _routing),
}


def _capacity(where: str, value: Any) -> None:
    """A train job's capacity scoring on a bios corpus (``workers.training.capacity``)."""
    _a_map(where, value)
    known_keys(where, value, ["persons", "tokenizer", "loss_nats", "value_counts", "name_space",
                              "tokens_per_biography"])
    expect(f"{where}.persons", value.get("persons"), int)
    _map_of(f"{where}.loss_nats", value.get("loss_nats"), lambda p, x: _number(p, x, at_least=0))
    _map_of(f"{where}.value_counts", value.get("value_counts"), lambda p, x: expect(p, x, int))


def _kind(kind: Any, where: str) -> str:
    if kind not in JOB_METHODS:
        raise SchemaError(where, unknown("job kind", kind, JOB_METHODS))
    return kind


def check_result(result: Any, kind: str, where: str = "result", merged: bool = False) -> dict:
    """Validate a ``kind`` job's result (``merged``: a merged sharded evaluation, which may carry
    ``MERGED`` too); return it. Raises ``SchemaError`` at the bad value's path."""
    _kind(kind, "kind")
    expect(where, result, dict, "a map")
    known_keys(where, result, (*RESULT_KEYS, *MERGED) if merged else RESULT_KEYS)
    for key in REQUIRED[kind]:
        if key not in result:
            raise SchemaError(where, f"missing {key!r}: every {kind} result carries it")
    for key, value in result.items():
        _CHECKS[key](f"{where}.{key}", value)
    return result


def result_part(record: dict) -> dict:
    """The worker's result inside a stored record: everything but the record's own keys (a probe
    record's ``probe`` and an evaluate shard's ``shard`` are the result's)."""
    own = set(RECORD_KEYS) - {"probe", "shard"}
    return {k: v for k, v in record.items() if k not in own}


def check_record(record: Any, where: str = "record") -> dict:
    """Validate a stored record (``jobs/<key>.json``, a line of ``results.jsonl``); return it. An ok
    record's result must pass ``check_result``; a failed one must say why (``error``)."""
    expect(where, record, dict, "a map")
    status = record.get("status")
    if status not in STATUSES:
        raise SchemaError(f"{where}.status", f"expected one of {', '.join(STATUSES)}, got {got(status)}")
    expect(f"{where}.key", record.get("key"), str, "the job key")
    kind = _kind(record.get("kind"), f"{where}.kind")
    if status == "failed":
        expect(f"{where}.error", record.get("error"), str, "the reason the job failed")
        return record
    if record.get("error") is not None:
        raise SchemaError(f"{where}.error", f"an ok record has no error, got {got(record['error'])}")
    part = result_part(record)
    # record_for gives every record these, whatever the kind: null params where the kind has none
    if part.get("params") is None and "params" not in REQUIRED[kind]:
        part.pop("params", None)
    if kind == "probe" and isinstance(part.get("probe"), str):
        raise SchemaError(f"{where}.probe", "an ok probe record carries the probe's result, got its name only")
    check_result(part, kind, where, merged=kind == "evaluate")
    return record
