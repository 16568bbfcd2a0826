"""The evaluate job against lm-eval's own ``hf`` backend on the same saved build: same metrics,
every per-request log-likelihood (multiple-choice and rolling) within 1e-4.

The job runs with its optimisations on (prefix sharing, token-budget batching, logits_to_keep);
smoke_mc with 3 shots overflows the build's 128-token window, so left truncation is covered too.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

TASKS = Path(__file__).resolve().parent.parent / "suites" / "tasks"
CASES = [("smoke_mc", 0, 50), ("smoke_mc", 3, 40), ("smoke_ppl", None, 20)]


def _hf(checkpoint, name, fewshot, limit):
    import lm_eval

    from workers.evaluation.job import task_manager

    return lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(checkpoint), "dtype": "float32", "device": "cpu"},
        tasks=[name], task_manager=task_manager(str(TASKS)), limit=limit, num_fewshot=fewshot,
        batch_size=8, log_samples=True, bootstrap_iters=100,
        random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0,
    )


def _ours(model, tok, name, fewshot, limit, **eval_options):
    from workers.evaluation.job import run

    job = {"kind": "evaluate", "seed": 0, "eval": eval_options,
           "task": {"name": name, "path": str(TASKS / f"{name}.yaml"), "limit": limit, "num_fewshot": fewshot}}
    loaded = SimpleNamespace(model=model, tokenizer=tok, path=None, variant=None, routing_session=None)
    return run(job, loaded, lambda *a: None, threading.Event())


@pytest.mark.parametrize("name,fewshot,limit", CASES)
def test_job_matches_lm_eval_hf_backend(eval_tiny_checkpoint, eval_tiny_model, name, fewshot, limit):
    from workers.evaluation.job import _samples

    model, tok = eval_tiny_model
    ref = _hf(eval_tiny_checkpoint, name, fewshot, limit)
    ours = _ours(model, tok, name, fewshot, limit, max_batch_tokens=512)

    ref_samples = _samples(ref["samples"][name])
    got = ours["samples"][name]
    assert [s["doc_id"] for s in got] == [s["doc_id"] for s in ref_samples] == list(range(limit))
    rolling = name == "smoke_ppl"
    worst = 0.0
    for a, b in zip(got, ref_samples):
        assert len(a["loglikelihoods"]) == len(b["loglikelihoods"]) == (1 if rolling else 4)
        for x, y in zip(a["loglikelihoods"], b["loglikelihoods"]):
            worst = max(worst, abs(x - y))
            assert abs(x - y) <= 1e-4, (a["doc_id"], x, y)
        if not rolling:
            assert (a["acc"], a["acc_norm"]) == (b["acc"], b["acc_norm"]), a["doc_id"]
    print(f"{name} {fewshot}-shot: largest |loglikelihood difference| {worst:.2e}")

    for key, value in ref["results"][name].items():
        if "," not in key or value == "N/A":
            continue
        metric = key.split(",")[0]
        if rolling:
            assert math.isclose(ours["metrics"][name][metric], value, rel_tol=1e-5), metric
        else:
            assert ours["metrics"][name][metric] == pytest.approx(value, abs=1e-12), metric
    assert ours["n_requests"] == (limit if rolling else 4 * limit)


# ---- held-out bits per byte on a trained checkpoint (issue 19) --------------------------------
HELDOUT_JOB = {
    "kind": "train",
    "variant": {"name": "parity-moe", "model": "parity-moe", "routing": None,
                "build": {"config": {"model_type": "olmoe", "hidden_size": 32, "intermediate_size": 32,
                                     "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                     "num_experts": 4, "num_experts_per_tok": 2, "max_position_embeddings": 256},
                          "seed": 0}},
    "corpus": {"kind": "knowledge", "entities": 60, "tokens": 30_000, "eval_per_bucket": 2, "heldout_docs": 12},
    "train": {"tokens": 40 * 8 * 64, "batch_size": 8, "seq_len": 64, "warmup_steps": 4, "heldout_points": 3,
              "heldout_docs": 4},
    "seed": 0,
}


@pytest.fixture(scope="module")
def heldout_trained(tmp_path_factory, train_in_process):
    """A saved trained MoE checkpoint (40 steps, a few seconds) and its train result."""
    return train_in_process(HELDOUT_JOB, tmp_path_factory.mktemp("parity_home"))


def test_heldout_bits_per_byte_match_lm_eval_hf_backend_on_a_trained_checkpoint(heldout_trained, heldout_matches_hf):
    """longtail_heldout_seen / _unseen through the evaluate job equal lm-eval's `hf` backend on the
    same saved trained checkpoint: every document's log-likelihood and the task's bits per byte."""
    ours = heldout_matches_hf(heldout_trained, docs=12)
    for name in ("longtail_heldout_seen", "longtail_heldout_unseen"):
        assert 0 < ours["metrics"][name]["bits_per_byte"] < 8  # trained: far below the 8 bits per byte of a uniform guess
    assert "longtail_heldout_seen" in ours["task_regime"]  # the corpus's regime came with the result
