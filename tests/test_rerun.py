"""A rerun after a failure: `harness run`'s execute() redoes exactly the jobs that failed, reuses the
rest, and a job whose train job failed fails with that reason and runs again next time.

The jobs go to a scripted worker (tests/scripted_peer.py: real ZeroMQ, the daemon's protocol) that
fails what the test injects, so the store's and the run's rules are tested without a model.
"""

from __future__ import annotations

import pytest
from scripted_peer import Peer, valid_result

from harness import plan as planner
from harness.run import execute
from harness.store import Store
from harness.suite import parse
from moe_schema import protocol

SUITE = {
    "name": "rerun",
    "models": [{"name": "moe", "config": {"model_type": "olmoe", "hidden_size": 32}},
               {"name": "dense", "config": {"model_type": "llama", "hidden_size": 32}}],
    "tasks": [{"name": "task_a"}, {"name": "task_b"}],
}


def worker(fail=lambda spec: False):
    """A job handler: an error reply where ``fail(spec)``, else a result naming what ran."""
    def on_job(spec):
        if fail(spec):
            return ("error", protocol.JOB_FAILED, "injected failure")
        return ("result", valid_result(spec))
    return on_job


def ran(peer) -> list[tuple[str, str, str | None]]:
    return sorted((s["kind"], s["variant"]["name"], (s.get("task") or {}).get("name")) for s in peer.jobs)


@pytest.fixture
def run_twice(tmp_path):
    peers = []

    def go(suite_data, on_job, n=0):
        endpoint = f"ipc://{tmp_path}/w{n}.sock"
        peer = Peer(endpoint, on_job)
        peers.append(peer)
        suite = parse(suite_data)
        _, jobs = planner.expand(suite)
        store = Store(tmp_path / "run", cache_dir=tmp_path / "cache")
        counts = execute(suite, jobs, store, [endpoint], local_workers=1, device="cpu", timeout=5.0, keys=None)
        return counts, jobs, store, peer

    yield go
    for p in peers:
        p.stop()


def test_a_rerun_redoes_only_the_failed_job(run_twice):
    is_bad = lambda s: s["kind"] == "evaluate" and s["variant"]["name"] == "dense" and s["task"]["name"] == "task_b"  # noqa: E731
    counts, jobs, store, first = run_twice(SUITE, worker(is_bad), 0)
    assert counts == {"reused": 0, "ok": 5, "failed": 1, "not run": 0}
    bad = next(j for j in jobs if is_bad(j.spec))
    record = store.get(bad.key)
    assert record["status"] == "failed" and "injected failure" in record["error"]
    assert len(first.jobs) == 6

    counts, jobs, store, second = run_twice(SUITE, worker(), 1)
    assert counts == {"reused": 5, "ok": 1, "failed": 0, "not run": 0}
    assert ran(second) == [("evaluate", "dense", "task_b")]  # the failed job only, nothing done twice
    assert store.done(bad.key)["status"] == "ok"

    counts, _, _, third = run_twice(SUITE, worker(), 2)
    assert counts == {"reused": 6, "ok": 0, "failed": 0, "not run": 0} and third.jobs == []


TRAINED = {
    "name": "rerun-trained",
    "scales": {"tiny": {"config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                                   "num_key_value_heads": 4, "num_experts": 4, "num_experts_per_tok": 2,
                                   "intermediate_size": 32}}},
    "scale": "tiny",
    "corpus": {"kind": "knowledge", "entities": 50, "tokens": 5000},
    "train": {"batch_size": 4, "seq_len": 32, "tokens": 5000},
    "models": [{"name": "moe", "config": {"model_type": "olmoe"}},
               {"name": "dense", "derive": {"from": "moe", "match": "active"}}],
    "tasks": [{"corpus": "longtail"}],
}


