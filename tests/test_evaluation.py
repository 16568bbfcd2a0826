"""workers/evaluation: batching plan, the LM's scoring paths, progress/cancel, the job's errors, shards."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from workers.errors import JobCancelled, JobError, Unsupported
from workers.evaluation.batching import (
    Group,
    batch_cost,
    group_requests,
    plan_batches,
    window,
)
from moe_schema.merge import merge_shards, task_metrics

REPO = Path(__file__).resolve().parent.parent

TASKS = REPO / "suites" / "tasks"


# ---- batching (pure python) ---------------------------------------------------------------
def test_window_cuts_like_lm_eval():
    assert window([1, 2, 3], [4, 5], max_length=10) == ((1, 2, 3), (4, 5))
    # ctx + cont longer than max_length + 1: the context loses tokens on the left
    assert window([1, 2, 3, 4, 5], [6, 7], max_length=4) == ((3, 4, 5), (6, 7))
    with pytest.raises(ValueError, match="exceeds max_length"):
        window([1], [2, 3, 4], max_length=2)
    with pytest.raises(ValueError, match="non-empty"):
        window([], [1], max_length=4)


def test_grouping_and_budgeted_batches():
    reqs = [((1, 2, 3), (4,)), ((1, 2, 3), (5, 6)), ((9,), (8, 7, 6)), ((1, 2, 3), (4,))]
    shared = group_requests(reqs, share=True)
    assert [g.members for g in shared] == [[0, 1, 3], [2]]
    # one row: the context, then each continuation but its last token; single tokens add nothing
    assert shared[0].row() == ([1, 2, 3, 5], [0, 0, 0, 2], [[2], [2, 3], [2]])
    assert shared[0].packed() is False and group_requests(reqs[1:2] * 2, share=True)[0].packed()
    assert shared[1].row() == ([9, 8, 7], [0, 1, 1], [[0, 1, 2]])  # lm-eval's own row
    assert [g.members for g in group_requests(reqs, share=False)] == [[0], [1], [2], [3]]
    # a continuation longer than its context stays alone; a packed row stops at max_row tokens
    assert [g.members for g in group_requests([((1,), (2, 3, 4))] * 2, share=True)] == [[0], [1]]
    assert [g.members for g in group_requests(reqs, share=True, max_row=4)] == [[0, 1, 3], [2]]
    assert [g.members for g in group_requests(reqs[1:2] * 3, share=True, max_row=5)] == [[0, 1], [2]]

    groups = [Group((i,) * (i + 1), [i], [(0, 0)]) for i in range(20)]
    batches = plan_batches(groups, max_tokens=40)
    assert sorted(m for b in batches for g in b for m in g.members) == list(range(20))
    for b in batches:
        assert len(b) == 1 or batch_cost(b) <= 40
    # longest first, and a group over the budget still runs, alone
    assert batches[0][0].members == [19] and len(plan_batches(groups, max_tokens=1)) == 20
    with pytest.raises(ValueError, match="max_tokens"):
        plan_batches(groups, max_tokens=0)
    packed = [Group(tuple(range(i, i + 100)), [2 * i, 2 * i + 1], [(1, 2), (3, 4)]) for i in range(10)]
    assert [len(b) for b in plan_batches(packed, 10**6, max_mask_cells=3 * 102 * 102)] == [3, 3, 3, 1]


# ---- the LM on a tiny model -----------------------------------------------------------------
def _reference(model, ctx, cont):
    """Plain full forward of one request, the way lm-eval's hf backend scores it."""
    import torch
    import torch.nn.functional as F

    ctx, cont = window(ctx, cont, model.config.max_position_embeddings)
    inp = torch.tensor([list(ctx) + list(cont[:-1])])
    with torch.no_grad():
        logp = F.log_softmax(model(inp).logits[0, len(ctx) - 1:], dim=-1)
    target = torch.tensor(cont)
    return float(logp.gather(1, target[:, None]).sum()), bool((logp.argmax(-1) == target).all())


