"""The merge of a sharded evaluation's results (moe_schema.merge) beyond samples and metrics: routing
telemetry summed layer by layer (counts add, rates token-weighted, ratios recomputed), worker
timings summed, the keys a merged result keeps, drops and defaults, and the messages for results that
cannot be merged. test_merge_seeds.py has the samples and metrics side."""

from __future__ import annotations

import pytest

from moe_schema.merge import merge_routing, merge_shards, merge_timings, task_metrics


def telemetry():
    a = {"layers": [
        {"layer": 3, "tokens": 10, "tokens_per_expert": [6, 4], "dropped": 1, "experts_per_token_mean": 2.0,
         "drop_rate": 0.1, "cv": 0.2, "entropy": 0.5},
        {"layer": 7, "tokens": 12, "tokens_per_expert": [5, 7]},
        {"tokens": 1, "tokens_per_expert": [1, 0], "entropy": 0.3},   # no layer index: its position
        {"tokens": 0, "tokens_per_expert": [0, 0], "cv": 0.8},         # saw no token: no rate, no ratio
    ]}
    b = {"layers": [  # fewer layers than the first shard
        {"layer": 3, "tokens": 30, "tokens_per_expert": [10, 20], "dropped": 2, "experts_per_token_mean": 1.0,
         "drop_rate": 0.0, "cv": 0.4, "entropy": 0.7},
    ]}
    c = {"layers": [  # tokens unknown: counts add, its rates weigh nothing
        {"layer": 3, "tokens": None, "tokens_per_expert": [0, 0], "drop_rate": 0.9, "cv": "n/a"},
    ]}
    return [None, {"layers": []}, a, "not telemetry", b, c]


def test_routing_telemetry_sums_counts_and_token_weights_rates():
    merged = merge_routing(telemetry())
    assert merged["merged_from"] == 3  # the shards that carried layers
    assert merged["summary"] == {"tokens": (40 + 12 + 1 + 0) // 4}
    l0, l1, l2, l3 = merged["layers"]
    assert set(l0) == {"layer", "tokens", "tokens_per_expert", "dropped", "experts_per_token_mean", "drop_rate",
                       "cv", "entropy", "max_over_mean"}
    assert (l0["layer"], l0["tokens"], l0["tokens_per_expert"], l0["dropped"]) == (3, 40, [16, 24], 3)
    assert l0["experts_per_token_mean"] == pytest.approx((2.0 * 10 + 1.0 * 30) / 40)
    assert l0["drop_rate"] == pytest.approx(0.1 * 10 / 40)  # the 0.9 of a shard without tokens weighs 0
    assert l0["cv"] == pytest.approx((0.2 * 10 + 0.4 * 30) / 40)
    assert l0["entropy"] == pytest.approx((0.5 * 10 + 0.7 * 30) / 40)
    assert l0["max_over_mean"] == pytest.approx(24 / 20)
    assert l1 == {"layer": 7, "tokens": 12, "tokens_per_expert": [5, 7], "dropped": 0,
                  "max_over_mean": pytest.approx(7 / 6)}
    assert l2 == {"layer": 2, "tokens": 1, "tokens_per_expert": [1, 0], "dropped": 0, "entropy": pytest.approx(0.3),
                  "max_over_mean": pytest.approx(2.0)}
    assert l3 == {"layer": 3, "tokens": 0, "tokens_per_expert": [0, 0], "dropped": 0}


def test_routing_of_one_layer_and_of_no_telemetry():
    one = merge_routing([{"layers": [{"tokens": 9, "tokens_per_expert": [9]}]}])
    assert one["summary"] == {"tokens": 9} and one["layers"][0]["layer"] == 0
    assert merge_routing([None, {"layers": []}, {"summary": {}}]) is None and merge_routing([]) is None


def test_timings_sum_and_the_model_is_cached_only_if_it_was_for_every_shard():
    assert merge_timings([{"load_s": 1.5, "run_s": 2.0, "model_cached": True}, None,
                          {"run_s": 0.5, "model_cached": True}]) == {"load_s": 1.5, "run_s": 2.5, "model_cached": False}
    assert merge_timings([{"load_s": 1.0, "run_s": 1.0, "model_cached": True}, {"model_cached": True}]) == \
        {"load_s": 1.0, "run_s": 1.0, "model_cached": True}
    assert merge_timings([{}]) == {"load_s": 0.0, "run_s": 0.0, "model_cached": False}


def result(doc_ids, **extra):
    return {"samples": {"t": [{"doc_id": d, "acc": float(d % 2)} for d in doc_ids]},
            "aggregations": {"t": {"acc": "mean"}}, **extra}


def test_a_merged_result_keeps_shared_fields_and_resets_the_per_shard_ones():
    routed = [{"layers": [{"tokens": 4, "tokens_per_expert": [3, 1]}]}, {"layers": [{"tokens": 2, "tokens_per_expert": [1, 1]}]}]
    shards = [result([1], routing=routed[0], timings={"load_s": 1.0, "run_s": 2.0, "model_cached": True}),
              result([0], routing=routed[1])]
    merged = merge_shards(shards)
    assert merged["routing"] == merge_routing(routed) and merged["routing"]["layers"][0]["tokens"] == 6
    assert merged["routing_shards"] == routed
    assert merged["timings"] == {"load_s": 1.0, "run_s": 2.0, "model_cached": False}
    assert merged["n_requests"] == 0 and merged["eval_s"] == 0.0  # shards that did not say count nothing
    plain = merge_shards([result([0]), result([1])])
    assert plain["routing"] is None and plain["shard"] is None and plain["merged_from"] == 2
    assert "timings" not in plain and "routing_shards" not in plain
    timed = merge_shards([result([0], timings={"run_s": 1.0}), result([1], timings={"run_s": 2.0})])
    assert timed["timings"] == {"load_s": 0.0, "run_s": 3.0, "model_cached": False}
    # vLLM's preempted requests (their tokens routed, and counted, again) add over the shards
    vllm = merge_shards([result([0], eval={"batches": 1, "preemptions": 2}),
                         result([1], eval={"batches": 1, "preemptions": 1})])
    assert vllm["eval"]["preemptions"] == 3
    assert "eval" not in plain


def test_what_cannot_be_merged_is_named():
    with pytest.raises(ValueError, match=r"^merge_shards: no shard results to merge$"):
        merge_shards([])
    with pytest.raises(ValueError, match=r"^merge_shards: results\[1\] has no 'samples' map \(not an evaluate result\?\)$"):
        merge_shards([result([0]), {"aggregations": {}}])
    with pytest.raises(ValueError, match=r"^samples: metric 'acc' uses aggregation 'f1_corpus', which cannot be "
                                         r"recomputed from samples \(known: bits_per_byte, mean, median, nanmean, "
                                         r"perplexity, weighted_perplexity\)$"):
        task_metrics([{"doc_id": 0, "acc": 1.0}], {"acc": "f1_corpus"})
    with pytest.raises(ValueError, match=r"^samples: no per-document values of metric 'acc'$"):
        task_metrics([{"doc_id": 0}], {"acc": "mean"})
