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