@pytest.mark.parametrize("sharing,budget", [(True, 8192), (True, 40), (False, 64)])
def test_loglikelihood_tokens_match_a_plain_forward(eval_tiny_model, sharing, budget):
    from workers.engines.transformers.lm import HarnessLM

    model, tok = eval_tiny_model
    long_ctx = list(range(40, 240))  # 200 tokens: cut to the 128-token window
    reqs = [
        ([1, 2, 3, 4], [5]), ([1, 2, 3, 4], [6]), ([1, 2, 3, 4], [7, 8, 9]), ([1, 2, 3, 4], [10, 11]),
        ([20, 21], [22, 23, 24, 25]), (long_ctx, [1, 2]), (long_ctx, [3]), ([7], [7]),
    ]
    lm = HarnessLM(model, tok, prefix_sharing=sharing, max_batch_tokens=budget)
    got = lm._loglikelihood_tokens([(None, c, k) for c, k in reqs])
    for (ctx, cont), (lp, greedy) in zip(reqs, got):
        ref_lp, ref_greedy = _reference(model, ctx, cont)
        assert abs(lp - ref_lp) < 1e-4 and greedy == ref_greedy, (ctx[:3], cont)
    if sharing:  # one context, four continuations: the context runs once
        lm = HarnessLM(model, tok, max_batch_tokens=budget)
        lm._loglikelihood_tokens([(None, long_ctx[:60], [i, i + 1, i + 2]) for i in range(4)])
        assert lm.stats["tokens"] == 60 + 4 * 2


def test_progress_is_reported_and_cancel_stops_between_batches(eval_tiny_model):
    from workers.engines.transformers.lm import HarnessLM

    model, tok = eval_tiny_model
    reqs = [(None, [i + 1, i + 2, i + 3], [i + 4, i + 5]) for i in range(12)]
    seen = []
    lm = HarnessLM(model, tok, progress=lambda *a: seen.append(a), max_batch_tokens=8)
    lm._loglikelihood_tokens(reqs)
    assert seen[0] == (0, 12, "loglikelihood") and seen[-1] == (12, 12, "loglikelihood")
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen) and len(seen) > 3

    stop = threading.Event()
    calls = []

    def progress(done, total, note):
        calls.append(done)
        if done >= 4:
            stop.set()

    lm = HarnessLM(model, tok, progress=progress, cancelled=stop, max_batch_tokens=8)
    with pytest.raises(JobCancelled, match="cancelled after"):
        lm._loglikelihood_tokens(reqs)
    assert max(calls) < 12


