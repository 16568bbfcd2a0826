"""Issue 7's speed-up, checked on a measure that CPU contention cannot blur: forward tokens.

On smoke_mc with few-shot contexts shared by 4 choices, the harness's LM must run at most half
the tokens lm-eval's hf backend runs for the same requests (wall-clock numbers:
benchmarks/eval_speed.py), and give the same answers.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

TASKS = Path(__file__).resolve().parent.parent / "suites" / "tasks"


def test_shared_contexts_halve_the_forward_tokens(eval_tiny_model):
    from lm_eval.models.huggingface import HFLM

    from workers.evaluation.job import run

    model, tok = eval_tiny_model
    hf = HFLM(pretrained=model, tokenizer=tok, batch_size=8)
    counted = {"tokens": 0}
    call = hf._model_call

    def counting_call(inps, *a, **kw):
        counted["tokens"] += inps.numel()
        return call(inps, *a, **kw)

    hf._model_call = counting_call
    import lm_eval

    from workers.evaluation.job import task_manager

    ref = lm_eval.simple_evaluate(model=hf, tasks=["smoke_mc"], task_manager=task_manager(str(TASKS)),
                                  limit=20, num_fewshot=2, bootstrap_iters=0)
    job = {"kind": "evaluate", "seed": 1234, "task": {"name": "smoke_mc", "path": str(TASKS / "smoke_mc.yaml"),
                                                      "limit": 20, "num_fewshot": 2}}
    loaded = SimpleNamespace(model=model, tokenizer=tok, path=None, variant=None, routing_session=None)
    ours = run(job, loaded, lambda *a: None, threading.Event())
    assert ours["eval"]["tokens"] * 2 <= counted["tokens"], (ours["eval"]["tokens"], counted["tokens"])
    assert ours["metrics"]["smoke_mc"]["acc"] == ref["results"]["smoke_mc"]["acc,none"]

    off = run({**job, "eval": {"prefix_sharing": False}}, loaded, lambda *a: None, threading.Event())
    assert off["eval"]["prefix_sharing"] is False and off["eval"]["tokens"] > 2 * ours["eval"]["tokens"]
    for a, b in zip(off["samples"]["smoke_mc"], ours["samples"]["smoke_mc"]):
        assert max(abs(x - y) for x, y in zip(a["loglikelihoods"], b["loglikelihoods"])) < 1e-4
