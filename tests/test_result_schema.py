"""The job result's schema (moe_schema.result): what a worker returns, checked where it is sent, where
it is received and where it is stored, so a malformed result becomes a failed job with the bad value's
path: never a crash, never a silently stored "ok". (The daemon's own check of what it sends, on a real
daemon: test_daemon.py, test-malformed.)"""

from __future__ import annotations

import copy
import json

import pytest
from scripted_peer import Peer, valid_result

from harness.coordinator import Coordinator, Job
from harness.store import Store
from moe_schema.check import SchemaError
from moe_schema.result import RECORD_KEYS, check_record, check_result

PARAMS = {"total": 1000, "active": 400.5, "total_no_embed": 900, "active_no_embed": 300.5, "num_experts": 8,
          "experts_per_token": 1.5, "active_measured": True}
SHARED = {"params": PARAMS, "build": {"family": "olmoe", "moe": True, "checkpoint": "/x"},
          "routing": {"strategy": "topk(k=1)", "layers": [{"layer": 0, "tokens": 4, "tokens_per_expert": [1, 3]}],
                      "summary": {"experts_per_token_mean": 1.0}},
          "timings": {"load_s": 0.5, "run_s": 1.0, "model_cached": False}, "env": {"device": "cpu", "pid": 1}}
RESULTS = {
    "describe": {**SHARED},
    "evaluate": {**SHARED, "metrics": {"t": {"acc,none": 0.5, "acc_stderr,none": None, "note": "N/A"}},
                 "samples": {"t": [{"doc_id": 0, "acc,none": 1.0, "target": 1}]},
                 "aggregations": {"t": {"acc,none": "mean"}}, "higher_is_better": {"t": {"acc": True}},
                 "n_requests": 4, "eval_s": 0.25, "shard": {"index": 0, "count": 2}, "eval": {"prefix_sharing": True},
                 "task_regime": {}},
    "probe": {**SHARED, "probe": {"name": "latency", "params": {"seed": 0}, "rows": [{"batch": 1, "ms": 2.0}]}},
    "train": {"train": {"curve": [{"step": 1, "loss": 2.0}], "heldout_curve": [], "steps": 1},
              "corpus": {"kind": "knowledge"}, "timings": {"load_s": 0.0, "run_s": 3.0, "model_cached": False},
              "env": {}},
}


@pytest.mark.parametrize("kind", sorted(RESULTS))
def test_every_kind_has_a_result_that_passes(kind):
    assert check_result(copy.deepcopy(RESULTS[kind]), kind) == RESULTS[kind]


# (kind, change, path, words): each malformed result is named by the path of its bad value
MALFORMED = [
    ("evaluate", {"metrics": [1]}, "result.metrics", "expected a map"),
    ("evaluate", {"metrics": {"t": {"acc": [1]}}}, "result.metrics.t.acc", "expected a number, string or null"),
    ("evaluate", {"samples": {"t": [{"acc": 1}]}}, "result.samples.t[0]", "missing 'doc_id'"),
    ("evaluate", {"samples": {"t": [{"doc_id": "0"}]}}, "result.samples.t[0].doc_id", "expected int"),
    ("evaluate", {"shard": {"index": 2, "count": 2}}, "result.shard", "need 0 <= index < count"),
    ("evaluate", {"metric": {}}, "result.metric", "did you mean 'metrics'"),
    ("evaluate", {"status": "ok"}, "result.status", "unknown key"),     # would overwrite the record's own
    ("evaluate", {"variant": "other"}, "result.variant", "unknown key"),
    ("probe", {"probe": {"name": "latency", "rows": "x"}}, "result.probe.rows", "expected a list"),
    ("probe", {"probe": {"rows": []}}, "result.probe.name", "expected the probe's name"),
    ("describe", {"params": {"total": 1}}, "result.params", "missing 'active'"),
    ("describe", {"params": {**PARAMS, "active": "many"}}, "result.params.active", "expected a number"),
    ("describe", {"params": {**PARAMS, "actve": 1}}, "result.params.actve", "did you mean 'active'"),
    ("describe", {"timings": {"run_s": "1s"}}, "result.timings.run_s", "expected a number, a bool or null"),
    ("describe", {"routing": {"layers": [{"tokens_per_expert": ["a"]}]}}, "result.routing.layers[0].tokens_per_expert[0]",
     "expected a number"),
    ("train", {"train": {"curve": {}}}, "result.train.curve", "expected a list"),
]


@pytest.mark.parametrize("kind, change, path, words", MALFORMED, ids=[m[2] for m in MALFORMED])
def test_a_malformed_result_is_named_by_its_path(kind, change, path, words):
    with pytest.raises(SchemaError) as info:
        check_result({**copy.deepcopy(RESULTS[kind]), **change}, kind)
    assert info.value.path == path and words in info.value.message, str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind, missing", [("describe", "params"), ("evaluate", "metrics"), ("evaluate", "samples"),
                                           ("probe", "probe"), ("train", "train")])
def test_each_kind_carries_what_the_harness_reads(kind, missing):
    result = {k: v for k, v in RESULTS[kind].items() if k != missing}
    with pytest.raises(SchemaError, match=f"^result: missing '{missing}': every {kind} result carries it$"):
        check_result(result, kind)


def test_not_a_map_and_not_a_kind():
    with pytest.raises(SchemaError, match=r"^result: expected a map, got list \[\]$"):
        check_result([], "describe")
    with pytest.raises(SchemaError, match=r"^kind: unknown job kind 'describ' \(did you mean 'describe'\?\)"):
        check_result({}, "describ")


