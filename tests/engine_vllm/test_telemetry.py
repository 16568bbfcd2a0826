"""The evaluate job's routing telemetry counts the same tokens on both engines (the definition in
``workers.evaluation.lm``'s module doc: every token each request feeds the model, as if it ran
alone), so one build under top-1 routing in float32 gives equal tokens-per-expert counts per layer on
vLLM and on transformers, for loglikelihood (prefix sharing on the transformers side), rolling
loglikelihood and greedy generation (each request stopped at its own stop sequence)."""

from __future__ import annotations

import threading

import pytest

from tiny import REPO, variant

from workers.jobs import run_job

TOP1 = {"name": "topk", "params": {"k": 1}}


def _routing(host, engine, name, limit):
    task = {"name": name, "path": str(REPO / "suites" / "tasks" / f"{name}.yaml"), "limit": limit,
            "num_fewshot": None}
    job = {"kind": "evaluate", "variant": variant(engine, TOP1), "task": task, "seed": 0}
    result = run_job(job, host, lambda *a: None, threading.Event())
    return result, [(l["layer"], l["tokens"], l["tokens_per_expert"]) for l in result["routing"]["layers"]]


@pytest.mark.parametrize("name,limit", [("smoke_mc", 12), ("smoke_ppl", 6), ("smoke_gen", 12)])
def test_top1_telemetry_is_equal_per_layer_on_both_engines(host, name, limit):
    ref, ref_layers = _routing(host, None, name, limit)
    ours, ours_layers = _routing(host, "vllm", name, limit)
    assert ref["eval"]["prefix_sharing"] is True  # transformers forwards a shared context once...
    assert ours_layers == ref_layers  # ...and still counts it once per request, as vLLM does
    assert ours["eval"]["preemptions"] == 0  # no request computed (and counted) twice
    assert ref_layers[0][1] > 0
    if name == "smoke_gen":
        texts = [(a["responses"], b["responses"]) for a, b in zip(ours["samples"][name], ref["samples"][name])]
        assert all(a == b for a, b in texts)


def test_generation_telemetry_stops_where_each_request_stops(host):
    """Stop sequences taken from the build's own greedy output, so requests stop at different steps:
    vLLM stops each request there; transformers' batch goes on, and no longer counts a stopped row."""
    from lm_eval.api.instance import Instance

    from tiny import load

    prompts = ["Once upon a time", "1, 2, 3,", "Hello", "abc", "Water boils at", "def add(a, b):"]

    def generate(engine, until):
        loaded = load(host, engine, TOP1)
        loaded.routing_session.reset()
        requests = []
        for i, p in enumerate(prompts):
            kwargs = {"until": until, "max_gen_toks": 16, "do_sample": False}
            requests.append(Instance("generate_until", {}, (p, kwargs), 0))
            requests[-1].doc_id = i
        texts = loaded.engine.lm(loaded, options={}).generate_until(requests)
        return texts, [(l["tokens"], l["tokens_per_expert"]) for l in loaded.routing_session.telemetry()["layers"]]

    free, _ = generate(None, [])
    stops = sorted({c for text in free for c in text[1:12] if c.isascii() and c.isalnum()})[:4]
    assert stops, free
    ref, ref_layers = generate(None, stops)
    ours, ours_layers = generate("vllm", stops)
    assert ours == ref
    assert len({len(t) for t in ref}) > 1  # the requests stopped at different steps
    assert ours_layers == ref_layers
