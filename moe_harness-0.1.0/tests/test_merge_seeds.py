"""Two pieces of the report's inputs, unit by unit: the merge of sharded evaluate results
(moe_schema.merge) and the seed bookkeeping (harness.report.seeds) with the pair rows it feeds
(harness.report.pairdiff.pair_diffs). Torch-free, no run needed."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.report.bootstrap import Diff
from harness.report.pairdiff import pair_diffs
from harness.report.run import Run
from harness.report.seeds import fmt_mean_sd, has_seeds, mean_sd, model_pairs, seed_groups, split_seed
from moe_schema.merge import merge_shards, task_metrics

AGG = {"acc": "mean", "bpb": "bits_per_byte", "ppl": "weighted_perplexity", "nm": "nanmean", "med": "median",
       "lp": "perplexity"}


def shard(doc_ids, task="t", **extra):
    samples = [{"doc_id": d, "acc": float(d % 2), "bpb": [-float(d + 1), 2], "ppl": [-float(d + 1), 2],
                "nm": float("nan") if d == 0 else float(d), "med": float(d), "lp": -0.1 * d} for d in doc_ids]
    return {"samples": {task: samples, "other": [{"doc_id": d, "acc": 1.0} for d in doc_ids]},
            "aggregations": {task: AGG, "other": {"acc": "mean"}},
            "metrics": {"stale": 1}, "routing": None, "shard": {"index": 0, "count": 3}, **extra}


def test_shards_merge_into_the_unsplit_task_in_doc_id_order():
    shards = [shard([4, 1], n_requests=3, eval_s=1.5, routing={"r": 2}, build="b1"),
              shard([0, 5], n_requests=2, eval_s=0.5, build="b1"),
              shard([3, 2], n_requests=1, eval_s=1.0, routing={"r": 3}, build="b1")]
    merged = merge_shards(shards)
    assert [s["doc_id"] for s in merged["samples"]["t"]] == [0, 1, 2, 3, 4, 5]
    assert merged["metrics"] == {"t": task_metrics(shard(range(6))["samples"]["t"], AGG),
                                 "other": {"acc": 1.0, "acc_stderr": 0.0}}
    assert (merged["n_requests"], merged["eval_s"], merged["merged_from"]) == (6, 3.0, 3)
    assert merged["routing"] is None and merged["shard"] is None and merged["build"] == "b1"
    assert merged["routing_shards"] == [{"r": 2}, {"r": 3}]
    assert "stale" not in merged["metrics"]
    assert "routing_shards" not in merge_shards([shard([0]), shard([1])])


def test_aggregations_reproduce_lm_eval_on_known_values():
    m = task_metrics(shard(range(6))["samples"]["t"], AGG)
    assert m["acc"] == 0.5 and m["acc_stderr"] == pytest.approx(math.sqrt(0.3) / math.sqrt(6))
    assert m["bpb"] == pytest.approx(21 / 12 / math.log(2)) and m["bpb_stderr"] is None
    assert m["ppl"] == pytest.approx(math.exp(21 / 12)) and m["ppl_stderr"] is None
    assert m["nm"] == pytest.approx(3.0)  # the nan left out: mean of 1..5
    assert m["med"] == 3.0  # lm-eval's median: the upper middle of an even count
    assert m["lp"] == pytest.approx(math.exp(0.25))
    assert math.isnan(task_metrics([{"doc_id": 0, "nm": float("nan")}], {"nm": "nanmean"})["nm"])
    assert task_metrics([{"doc_id": 0, "acc": 1.0}], {"acc": "mean"}) == {"acc": 1.0, "acc_stderr": None}


@pytest.mark.parametrize("results, words", [
    ([shard([0]), {**shard([1]), "samples": {"t": []}}], r"results\[1\] has tasks \['t'\], results\[0\] has \['other', 't'\]"),
    ([shard([0]), {"samples": {}, "aggregations": None}], r"results\[1\] has no 'aggregations' map"),
    ([shard([0, 1]), shard([2]), shard([1])], r"t doc_id 1 is in results\[0\] and results\[2\]"),
])
def test_bad_shards_are_named(results, words):
    with pytest.raises(ValueError, match=words):
        merge_shards(results)


def test_a_metric_without_values_is_named():
    with pytest.raises(ValueError, match=r"^merge_shards: t: no per-document values of metric 'acc'$"):
        merge_shards([{"samples": {"t": [{"doc_id": 0}]}, "aggregations": {"t": {"acc": "mean"}}}])


# ---- seeds -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name, split", [("moe#s2", ("moe", 2)), ("moe@topk(k=2)#s-1", ("moe@topk(k=2)", -1)),
                                         ("moe", ("moe", None)), ("m#s2x", ("m#s2x", None)), ("a#s1#s3", ("a#s1", 3))])
def test_split_seed(name, split):
    assert split_seed(name) == split


def test_mean_sd_and_its_format():
    assert mean_sd([2.0]) == (2.0, None)
    mean, sd = mean_sd([1.0, 2.0, 4.0])
    assert mean == pytest.approx(7 / 3) and sd == pytest.approx(math.sqrt((16 + 1 + 25) / 9 / 2))
    fmt = "{:.2f}".format
    assert fmt_mean_sd([], fmt) == "-" and fmt_mean_sd([0.25], fmt) == "0.25"
    assert fmt_mean_sd([0.2, 0.3], fmt) == "0.25 ± 0.07 (2 seeds)"


def run_of(variants: dict[str, int], samples: dict[str, list] | None = None) -> Run:
    """A Run from records alone: describe results with parameter counts (MoE where active < total),
    and an evaluate result per variant with its per-document samples."""
    records = []
    for v, active in variants.items():
        total = 4000 if v.startswith("moe") else active
        params = {"total": total, "active": active, "num_experts": 8 if v.startswith("moe") else None}
        records.append({"key": f"d-{v}", "kind": "describe", "variant": v, "status": "ok", "params": params})
        if samples is not None:
            records.append({"key": f"e-{v}", "kind": "evaluate", "variant": v, "task": "t", "status": "ok",
                            "metrics": {"t": {"acc": sum(s["acc"] for s in samples[v]) / len(samples[v])}},
                            "samples": {"t": samples[v]}})
    return Run(path=Path("run"), plan={"pairing": {"tolerance": 0.1}}, suite={}, records=records,
               variant_order=list(variants))


def test_seed_groups_and_model_pairs_pair_seed_by_seed():
    run = run_of({"moe#s1": 1000, "moe#s2": 1000, "dense#s1": 1000, "dense#s2": 1000, "big": 4000})
    assert seed_groups(run) == {"moe": ["moe#s1", "moe#s2"], "dense": ["dense#s1", "dense#s2"], "big": ["big"]}
    assert has_seeds(run) and not has_seeds(run_of({"moe": 1000, "dense": 1000}))
    pairs = {(p.kind, p.moe, p.dense): p for p in model_pairs(run)}
    assert set(pairs) == {("active", "moe", "dense")}  # "big" has no seed: never paired across seeds
    assert pairs[("active", "moe", "dense")].seeds == [("moe#s1", "dense#s1"), ("moe#s2", "dense#s2")]
    assert pairs[("active", "moe", "dense")].ratio == pytest.approx(1.0)


def test_pair_diffs_rows_per_kind_with_an_interval():
    docs = lambda vals: [{"doc_id": i, "acc": float(x)} for i, x in enumerate(vals)]  # noqa: E731
    run = run_of({"moe": 1000, "dense": 1000, "big": 4000},
                 samples={"moe": docs([1, 1, 1, 1, 0] * 20), "dense": docs([0, 1, 0, 1, 0] * 20),
                          "big": docs([1, 1, 1, 1, 1] * 20)})
    (active,) = pair_diffs(run, "active")
    assert (active.pair.dense, active.task, active.metric, active.n_seeds) == ("dense", "t", "acc", 1)
    assert (active.moe, active.dense) == (pytest.approx(0.8), pytest.approx(0.4))
    assert isinstance(active.diff, Diff) and active.diff.mean == pytest.approx(0.4) and active.real
    (total,) = pair_diffs(run, "total")
    assert total.pair.dense == "big" and total.diff.mean == pytest.approx(-0.2) and total.diff.hi < 0