def test_lm_requests_match_hf_backend_including_generation(eval_tiny_model):
    """Direct lm-eval Instances (empty context, spaces, rolling, generation) against HFLM on the same objects."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from workers.engines.transformers.lm import HarnessLM

    model, tok = eval_tiny_model
    hf = HFLM(pretrained=model, tokenizer=tok, batch_size=4)
    ours = HarnessLM(model, tok, max_batch_tokens=64)
    ll = [("", "hello"), ("The cat ", "sat"), ("The cat", " sat on"), ("x" * 300, " y")]
    ll = [Instance("loglikelihood", {}, a, i) for i, a in enumerate(ll)]
    for (a, ga), (b, gb) in zip(ours.loglikelihood(ll), hf.loglikelihood(ll)):
        assert abs(a - b) < 1e-4 and ga == gb
    rolling = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(["short", "long text " * 40])]
    for a, b in zip(ours.loglikelihood_rolling(rolling), hf.loglikelihood_rolling(rolling)):
        assert abs(a - b) <= 1e-4
    gen = [Instance("generate_until", {}, (p, {"until": ["\n"], "max_gen_toks": 6, "do_sample": False}), i)
           for i, p in enumerate(["Once upon", "A", "1, 2, 3,"])]
    assert ours.generate_until(gen) == hf.generate_until(gen)
    assert ours.n_requests == len(ll) + len(rolling) + len(gen)


def test_non_causal_routing_refuses_generation_and_disables_sharing(eval_tiny_model):
    from lm_eval.api.instance import Instance

    from workers.engines.transformers.lm import HarnessLM

    from transformers import OlmoeConfig, OlmoeForCausalLM

    from workers.routing.apply import apply

    model, tok = eval_tiny_model
    moe = OlmoeForCausalLM(OlmoeConfig(vocab_size=model.config.vocab_size, hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1, intermediate_size=8,
                                       num_experts=4, num_experts_per_tok=2)).eval()
    session = apply(moe, {"name": "expert_choice", "params": {"capacity_factor": 2.0}})
    lm = HarnessLM(moe, tok, routing_session=session)
    assert lm.prefix_sharing is False
    # the message names the strategy by the session's label (it once read a `name` no session has: '?')
    with pytest.raises(Unsupported, match=r"routing strategy expert_choice\(capacity_factor=2.0\) is not causal.*"
                                          r"cannot be used for generation"):
        lm.generate_until([Instance("generate_until", {}, ("hi", {"until": ["\n"]}), 0)])
    assert HarnessLM(model, tok, routing_session=object()).prefix_sharing is True  # no attribute: causal


# ---- the evaluate job -----------------------------------------------------------------------
def _loaded(eval_tiny_model, session=None):
    model, tok = eval_tiny_model
    return SimpleNamespace(model=model, tokenizer=tok, path=None, variant=None, routing_session=session)


def _job(name, limit=None, **extra):
    return {"kind": "evaluate", "task": {"name": name, "path": str(TASKS / f"{name}.yaml"), "limit": limit,
                                         "num_fewshot": None}, "seed": 0, **extra}


@pytest.mark.parametrize("change,message", [
    ({"task": {"name": "smoke_mcq", "path": str(TASKS / "smoke_mc.yaml"), "limit": 1, "num_fewshot": 0}},
     "job.task.name: unknown task 'smoke_mcq'.*did you mean 'smoke_mc'"),
    ({"task": {"name": "smoke_mc", "path": "suites/tasks/smoke_mc.yaml", "limit": 1, "num_fewshot": 0}},
     "job.task.path: expected an absolute yaml path"),
    ({"task": {"name": "smoke_mc", "path": "/nonexistent/x.yaml", "limit": 1, "num_fewshot": 0}},
     "job.task.path: no such file"),
    ({"task": {"name": "smoke_mc", "path": None, "limit": -1, "num_fewshot": 0}}, "job.task.limit"),
    ({"task": {"name": "smoke_mc", "path": None, "limit": 1, "fewshot": 0}},
     r"job\.task\.fewshot: unknown key \(did you mean 'num_fewshot'\?\)"),
    ({"eval": {"max_batch_tokens": "big"}}, "job.eval.max_batch_tokens: expected int"),
    ({"eval": {"batch": 3}}, "job.eval.batch: unknown key"),
    ({"shard": {"index": 3, "count": 3}}, "job.shard: need 0 <= index < count"),
    ({"seed": "zero"}, "job.seed"),
])
def test_job_rejects_bad_input_with_a_named_field(eval_tiny_model, change, message):
    from workers.evaluation.job import run

    job = {**_job("smoke_mc", limit=2), **change}
    with pytest.raises(JobError, match=message) as info:
        run(job, _loaded(eval_tiny_model), lambda *a: None, threading.Event())
    assert info.value.code == -32602 and "\n" not in info.value.message


@pytest.mark.parametrize("name,limit", [("smoke_mc", 30), ("smoke_ppl", 12)])
def test_shards_merge_to_the_unsplit_result(eval_tiny_model, name, limit):
    from workers.evaluation.job import run

    loaded = _loaded(eval_tiny_model, SimpleNamespace(causal=True, telemetry=lambda: {"layers": [], "summary": {}}))
    whole = run(_job(name, limit), loaded, lambda *a: None, threading.Event())
    shards = [run(_job(name, limit, shard={"index": i, "count": 3}), loaded, lambda *a: None, threading.Event())
              for i in (2, 0, 1)]
    assert [len(s["samples"][name]) for s in shards] == [limit // 3] * 3
    assert sum(s["n_requests"] for s in shards) == whole["n_requests"]
    merged = merge_shards(shards)
    assert [s["doc_id"] for s in merged["samples"][name]] == list(range(limit))
    for key, value in whole["metrics"][name].items():
        if value is None or merged["metrics"][name][key] is None:
            continue
        assert math.isclose(merged["metrics"][name][key], value, rel_tol=1e-6), key
    assert whole["routing"] == {"layers": [], "summary": {}} and len(merged["routing_shards"]) == 3
    if name == "smoke_mc":
        assert merged["metrics"][name]["acc"] == whole["metrics"][name]["acc"]
        assert merged["metrics"][name]["acc_stderr"] == pytest.approx(whole["metrics"][name]["acc_stderr"])


# ---- merge (torch-free) -----------------------------------------------------------------------
def test_merge_errors_and_aggregations():
    agg = {"acc": "mean", "bits_per_byte": "bits_per_byte"}
    a = {"samples": {"t": [{"doc_id": 0, "acc": 1.0, "bits_per_byte": [-2.0, 4]}]}, "aggregations": {"t": agg}}
    b = {"samples": {"t": [{"doc_id": 1, "acc": 0.0, "bits_per_byte": [-6.0, 4]}]}, "aggregations": {"t": agg}}
    m = merge_shards([b, a])["metrics"]["t"]
    assert m["acc"] == 0.5 and m["bits_per_byte"] == pytest.approx(1.0 / math.log(2))
    assert m["acc_stderr"] == pytest.approx(0.5) and m["bits_per_byte_stderr"] is None
    with pytest.raises(ValueError, match="doc_id 0 is in results"):
        merge_shards([a, a])
    with pytest.raises(ValueError, match="no shard results"):
        merge_shards([])
    with pytest.raises(ValueError, match=r"results\[1\] has no 'samples'"):
        merge_shards([a, {"metrics": {}}])
    with pytest.raises(ValueError, match="aggregation 'f1'"):
        task_metrics([{"doc_id": 0, "f": 1}], {"f": "f1"})


def test_merge_module_imports_no_torch_or_lm_eval():
    code = ("import sys; import moe_schema.merge, workers.evaluation.batching; "
            "bad = [m for m in ('torch', 'lm_eval', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_a_requests_loglikelihood_is_summed_in_float64():
    """A long window's per-token log-probs summed in float32 round by ~1e-4 nats, as much as the
    engine-parity tolerance: the harness sums them in float64, as vLLM's per-token answers are summed."""
    import torch

    from workers.engines.transformers.lm import HarnessLM

    g = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(600, 260, generator=g), dim=-1)  # float32, as a float32 model's
    cont = torch.randint(0, 260, (600,), generator=g).tolist()
    exact = math.fsum(float(logp[i, c]) for i, c in enumerate(cont))
    total, _ = HarnessLM._answer(None, logp, cont)
    assert abs(total - exact) < 1e-9
    assert abs(float(logp.gather(1, torch.tensor(cont)[:, None]).sum()) - exact) > 1e-6  # what float32 would do


def test_a_nan_metric_fails_the_evaluate_job_naming_task_and_metric(eval_tiny_model):
    """A model whose outputs are NaN (trained on a diverged loss) fails its evaluation in one line
    naming the task and the metric; the same task on the finite model is a result."""
    import copy

    import torch

    from moe_schema import protocol
    from workers.evaluation.job import run

    model, tok = eval_tiny_model
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.lm_head.weight.fill_(float("nan"))
    with pytest.raises(JobError) as err:
        run(_job("smoke_ppl", limit=2), _loaded((broken, tok)), lambda *a: None, threading.Event())
    assert err.value.code == protocol.JOB_FAILED and "\n" not in err.value.message
    assert err.value.message.startswith("smoke_ppl: metric ") and " is nan: " in err.value.message
    fine = run(_job("smoke_ppl", limit=2), _loaded(eval_tiny_model), lambda *a: None, threading.Event())
    assert all(math.isfinite(v) for k, v in fine["metrics"]["smoke_ppl"].items() if isinstance(v, float))
