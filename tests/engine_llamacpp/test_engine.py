"""The llamacpp engine as a worker runs it (``workers.host.Host``, the evaluate and probe jobs), against
the transformers engine on one float32 build: the same lm-eval requests give the same answers at f32
with an f32 KV cache (log-likelihoods within 1e-4, identical greedy flags and generations), through
the evaluate job with the same result shape; top-k through expert_used_count matches transformers'
top-k; the probes give the other engines' rows; quantized variants load, differ, and shrink; what
llama.cpp cannot do is refused in one line."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from lm_eval.api.instance import Instance

from moe_schema.result import check_result
from workers.errors import JobError
from workers.jobs import run_job

REPO = Path(__file__).resolve().parents[2]
TINY = {"model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
        "num_experts": 4, "num_experts_per_tok": 2, "norm_topk_prob": True, "max_position_embeddings": 256}
PROMPTS = ["The capital of France is", "Once upon a time", "def add(a, b):", "1, 2, 3, 4,",
           "Mixture-of-experts models route", "The quick brown fox", "Water boils at", "In 1905 Einstein"]


def variant(engine: str | None, routing=None, **params) -> dict:
    label = "transformers" if engine is None else f"{engine}-{'-'.join(f'{k}={v}' for k, v in params.items())}"
    return {"name": f"tiny@{label}", "model": "tiny", "build": {"config": dict(TINY), "seed": 0},
            "routing": routing, "dtype": "float32",
            "engine": None if engine is None else {"name": engine, "params": {
                "quant": "f32", "kv_cache": "f32", "threads": 1, "n_ctx": None, **params}}}


@pytest.fixture(scope="module")
def host(_isolated_home):
    from workers.host import Host

    h = Host("cpu")
    yield h
    h.evict_all()


def _instances(kind, args_list):
    out = []
    for i, args in enumerate(args_list):
        inst = Instance(kind, {}, args, 0)
        inst.doc_id = i
        out.append(inst)
    return out


def _answers(host, v, kind, args_list):
    loaded = host.load(v)
    return getattr(loaded.engine.lm(loaded), kind)(_instances(kind, args_list))


REQUESTS = [(p, c) for p in PROMPTS for c in (" Paris", " and then", "\n    return")]


def test_loglikelihoods_agree_within_1e4_and_greedy_flags_match_at_f32(host):
    ours = _answers(host, variant("llamacpp"), "loglikelihood", REQUESTS)
    ref = _answers(host, variant(None), "loglikelihood", REQUESTS)
    assert max(abs(a[0] - b[0]) for a, b in zip(ours, ref)) <= 1e-4
    assert [a[1] for a in ours] == [b[1] for b in ref]


def test_rolling_loglikelihoods_agree_within_1e4_over_several_windows(host):
    docs = [(" ".join(PROMPTS[: i + 1]) * 12,) for i in range(3)]  # longer than n_ctx: several windows
    ours = _answers(host, variant("llamacpp", n_ctx=128), "loglikelihood_rolling", docs)
    ref = _answers(host, variant(None), "loglikelihood_rolling", [(d[0],) for d in docs])
    assert len(docs[-1][0]) > 128
    # transformers' window is the build's 256 positions, llama.cpp's n_ctx 128: other windows, so
    # compare against the same windows on transformers through max_length instead
    from workers.engines.llamacpp.lm import LlamacppLM  # noqa: F401  (the class under test)

    loaded = host.load(variant(None))
    lm = loaded.engine.lm(loaded)
    lm._max_length = 128
    same = lm.loglikelihood_rolling(_instances("loglikelihood_rolling", docs))
    assert max(abs(a - b) for a, b in zip(ours, same)) <= 1e-4
    assert any(abs(a - b) > 1e-3 for a, b in zip(ours, ref))  # the window length matters: the test can fail


def test_greedy_generations_are_identical(host):
    args = [(p, {"until": ["\n\n"], "max_gen_toks": 24, "do_sample": False}) for p in PROMPTS]
    ours = _answers(host, variant("llamacpp"), "generate_until", args)
    ref = _answers(host, variant(None), "generate_until", args)
    assert ours == ref and any(ours)


def test_sampled_generation_is_refused_in_one_line(host):
    args = [(PROMPTS[0], {"until": ["\n"], "max_gen_toks": 4, "do_sample": True, "temperature": 0.7})]
    with pytest.raises(JobError, match="^engine llamacpp generates greedily; this task samples"):
        _answers(host, variant("llamacpp"), "generate_until", args)


def test_topk_through_expert_used_count_matches_transformers_topk(host):
    top1 = {"name": "topk", "params": {"k": 1}}
    ours = _answers(host, variant("llamacpp", top1), "loglikelihood", REQUESTS[:9])
    ref = _answers(host, variant(None, top1), "loglikelihood", REQUESTS[:9])
    native = _answers(host, variant("llamacpp"), "loglikelihood", REQUESTS[:9])
    assert max(abs(a[0] - b[0]) for a, b in zip(ours, ref)) <= 1e-4
    assert max(abs(a[0] - b[0]) for a, b in zip(ours, native)) > 1e-3  # k really changed


def test_the_evaluate_job_gives_the_transformers_result_shape_with_the_gguf_facts(host):
    task = {"name": "smoke_mc", "path": str(REPO / "suites" / "tasks" / "smoke_mc.yaml"), "limit": 6,
            "num_fewshot": None}
    results = {}
    for engine in ("llamacpp", None):
        job = {"kind": "evaluate", "variant": variant(engine), "task": task, "seed": 0}
        results[engine] = run_job(job, host, lambda *a: None, threading.Event())
        check_result(results[engine], "evaluate")
    ours, ref = results["llamacpp"], results[None]
    assert ours["engine"]["name"] == "llamacpp" and set(ours) == set(ref)
    assert ours["metrics"] == ref["metrics"]
    build = ours["build"]
    assert build["gguf"]["quant"] == "f32" and build["gguf"]["bits_per_weight"] == pytest.approx(32.0)
    assert build["routing_telemetry"].startswith("unavailable") and ours["routing"] is None
    assert build["threads"] == 1


def test_a_quantized_variant_loads_differs_and_is_smaller(host):
    f32 = _answers(host, variant("llamacpp"), "loglikelihood", REQUESTS[:6])
    q8 = _answers(host, variant("llamacpp", quant="q8_0"), "loglikelihood", REQUESTS[:6])
    q4 = _answers(host, variant("llamacpp", quant="q4_0"), "loglikelihood", REQUESTS[:6])
    d8 = max(abs(a[0] - b[0]) for a, b in zip(f32, q8))
    d4 = max(abs(a[0] - b[0]) for a, b in zip(f32, q4))
    assert 0 < d8 < d4  # measured error, growing as bits shrink
    sizes = {q: host.load(variant("llamacpp", quant=q)).handle.sizes for q in ("f32", "q8_0", "q4_0")}
    assert sizes["f32"]["file_bytes"] > sizes["q8_0"]["file_bytes"] > sizes["q4_0"]["file_bytes"]
    assert sizes["q8_0"]["expert_bytes_per_param"] == pytest.approx(34 / 32)


def _probe(host, v, name, **params):
    job = {"kind": "probe", "variant": v, "probe": {"name": name, "params": params}}
    result = run_job(job, host, lambda *a: None, threading.Event())
    check_result(result, "probe")
    return result["probe"]


def test_latency_rows_have_the_transformers_keys_at_batch_1_and_4(host):
    params = dict(batch_sizes=[1, 4], prompt_lengths=[16], context_lengths=[16], new_tokens=3, warmup=0, repeats=2)
    ours = _probe(host, variant("llamacpp", quant="q8_0"), "latency", **params)
    ref = _probe(host, variant(None), "latency", **params)
    assert [set(r) for r in ours["rows"]] == [set(r) for r in ref["rows"]]
    assert [(r["phase"], r["batch_size"]) for r in ours["rows"]] == [(r["phase"], r["batch_size"]) for r in ref["rows"]]
    assert all(r["tokens_per_s"] > 0 and r["roofline_ms"] > 0 for r in ours["rows"])
    assert ours["experts_implementation"] == "llama.cpp (q8_0)"


def test_the_roofline_reads_the_quantized_files_real_bytes(host):
    params = dict(batch_sizes=[1], prompt_lengths=[16], context_lengths=[16], new_tokens=2, warmup=0, repeats=1)
    f32 = _probe(host, variant("llamacpp"), "latency", **params)["rows"][-1]
    q4 = _probe(host, variant("llamacpp", quant="q4_0"), "latency", **params)["rows"][-1]
    # a decode step's bytes are the weights it reads: q4_0's are between 4.5/32 and ~1/2 of f32's
    # (norms and small tensors stay f32 in the file), never f32's
    assert 4.5 / 32 < (q4["bytes"] - q4["kv_bytes"]) / (f32["bytes"] - f32["kv_bytes"]) < 0.5


def test_throughput_and_memory_rows(host):
    rows = _probe(host, variant("llamacpp"), "throughput", batch_sizes=[1, 4], prompt_length=16, context_length=16,
                  new_tokens=2, warmup=0, repeats=1)["rows"]
    assert [(r["phase"], r["batch_size"]) for r in rows] == [("prefill", 1), ("decode", 1), ("prefill", 4), ("decode", 4)]
    assert all(r["tokens_per_s"] > 0 for r in rows)
    memory = _probe(host, variant("llamacpp"), "memory", batch_sizes=[1], context_lengths=[16])["rows"][0]
    assert memory["kv_cache_bytes"] >= memory["kv_cache_bytes_analytic"] > 0 and memory["weights_bytes"] > 0
    assert memory["weights_method"].startswith("computed: the GGUF's tensor bytes")


def test_the_routing_probe_is_refused_telemetry_is_not_made_up(host):
    job = {"kind": "probe", "variant": variant("llamacpp"),
           "probe": {"name": "routing", "params": {"batch_sizes": [1], "prompt_length": 8}}}
    with pytest.raises(JobError, match="engine llamacpp exposes no per-token expert choice"):
        run_job(job, host, lambda *a: None, threading.Event())


def test_threads_are_capped_at_the_free_cores():
    from workers.engines.llamacpp.engine import free_cores, thread_count

    assert free_cores(load=0.0, cores=2) == 2 and free_cores(load=1.4, cores=2) == 1
    assert free_cores(load=15.0, cores=2) == 1  # at least one
    assert thread_count(None, 2) == 2 and thread_count(4, 2) == 2 and thread_count(1, 2) == 1
