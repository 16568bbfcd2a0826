"""Planning (variants, jobs, keys), pair matching, and the result store."""

from __future__ import annotations

import json

import pytest

from harness import plan as planner
from harness.pairs import match_pairs
from harness.store import Store
from harness.suite import parse

SUITE = {
    "name": "t",
    "seed": 7,
    "models": [
        {"name": "moe", "config": {"model_type": "olmoe", "hidden_size": 32}},
        {"name": "dense", "config": {"model_type": "llama", "hidden_size": 32}},
    ],
    "tasks": [{"name": "a"}, {"name": "b", "limit": 10}],
}


def test_expand_makes_describe_then_evaluate_jobs():
    vs, jobs = planner.expand(parse(SUITE))
    assert [v["name"] for v in vs] == ["moe", "dense"]
    kinds = [j.kind for j in jobs]
    assert kinds == ["describe", "describe"] + ["evaluate"] * 4
    assert len({j.key for j in jobs}) == len(jobs)


def test_keys_are_stable_and_follow_the_spec():
    _, jobs1 = planner.expand(parse(SUITE))
    _, jobs2 = planner.expand(parse(SUITE))
    assert [j.key for j in jobs1] == [j.key for j in jobs2]
    changed = dict(SUITE, seed=8)
    _, jobs3 = planner.expand(parse(changed))
    # the suite seed is also every config build's default seed, so every key changes
    assert {j.key for j in jobs3}.isdisjoint({j.key for j in jobs1})


def test_same_build_shares_affinity_across_routings():
    pytest.importorskip("moe_schema.routing")
    suite = dict(SUITE, models=[dict(SUITE["models"][0], routing=["native", {"name": "topk", "k": 1}])])
    vs, jobs = planner.expand(parse(suite))
    assert [v["name"] for v in vs] == ["moe", "moe@topk(k=1)"]
    assert len({j.affinity for j in jobs}) == 1


def test_pairs_match_within_tolerance_closest_first():
    params = {
        "moe": {"total": 1000, "active": 300},
        "d300": {"total": 310}, "d290": {"total": 295}, "d1000": {"total": 1050}, "d500": {"total": 500},
    }
    is_moe = {"moe": True, "d300": False, "d290": False, "d1000": False, "d500": False}
    pairs = match_pairs(params, is_moe, tolerance=0.10)
    assert [(p.kind, p.dense) for p in pairs] == [("active", "d290"), ("active", "d300"), ("total", "d1000")]
    assert pairs[2].ratio == pytest.approx(1.05)
    assert match_pairs(params, is_moe, tolerance=0.01) == []


def test_store_writes_atomically_and_caches_only_successes(tmp_path):
    cache = tmp_path / "cache"
    store = Store(tmp_path / "run", cache_dir=cache)
    store.put("k1", {"key": "k1", "kind": "evaluate", "status": "ok", "metrics": {"t": {"x": 1}}, "samples": {}})
    store.put("k2", {"key": "k2", "kind": "evaluate", "status": "failed", "error": "boom"})
    assert store.done("k1")["metrics"] == {"t": {"x": 1}}
    assert store.done("k2") is None  # failed jobs run again
    assert (cache / "k1.json").exists() and not (cache / "k2.json").exists()
    assert not list((tmp_path / "run" / "jobs").glob(".*.tmp"))
    # a new run folder reuses the cached success
    other = Store(tmp_path / "run2", cache_dir=cache)
    assert other.done("k1")["status"] == "ok"
    assert (tmp_path / "run2" / "jobs" / "k1.json").exists()
    # a torn file (crash before rename is impossible, but a hand-edited one) counts as missing
    (tmp_path / "run2" / "jobs" / "k3.json").write_text("{not json")
    assert other.done("k3") is None
    out = other.write_results_jsonl(["k1", "k3"])
    assert [json.loads(line)["key"] for line in out.read_text().splitlines()] == ["k1"]
