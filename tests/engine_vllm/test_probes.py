"""Latency, throughput and memory probes on vLLM: transformers' row keys plus ttft_s / tpot_s."""

from __future__ import annotations

import threading

from tiny import variant

from moe_schema.result import check_result
from workers.jobs import run_job


def _probe(host, engine, name, **params):
    job = {"kind": "probe", "variant": variant(engine), "probe": {"name": name, "params": params}}
    result = run_job(job, host, lambda *a: None, threading.Event())
    check_result(result, "probe")
    return result


def test_latency_rows_have_the_transformers_keys_plus_ttft_and_tpot(host):
    params = dict(batch_sizes=[1, 2], prompt_lengths=[16], context_lengths=[16], new_tokens=3, warmup=0, repeats=2)
    ours = _probe(host, "vllm", "latency", **params)["probe"]
    ref = _probe(host, None, "latency", **params)["probe"]
    assert [set(r) for r in ours["rows"]] == [set(r) for r in ref["rows"]]
    prefill, decode = ours["rows"][0], ours["rows"][-1]
    assert prefill["phase"] == "prefill" and prefill["ttft_s"] > 0 and prefill["tpot_s"] is None
    assert decode["phase"] == "decode" and decode["tpot_s"] > 0 and decode["ttft_s"] > 0
    assert decode["s_mbu"] > 0 and decode["roofline_ms"] > 0 and decode["experts_per_token"] == 2.0
    assert 1 <= decode["experts_touched"] <= 4
    assert ours["experts_implementation"].startswith("vllm")


def test_throughput_and_memory_on_vllm(host):
    rows = _probe(host, "vllm", "throughput", batch_sizes=[1, 4], prompt_length=16, context_length=16,
                  new_tokens=2, warmup=0, repeats=1)["probe"]["rows"]
    assert [(r["phase"], r["batch_size"]) for r in rows] == [("prefill", 1), ("decode", 1), ("prefill", 4), ("decode", 4)]
    assert all(r["tokens_per_s"] > 0 for r in rows)
    memory = _probe(host, "vllm", "memory", batch_sizes=[1], context_lengths=[16])["probe"]["rows"][0]
    assert memory["kv_cache_bytes"] >= memory["kv_cache_bytes_analytic"] > 0 and memory["weights_bytes"] > 0
