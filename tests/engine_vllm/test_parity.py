"""The vLLM engine against the transformers engine on one float32 build: the same lm-eval requests
give the same answers (log-likelihoods within 1e-4, identical greedy generations), through the
evaluate job's lm-eval evaluator, with the same result shape."""

from __future__ import annotations

import threading

import pytest

from tiny import REPO, load, variant
from lm_eval.api.instance import Instance

from moe_schema.result import check_result
from workers.jobs import run_job

PROMPTS = ["The capital of France is", "Once upon a time", "def add(a, b):", "1, 2, 3, 4,",
           "Mixture-of-experts models route", "The quick brown fox", "Water boils at", "In 1905 Einstein"]


def _instances(kind, args_list):
    out = []
    for i, args in enumerate(args_list):
        inst = Instance(kind, {}, args, 0)
        inst.doc_id = i
        out.append(inst)
    return out


def _answers(loaded, kind, args_list):
    lm = loaded.engine.lm(loaded)
    return getattr(lm, kind)(_instances(kind, args_list))


def test_loglikelihoods_agree_within_1e4_and_greedy_flags_match(host):
    requests = [(p, c) for p in PROMPTS for c in (" Paris", " and then", "\n    return")]
    ours = _answers(load(host, "vllm"), "loglikelihood", requests)
    ref = _answers(load(host, None), "loglikelihood", requests)
    assert max(abs(a[0] - b[0]) for a, b in zip(ours, ref)) <= 1e-4
    assert [a[1] for a in ours] == [b[1] for b in ref]


def test_rolling_loglikelihoods_agree_within_1e4(host):
    docs = [(" ".join(PROMPTS[: i + 1]) * 3,) for i in range(4)]
    ours = _answers(load(host, "vllm"), "loglikelihood_rolling", docs)
    ref = _answers(load(host, None), "loglikelihood_rolling", docs)
    assert max(abs(a - b) for a, b in zip(ours, ref)) <= 1e-4


def test_greedy_generations_are_identical(host):
    args = [(p, {"until": ["\n\n"], "max_gen_toks": 24, "do_sample": False}) for p in PROMPTS]
    ours = _answers(load(host, "vllm"), "generate_until", args)
    ref = _answers(load(host, None), "generate_until", args)
    assert ours == ref and any(ours)


@pytest.mark.parametrize("routing", [None, {"name": "random", "params": {"k": 1, "keyed": True}}],
                         ids=["native", "random-keyed"])
def test_the_evaluate_job_gives_the_transformers_result_shape_and_per_document_samples(host, routing):
    task = {"name": "smoke_mc", "path": str(REPO / "suites" / "tasks" / "smoke_mc.yaml"), "limit": 6,
            "num_fewshot": None}
    results = {}
    for engine in ("vllm", None):
        job = {"kind": "evaluate", "variant": variant(engine, routing), "task": task, "seed": 0}
        results[engine] = run_job(job, host, lambda *a: None, threading.Event())
        check_result(results[engine], "evaluate")
    ours, ref = results["vllm"], results[None]
    assert ours["engine"]["name"] == "vllm" and ref["engine"]["name"] == "transformers"
    assert set(ours) == set(ref)
    assert ours["metrics"] == ref["metrics"]
    pairs = [(a, b) for sa, sb in zip(ours["samples"]["smoke_mc"], ref["samples"]["smoke_mc"])
             for a, b in zip(sa["loglikelihoods"], sb["loglikelihoods"])]
    assert len(pairs) >= 6 and max(abs(a - b) for a, b in pairs) <= 1e-4
    assert [l["layer"] for l in ours["routing"]["layers"]] == [l["layer"] for l in ref["routing"]["layers"]]
    assert ours["routing"]["summary"]["experts_per_token_mean"] == (2.0 if routing is None else 1.0)