def test_jobs_of_a_failed_train_job_fail_with_that_reason_and_all_rerun(run_twice):
    moe_train = lambda s: s["kind"] == "train" and s["variant"]["name"] == "moe"  # noqa: E731
    counts, jobs, store, first = run_twice(TRAINED, worker(moe_train), 0)
    train = next(j for j in jobs if moe_train(j.spec))
    after = [j for j in jobs if j.after == train.key]
    assert [j.kind for j in after] == ["describe", "evaluate"]
    for j in after:
        assert store.get(j.key)["error"] == f"its train job {train.key[:12]} did not finish"
    assert all(s["variant"]["name"] != "moe" or s["kind"] == "train" for s in first.jobs)  # never sent
    assert counts == {"reused": 0, "ok": 3, "failed": 3, "not run": 0}

    counts, _, store, second = run_twice(TRAINED, worker(), 1)
    assert counts == {"reused": 3, "ok": 3, "failed": 0, "not run": 0}
    assert ran(second) == [("describe", "moe", None), ("evaluate", "moe", "longtail"), ("train", "moe", None)]


def test_corrupt_or_misfiled_cache_records_run_again_with_a_warning(tmp_path, capsys):
    """Finding 10 of issue 25: a cache record holding ``[1]``, ``"ok"`` or ``7`` crashed `harness run`
    (AttributeError), and model a's record copied under model d's key was reused as d's result. Now
    each is not done, with one line naming the file and why, and its job runs again; what the run
    then stores (and shares) is each job's own result."""
    import json
    import os
    from pathlib import Path

    from harness.cli import main as harness
    from harness.run import record_for
    from harness.suite import load

    models = "".join(f"  - name: {name}\n    config: {{model_type: llama, hidden_size: {size}, intermediate_size: 64, "
                     "num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2}\n"
                     for name, size in (("a", 32), ("b", 48), ("c", 64), ("d", 96)))
    suite = tmp_path / "four.yaml"
    suite.write_text(f"name: four\nmodels:\n{models}tasks: []\nprobes: []\n")
    _, jobs = planner.expand(load(suite))
    key = {j.variant: j.key for j in jobs}
    assert sorted(key) == ["a", "b", "c", "d"] and len(set(key.values())) == 4
    cache = Path(os.environ["MOE_HARNESS_HOME"]) / "results"
    cache.mkdir(parents=True, exist_ok=True)
    job_a = next(j for j in jobs if j.variant == "a")
    a_record = record_for(job_a, {"status": "ok", "worker": "x", "result": valid_result(job_a.spec)})
    planted = {"a": [1], "b": "ok", "c": 7, "d": a_record}
    for name, content in planted.items():
        (cache / f"{key[name]}.json").write_text(json.dumps(content))
    endpoint = f"ipc://{tmp_path}/w.sock"
    peer = Peer(endpoint, worker())
    try:
        assert harness(["run", str(suite), "--out", str(tmp_path / "run"), "--workers", endpoint, "--no-report",
                        "--timeout", "5"]) == 0
    finally:
        peer.stop()
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("harness: ignoring")]
    why = {"a": "not a record (a JSON list)", "b": "not a record (a JSON str)", "c": "not a record (a JSON int)",
           "d": f"its key is {key['a']!r}, not {key['d']!r}: not this job's result"}
    assert warnings == [f"harness: ignoring {cache / (key[n] + '.json')}: {why[n]}; the job runs again"
                        for n in "abcd"]
    assert ran(peer) == [("describe", n, None) for n in "abcd"]
    for name in "abcd":
        for folder in (tmp_path / "run" / "jobs", cache):
            rec = json.loads((folder / f"{key[name]}.json").read_text())
            assert (rec["key"], rec["variant"], rec["status"], rec["authenticated"]) == (key[name], name, "ok", True)


def test_a_record_of_another_variant_or_kind_under_the_right_key_is_not_reused(tmp_path):
    """The record's own key may match (copied and edited): its variant and kind must be the job's too."""
    from scripted_peer import valid_result as result

    store = Store(tmp_path / "run", cache_dir=tmp_path / "cache")
    said = []
    store.say = said.append
    record = {"key": "k", "kind": "describe", "variant": "b", "status": "ok", **result({"kind": "describe"})}
    store.put("k", record)
    assert store.done("k", "describe", "b") == record
    assert store.done("k", "describe", "a") is None and store.done("k", "train", "b") is None
    assert said == [f"harness: ignoring {path}: its variant is 'b', not 'a': not this job's result; the job runs "
                    "again" for path in (store.path("k"), tmp_path / "cache" / "k.json")]  # once per file
