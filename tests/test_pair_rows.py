"""How the report folds a run's variants into the pairs it compares, and the rows it writes for them:
which variant pairs survive (same seed, same sweep point, native routing where asked), which
strategy variant meets which native one, and what a pair row carries (per-seed differences, their
t-interval, the variants behind them, the seed spread, the reason for a missing interval).
Runs are built from records alone: torch-free, no run folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.report.bootstrap import paired_bootstrap, seeded_paired_diff
from harness.report.pairdiff import compare_pair, no_ci_reason, pair_diffs
from harness.report.run import Run
from harness.report.seeds import (ModelPair, base_model, is_native, model_pairs, routing_pairs, sweep_label,
                                  sweep_of)
from harness.report.stats import t_interval


def docs(values, metric="acc"):
    return [{"doc_id": i, metric: float(x)} for i, x in enumerate(values)]


def spec_run(specs: list[dict], pairs: list[dict] | None = None, evaluations: dict | None = None) -> Run:
    """A Run from plan variant specs; pairs from the plan (no describe records) or matched from
    ``active``/``total`` counts a spec carries; ``evaluations``: {variant: {task: (value, samples)}}."""
    records = []
    for s in specs:
        if "active" in s:
            params = {"active": s["active"], "total": s.get("total", s["active"]),
                      "num_experts": 8 if s.get("is_moe") else None}
            records.append({"key": f"d-{s['name']}", "kind": "describe", "variant": s["name"], "status": "ok",
                            "params": params})
    for v, tasks in (evaluations or {}).items():
        records.append({"key": f"e-{v}", "kind": "evaluate", "variant": v, "status": "ok",
                        "metrics": {t: {"acc": value} for t, (value, _) in tasks.items()},
                        "samples": {t: samples for t, (_, samples) in tasks.items()}})
    plan = {"variants": [{k: v for k, v in s.items() if k not in ("active", "total")} for s in specs],
            "pairing": {"tolerance": 0.1}, "pairs": pairs or []}
    return Run(path=Path("run"), plan=plan, suite={}, records=records, variant_order=[s["name"] for s in specs])


def pair(kind, moe, dense):
    return {"kind": kind, "moe": moe, "dense": dense, "ratio": 1.0}


# ---- seeds.py: sweep points, base models, native routing -------------------------------------
def test_sweep_point_label_and_base_model_of_a_variant():
    run = spec_run([
        {"name": "m[lr=0.1]@topk(k=1)#s2", "model": "m[lr=0.1]", "sweep": {"lr": 0.1, "tokens": 5}},
        {"name": "v1", "model": "base"},
        {"name": "bad", "sweep": "lr=0.1"},
        {"name": "moe@topp(p=0.5)#s1"},
        {"name": "moe[x=1]@topk(k=2)@2#s3"},
    ])
    assert sweep_of(run, "m[lr=0.1]@topk(k=1)#s2") == {"lr": 0.1, "tokens": 5}
    assert sweep_of(run, "bad") == {} and sweep_of(run, "v1") == {}
    assert sweep_label({"lr": 0.1, "tokens": 5}) == "lr=0.1, tokens=5" and sweep_label({}) == ""
    assert base_model(run, "m[lr=0.1]@topk(k=1)#s2") == "m"  # the spec's model, sweep point cut
    assert base_model(run, "v1") == "base"  # the spec wins over the name
    assert base_model(run, "moe@topp(p=0.5)#s1") == "moe"  # no spec model: the name before seed and routing
    assert base_model(run, "moe[x=1]@topk(k=2)@2#s3") == "moe"


def test_native_routing_is_no_routing_or_native_without_parameters():
    run = spec_run([
        {"name": "dense"}, {"name": "moe", "routing": {"name": "native"}},
        {"name": "moe@native(k=4)", "routing": {"name": "native", "params": {"k": 4}}},
        {"name": "moe@topk", "routing": {"name": "topk"}},
        {"name": "moe@empty", "routing": {"name": "native", "params": {}}},
    ])
    assert [is_native(run, v) for v in run.variants] == [True, True, False, False, True]


def test_model_pairs_keep_same_seed_same_point_pairs_in_plan_order():
    specs = [{"name": n, "sweep": {"x": x}} for n, x in
             (("moe[x=1]#s1", 1), ("moe[x=1]#s2", 1), ("dense[x=1]#s1", 1), ("dense[x=1]#s2", 1), ("dense[x=2]#s1", 2))]
    specs.append({"name": "moe[x=1]@topk#s1", "sweep": {"x": 1}, "routing": {"name": "topk", "params": {"k": 1}}})
    run = spec_run(specs, pairs=[
        pair("active", "moe[x=1]#s1", "dense[x=1]#s2"),   # across seeds: dropped
        pair("active", "moe[x=1]#s1", "dense[x=2]#s1"),   # across sweep points: dropped
        pair("active", "moe[x=1]#s1", "dense[x=1]#s1"),
        pair("active", "moe[x=1]@topk#s1", "dense[x=1]#s1"),
        pair("active", "moe[x=1]#s2", "dense[x=1]#s2"),
    ])
    assert model_pairs(run) == [
        ModelPair("active", "moe[x=1]", "dense[x=1]", 1.0, [("moe[x=1]#s1", "dense[x=1]#s1"),
                                                            ("moe[x=1]#s2", "dense[x=1]#s2")], {"x": 1}),
        ModelPair("active", "moe[x=1]@topk", "dense[x=1]", 1.0, [("moe[x=1]@topk#s1", "dense[x=1]#s1")], {"x": 1}),
    ]
    native = model_pairs(run, native_only=True)
    assert [(p.moe, p.seeds) for p in native] == [
        ("moe[x=1]", [("moe[x=1]#s1", "dense[x=1]#s1"), ("moe[x=1]#s2", "dense[x=1]#s2")])]


def test_routing_pairs_meet_the_native_routing_of_the_same_model_and_seed():
    moe = {"is_moe": True}
    topk = {"name": "topk", "params": {"k": 1}}
    run = spec_run([
        {"name": "moe#s1", "model": "moe", **moe}, {"name": "moe#s2", "model": "moe", **moe},
        {"name": "moe@topk(k=1)#s1", "model": "moe", "routing": topk, **moe},
        {"name": "moe@topk(k=1)#s2", "model": "moe", "routing": topk, **moe},
        {"name": "moe@topk(k=1)#s3", "model": "moe", "routing": topk, **moe},  # seed 3 has no native run
        {"name": "other@topk(k=1)#s1", "model": "other", "routing": topk, **moe},  # no native 'other' at all
        {"name": "dense#s1", "model": "dense", "is_moe": False},
        {"name": "dense@topk#s1", "model": "dense", "routing": topk, "is_moe": False},  # dense: never a routing pair
        {"name": "swept[t=1]#s1", "model": "swept[t=1]", "sweep": {"t": 1}, **moe},
        {"name": "swept[t=1]@topk(k=1)#s1", "model": "swept[t=1]", "sweep": {"t": 1}, "routing": topk, **moe},
    ])
    assert routing_pairs(run) == [
        ModelPair("routing", "moe@topk(k=1)", "moe", 1.0, [("moe@topk(k=1)#s1", "moe#s1"),
                                                           ("moe@topk(k=1)#s2", "moe#s2")]),
        ModelPair("routing", "swept[t=1]@topk(k=1)", "swept[t=1]", 1.0,
                  [("swept[t=1]@topk(k=1)#s1", "swept[t=1]#s1")], {"t": 1}),
    ]


# ---- pairdiff.py: one row per pair, task and metric -------------------------------------------
def cells(values: dict):
    return lambda v: values[v]


def test_a_row_carries_per_seed_differences_their_t_interval_and_variants():
    samples = {v: docs([i % 2 for i in range(20)]) for v in ("m#s0", "m#s1", "m#s2", "d#s0", "d#s1", "d#s2")}
    values = {"m#s0": 0.7, "m#s1": 0.6, "m#s2": None, "d#s0": 0.5, "d#s1": 0.45, "d#s2": 0.4}
    p = ModelPair("active", "m", "d", 1.0, seeds=[("m#s0", "d#s0"), ("m#s1", "d#s1"), ("m#s2", "d#s2")])
    row = compare_pair(p, "t", "acc", cells({v: (values[v], samples[v]) for v in values}))
    assert row.per_seed == pytest.approx((0.2, 0.15)) and row.n_seeds == 2  # seed 2 has no MoE value
    assert row.seed_variants == ("m#s0", "m#s1")
    assert row.seed_ci == t_interval(row.per_seed) and row.seed_ci.n == 2
    assert row.spread == pytest.approx(max(0.1, 0.05) / 2 ** 0.5)  # the larger of the two sds
    assert (row.moe, row.dense) == (pytest.approx(0.65), pytest.approx(0.475))


def test_the_dense_side_spread_counts_when_it_is_the_larger():
    samples = docs([1, 0] * 10)
    values = {"m#s0": 0.5, "m#s1": 0.5, "d#s0": 0.2, "d#s1": 0.6}
    p = ModelPair("active", "m", "d", 1.0, seeds=[("m#s0", "d#s0"), ("m#s1", "d#s1")])
    row = compare_pair(p, "t", "acc", cells({v: (values[v], samples) for v in values}))
    assert row.spread == pytest.approx(0.4 / 2 ** 0.5)


def test_a_rows_interval_is_the_seeded_bootstrap_with_the_seed_passed():
    a, b = docs([1, 1, 0, 1, 0, 1, 1, 1] * 5), docs([0, 1, 0, 0, 1, 0, 1, 0] * 5)
    p = ModelPair("active", "m", "d", 1.0, seeds=[("m", "d")])
    cell = cells({"m": (0.7, a), "d": (0.4, b)})
    assert compare_pair(p, "t", "acc", cell).diff == seeded_paired_diff([a], [b], "acc", seed=0)
    assert compare_pair(p, "t", "acc", cell, seed=9).diff == seeded_paired_diff([a], [b], "acc", seed=9)
    assert compare_pair(p, "t", "acc", cell, seed=9).diff != compare_pair(p, "t", "acc", cell).diff


def test_a_seed_without_samples_leaves_the_row_without_an_interval():
    a = docs([1, 0, 1])
    p = ModelPair("active", "m", "d", 1.0, seeds=[("m#s0", "d#s0"), ("m#s1", "d#s1")])
    row = compare_pair(p, "t", "acc", cells({"m#s0": (0.6, a), "d#s0": (0.5, a), "m#s1": (0.6, []), "d#s1": (0.5, a)}))
    assert isinstance(row.diff, str) and not row.real and row.n_seeds == 2


@pytest.mark.parametrize("a, b", [([{"doc_id": 0, "acc": 1.0}], []), ([], [{"doc_id": 0, "acc": 1.0}])])
def test_one_side_without_samples_is_named(a, b):
    assert no_ci_reason(a, b, "acc") == "no per-document samples"


def test_the_reason_reads_the_first_document_of_each_side():
    """Per-document numbers that share no document: whatever later documents hold."""
    a = [{"doc_id": 0, "acc": 1.0}, {"doc_id": 1, "acc": "n/a"}]
    b = [{"doc_id": 5, "acc": 0.0}, {"doc_id": 6, "acc": "n/a"}]
    assert no_ci_reason(a, b, "acc") == "no shared documents"
    assert no_ci_reason(b, a, "acc") == "no shared documents"


def test_pair_diffs_skip_bucket_member_tasks_and_variants_without_the_task():
    moe_s, dense_s = docs([0.1 * (i % 7) + 0.01 * i for i in range(40)]), docs([0.05 * (i % 5) for i in range(40)])
    tasks = lambda s, with_extra: {"g_head": (0.5, s), "g_tail": (0.4, s), "t": (0.6, s),  # noqa: E731
                                   **({"only_moe": (0.3, s)} if with_extra else {})}
    run = spec_run([{"name": "moe", "active": 1000, "total": 4000, "is_moe": True},
                    {"name": "dense", "active": 1000, "is_moe": False}],
                   evaluations={"moe": tasks(moe_s, True), "dense": tasks(dense_s, False)})
    assert run.tasks() == ["g_head", "g_tail", "t", "only_moe"]
    rows = pair_diffs(run, "active")
    assert [(r.task, r.metric) for r in rows] == [("t", "acc")]  # g_* are a bucket group's members
    assert rows[0].diff == paired_bootstrap([x["acc"] for x in moe_s], [x["acc"] for x in dense_s], seed=0)
    (seeded,) = pair_diffs(run, "active", seed=4)
    assert seeded.diff == paired_bootstrap([x["acc"] for x in moe_s], [x["acc"] for x in dense_s], seed=4)
    assert seeded.diff != rows[0].diff  # continuous values: another seed, another interval
    assert pair_diffs(run, "total") == []
