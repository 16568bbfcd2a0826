"""What the evaluation's routing telemetry counts (``workers.evaluation.lm``'s module doc): every
token each request feeds the model as if it ran alone, whatever the batching. A loglikelihood
request counts its window ``(context + continuation)[:-1]`` (a context shared by prefix sharing
once per request); a generation request its prompt and its generated tokens but the one it stopped
at. The vLLM engine counts the same tokens (tests/engine_vllm/test_telemetry.py), which is what
lets the report compare the two engines' telemetry layer by layer."""

from __future__ import annotations

import pytest
import torch

from workers.builds.materialize import instantiate
from workers.evaluation.batching import window
from workers.engines.transformers.lm import HarnessLM
from workers.routing.apply import apply

pytestmark = pytest.mark.usefixtures("one_torch_thread")

MOE = {"model_type": "qwen3_moe", "hidden_size": 32, "intermediate_size": 64, "moe_intermediate_size": 16,
       "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16,
       "num_experts": 4, "num_experts_per_tok": 2, "max_position_embeddings": 128}


@pytest.fixture(scope="module")
def moe(eval_tiny_model):
    """A tiny random qwen3_moe with peaky routers (no near-ties) and the byte tokenizer."""
    model = instantiate({"config": dict(MOE), "seed": 3})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("mlp.gate.weight"):
                p.mul_(20)
    return model, eval_tiny_model[1]


def _session(model, tok):
    return apply(model, {"name": "topk", "params": {"k": 1}}, tokenizer=tok)


def _counts(session) -> list[tuple[int, list[int]]]:
    return [(layer["tokens"], layer["tokens_per_expert"]) for layer in session.telemetry()["layers"]]


def _alone(model, rows: list[list[int]]) -> list[tuple[int, list[int]]]:
    """Telemetry of each row run alone through a plain forward (no batch, no padding), summed."""
    session = _session(model, None)
    try:
        with torch.no_grad():
            for row in rows:
                model(input_ids=torch.tensor([row]))
        return _counts(session)
    finally:
        session.restore()


MC = [("Question: what is two plus two? Answer:", [" four", " five", " twenty-two", " 4"]),
      ("The sky on a clear day is", [" blue", " green", " very dark red", " b"]),
      ("Q", [" a long continuation that outgrows its context", " x"])]


@pytest.mark.parametrize("sharing,budget", [(True, 4096), (False, 4096), (True, 48)],
                         ids=["shared", "unshared-padded", "shared-small-batches"])
def test_loglikelihood_counts_each_requests_window_once_whatever_the_batching(moe, sharing, budget):
    model, tok = moe
    lm = HarnessLM(model, tok, prefix_sharing=sharing, max_batch_tokens=budget)
    requests = [(None, lm.tok_encode(ctx), lm.tok_encode(cont)) for ctx, conts in MC for cont in conts]
    windows = [window(ctx, cont, lm.max_length) for _, ctx, cont in requests]
    rows = [list(ctx) + list(cont[:-1]) for ctx, cont in windows]
    expected = _alone(model, rows)
    lm.routing_session = _session(model, tok)
    try:
        lm._loglikelihood_tokens(requests)
        got = _counts(lm.routing_session)
    finally:
        lm.routing_session.restore()
    assert lm.prefix_sharing is sharing
    assert got[0][0] == sum(len(r) for r in rows)  # the definition: each request's window, once per request
    assert got == expected  # per layer, tokens per expert: as if every request ran alone


def test_generation_counts_each_prompt_and_its_tokens_up_to_its_stop(moe):
    """Rows that stop at different steps, in one left-padded batch: a stopped row counts nothing more
    while the batch goes on, and the token it stopped at is not fed back, so not counted."""
    model, tok = moe
    lm = HarnessLM(model, tok, generate_batch_size=8)
    EOS = tok.decode(tok.eos_token_id)
    # stop sequences from the build's own greedy outputs: met early, late, or never (then 12 tokens)
    prompts = ["Once upon a time", "1, 2, 3,", "Hello", "abc", "Water boils at"]
    args = [(p, {"until": ["q", "*", "p"], "max_gen_toks": 12, "do_sample": False}) for p in prompts]
    alone = []
    for a in args:  # each request alone, then all in one batch
        lm.routing_session = _session(model, tok)
        try:
            alone.append(lm._generate([a], EOS)[0])
            alone_counts = _counts(lm.routing_session)
        finally:
            lm.routing_session.restore()
        if a is args[0]:
            total = alone_counts
        else:
            total = [(t + u, [x + y for x, y in zip(e, f)]) for (t, e), (u, f) in zip(total, alone_counts)]
    lm.routing_session = _session(model, tok)
    try:
        batched = lm._generate(args, EOS)
        got = _counts(lm.routing_session)
    finally:
        lm.routing_session.restore()
    assert batched == alone
    assert len({len(t) for t in batched}) > 2  # the rows did stop at different steps
    fed = sum(len(tok(p)["input_ids"]) for p in prompts) + len(prompts) * 11  # every row fed 12 tokens, less the last
    assert got == total and got[0][0] < fed
