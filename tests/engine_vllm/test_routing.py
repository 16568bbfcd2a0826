"""Routing strategies on vLLM run the same rule as on transformers: the same prompt under top-1,
random or hash routing gives the same log-probabilities and the same experts per layer on both
engines, and differs from native routing."""

from __future__ import annotations

import pytest
import torch
from tiny import load

PROMPT = [1] + list(b"Mixture-of-experts models route each token to a few experts.")


def _vllm_prompt_logprobs(loaded, ids):
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    out = loaded.handle.llm.generate([TokensPrompt(prompt_token_ids=ids)],
                                     SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0), use_tqdm=False)
    return torch.tensor([out[0].prompt_logprobs[i][t].logprob for i, t in enumerate(ids) if i > 0])


def _hf_prompt_logprobs(loaded, ids):
    with torch.no_grad():
        logits = loaded.model(input_ids=torch.tensor([ids])).logits[0, :-1]
    return torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(ids[1:])[:, None])[:, 0]


def _run(host, engine, routing):
    loaded = load(host, engine, routing)
    loaded.routing_session.reset()
    lp = (_vllm_prompt_logprobs if engine == "vllm" else _hf_prompt_logprobs)(loaded, PROMPT)
    return lp, loaded.routing_session.telemetry()


@pytest.mark.parametrize("routing", [{"name": "topk", "params": {"k": 1}},
                                     {"name": "random", "params": {"k": 2, "seed": 7}},
                                     {"name": "random", "params": {"k": 1, "seed": 7, "keyed": True}},
                                     {"name": "hash", "params": {"k": 1}},
                                     {"name": "topp", "params": {"p": 0.3}}], ids=lambda r: r["name"] + ("-keyed" if r["params"].get("keyed") else ""))
def test_a_strategy_changes_both_engines_outputs_the_same_way(host, routing):
    native, _ = _run(host, None, None)
    hf, hf_t = _run(host, None, routing)
    ours, ours_t = _run(host, "vllm", routing)
    assert (hf - native).abs().max() > 1e-3  # the strategy changes the outputs
    assert (ours - hf).abs().max() <= 1e-4  # and vLLM's change is transformers'
    assert [l["tokens_per_expert"] for l in ours_t["layers"]] == [l["tokens_per_expert"] for l in hf_t["layers"]]
    assert [l["layer"] for l in ours_t["layers"]] == [l["layer"] for l in hf_t["layers"]]
    assert ours_t["strategy"] == hf_t["strategy"]


def test_native_routing_on_vllm_records_telemetry_in_the_transformers_shape(host):
    _, ours = _run(host, "vllm", None)
    _, ref = _run(host, None, None)
    assert ours == ref
    assert ours["layers"][0]["tokens"] == len(PROMPT)


def test_prune_calibrates_through_vllm_and_removes_the_same_experts(host):
    routing = {"name": "prune", "params": {"keep": 2}}
    hf = load(host, None, routing).routing_session.strategy
    ours = load(host, "vllm", routing).routing_session.strategy
    assert [ours.removed(i) for i in range(2)] == [hf.removed(i) for i in range(2)]