def _record(kind="evaluate", **changes) -> dict:
    rec = {"key": "k" * 24, "kind": kind, "variant": "v", "model": "m", "status": "ok", "error": None,
           "attempts": 1, "worker": "ipc:///w", "spec": {"kind": kind}, **copy.deepcopy(RESULTS[kind])}
    if kind == "probe":
        rec["metrics"] = {}  # record_for gives every record metrics, timings and params
    return {**rec, **changes}


def test_records_ok_and_failed():
    for kind in RESULTS:
        assert check_record(_record(kind)) == _record(kind)
    failed = {"key": "k", "kind": "describe", "status": "failed", "error": "job failed: boom", "params": None}
    assert check_record(failed) == failed
    with pytest.raises(SchemaError, match=r"^record\.error: expected the reason the job failed"):
        check_record({**failed, "error": None})
    with pytest.raises(SchemaError, match=r"^record\.status: expected one of ok, failed, got 'done'"):
        check_record(_record(status="done"))
    with pytest.raises(SchemaError, match=r"^record\.probe: an ok probe record carries the probe's result"):
        check_record(_record("probe", probe="latency"))
    with pytest.raises(SchemaError, match=r"^record\.metrics\.t: expected a map"):
        check_record(_record(metrics={"t": 0.5}))
    assert "status" in RECORD_KEYS and "probe" in RECORD_KEYS


# ---------------------------------------------------------------- the coordinator receives

@pytest.fixture
def peer(tmp_path):
    started = []

    def start(on_job):
        p = Peer(f"ipc://{tmp_path}/w{len(started)}.sock", on_job)
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_the_coordinator_fails_a_malformed_result_and_passes_a_good_one(peer):
    def on_job(spec):
        if spec["n"] == "bad":
            return ("result", {**valid_result(spec), "metrics": {"t": "0.5"}})
        return ("result", valid_result(spec))

    p = peer(on_job)
    outcomes = {}
    specs = {n: {"kind": "evaluate", "n": n} for n in ("bad", "good")}
    with Coordinator([p.endpoint], heartbeat_s=0.05, timeout_s=0.4) as c:
        c.hello(timeout_s=5)
        summary = c.run([Job(n, s) for n, s in specs.items()], lambda j, o: outcomes.setdefault(j.key, o),
                        deadline_s=20)
    assert outcomes["bad"] == {"status": "failed", "worker": p.endpoint, "attempts": 1,
                               "error": f"malformed result from {p.endpoint}: result.metrics.t: expected a map, "
                                        "got '0.5'"}
    assert outcomes["good"]["status"] == "ok" and outcomes["good"]["result"] == valid_result(specs["good"])
    assert summary.ok == 1 and summary.failed == 1
    assert [j["n"] for j in p.jobs].count("bad") == 1  # a malformed result is not retried


# ---------------------------------------------------------------- the store keeps

def test_the_store_writes_a_malformed_ok_record_as_failed(tmp_path):
    store = Store(tmp_path / "run", cache_dir=tmp_path / "cache")
    bad = _record(samples={"t": [{"doc_id": None}]})
    stored = store.put("a", bad)
    assert stored["status"] == "failed" and stored["error"] == (
        "malformed result: record.samples.t[0].doc_id: expected int, got NoneType None")
    assert {k: stored[k] for k in ("key", "kind", "variant")} == {"key": bad["key"], "kind": "evaluate", "variant": "v"}
    assert "samples" not in stored and store.get("a") == stored and store.done("a") is None
    assert not (tmp_path / "cache" / "a.json").exists()  # never cached as a result
    good = _record(key="b")
    assert store.put("b", good) == good and store.done("b") == good


def test_a_malformed_stored_record_is_not_done_and_runs_again(tmp_path):
    store = Store(tmp_path / "run", cache_dir=tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    for key, where in (("a", store.path("a")), ("b", tmp_path / "cache" / "b.json")):  # hand-edited, or old
        where.write_text(json.dumps(_record("describe", key=key, params=None)))
    assert store.done("a") is None and store.done("b") is None
    assert not store.path("b").exists()  # not copied into the run from the cache either


def test_a_run_stores_a_malformed_result_as_a_failed_job_and_reruns_it(tmp_path):
    """Through harness run's execute(): the describe result without params once reached the pairing
    (``r["params"]``) as an ok record; it is a failed job with its reason, and runs again next time."""
    from harness import plan as planner
    from harness.run import execute
    from harness.suite import parse

    suite = parse({"name": "r", "models": [{"name": "dense", "config": {"model_type": "llama", "hidden_size": 32}}],
                   "tasks": [{"name": "task_a"}]})
    _, jobs = planner.expand(suite)
    store = Store(tmp_path / "run", cache_dir=tmp_path / "cache")

    def run_with(on_job, n):
        p = Peer(f"ipc://{tmp_path}/w{n}.sock", on_job)
        try:
            return execute(suite, jobs, store, [p.endpoint], local_workers=1, device="cpu", timeout=5.0, keys=None)
        finally:
            p.stop()

    no_params = lambda s: ("result", {k: v for k, v in valid_result(s).items() if k != "params"}  # noqa: E731
                           if s["kind"] == "describe" else valid_result(s))
    assert run_with(no_params, 0) == {"reused": 0, "ok": 1, "failed": 1, "not run": 0}
    describe = next(j for j in jobs if j.kind == "describe")
    rec = store.get(describe.key)
    assert rec["status"] == "failed" and "result: missing 'params': every describe result carries it" in rec["error"]
    assert run_with(lambda s: ("result", valid_result(s)), 1) == {"reused": 1, "ok": 1, "failed": 0, "not run": 0}
