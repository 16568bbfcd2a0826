"""`engine:` per model in a suite: the variants it makes, their names and job keys, what is refused
when the suite is read (one line naming the place and the variant, exit 2), and what local daemons
cannot host. No vLLM needed: this is the coordinator's side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import plan as planner
from harness.pairs import match_pairs
from harness.suite import parse
from moe_schema.check import SchemaError
from moe_schema.variant import check_variant

REPO = Path(__file__).resolve().parent.parent
VERSIONS = {"moe-harness": "0", "result_schema": "1", "torch": "t", "transformers": "x", "lm_eval": "l"}
MOE = {"model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 2,
       "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 32, "num_experts": 4,
       "num_experts_per_tok": 2, "moe_intermediate_size": 32}


def suite(models=None, **extra):
    return parse({"name": "eng", "models": models or [
        {"name": "moe", "config": MOE, "routing": ["native", {"name": "topk", "k": 1}],
         "engine": ["transformers", "vllm"]},
        {"name": "dense", "derive": {"from": "moe", "match": "active"}, "engine": ["transformers", "vllm"]},
    ], "tasks": [], **extra})


def refused(models) -> str:
    with pytest.raises(SchemaError) as exc:
        suite(models)
    return str(exc.value)


def test_each_engine_is_a_variant_and_transformers_names_stay():
    vs, jobs = planner.expand(suite(), VERSIONS)
    assert [v["name"] for v in vs] == ["moe", "moe[vllm]", "moe@topk(k=1)", "moe@topk(k=1)[vllm]",
                                       "dense", "dense[vllm]"]
    assert [("engine" in v) for v in vs] == [False, True, False, True, False, True]
    for v in vs:
        check_variant(v)  # the worker's check passes every variant the planner makes
    assert vs[1]["engine"] == {"name": "vllm", "params": {"tensor_parallel_size": 1, "kv_cache_bytes": None,
                                                          "max_model_len": None}}


def test_job_keys_differ_by_engine_and_transformers_keys_are_as_without_engines():
    _, with_engines = planner.expand(suite(), VERSIONS)
    plain = [{**m, "engine": "transformers"} for m in [
        {"name": "moe", "config": MOE, "routing": ["native", {"name": "topk", "k": 1}]},
        {"name": "dense", "derive": {"from": "moe", "match": "active"}}]]
    _, without = planner.expand(suite(plain), VERSIONS)
    _, bare = planner.expand(suite([{k: v for k, v in m.items() if k != "engine"} for m in plain]), VERSIONS)
    assert [j.key for j in without] == [j.key for j in bare]
    keys = {(j.kind, j.variant): j.key for j in with_engines}
    assert {k: v for k, v in keys.items() if "[vllm]" not in k[1]} == {(j.kind, j.variant): j.key for j in bare}
    assert keys[("describe", "moe[vllm]")] != keys[("describe", "moe")]
    assert len(set(keys.values())) == len(keys)
    by_name = {j.variant: j for j in with_engines}
    assert by_name["moe[vllm]"].affinity != by_name["moe"].affinity  # another loaded model


def test_an_engine_with_parameters_shows_them_in_the_name():
    s = suite([{"name": "moe", "config": MOE, "engine": {"name": "vllm", "kv_cache_bytes": "64MiB",
                                                        "max_model_len": 256}}])
    vs, _ = planner.expand(s, VERSIONS)
    assert [v["name"] for v in vs] == ["moe[vllm,kv_cache_bytes=67108864,max_model_len=256]"]


def test_pairs_form_within_one_engine():
    params = {"moe": {"total": 200, "active": 100}, "moe[vllm]": {"total": 200, "active": 100},
              "dense": {"total": 100, "active": 100}, "dense[vllm]": {"total": 100, "active": 100}}
    is_moe = {n: n.startswith("moe") for n in params}
    pairs = {(p.moe, p.dense) for p in match_pairs(params, is_moe)}
    assert pairs == {("moe", "dense"), ("moe[vllm]", "dense[vllm]")}


def test_a_trained_build_on_two_engines_is_trained_once():
    s = suite([{"name": "moe", "config": MOE, "engine": ["transformers", "vllm"]}],
              corpus={"kind": "knowledge", "entities": 20, "tokens": 2000, "eval_per_bucket": 2},
              train={"tokens": 1024, "batch_size": 2, "seq_len": 16})
    vs, jobs = planner.expand(s, VERSIONS)
    train = [j for j in jobs if j.kind == "train"]
    assert len(train) == 1 and "engine" not in train[0].spec["variant"]
    assert {v["name"]: v["build"] for v in vs} == {"moe": {"trained": vs[0]["build"]["trained"]},
                                                   "moe[vllm]": {"trained": vs[0]["build"]["trained"]}}
    assert {j.after for j in jobs if j.kind != "train"} == {train[0].key}


@pytest.mark.parametrize("models, message", [
    ([{"name": "moe", "config": MOE, "routing": ["native", "expert_choice"], "engine": ["transformers", "vllm"]}],
     "models[0].routing[1]: expert_choice cannot run on engine vllm (variant moe@expert_choice[vllm]): its rule "
     "reads every token of the batch at once (a token's experts depend on the others), and vLLM calls a routing "
     "function with one step's router logits alone, in batches it schedules itself"),
    ([{"name": "moe", "config": MOE, "routing": [{"name": "capacity", "capacity_factor": 1.25}], "engine": "vllm"}],
     "models[0].routing[0]: capacity cannot run on engine vllm (variant moe@capacity(capacity_factor=1.25)[vllm]): "
     "its rule reads every token of the batch at once (a token's experts depend on the others), and vLLM calls "
     "a routing function with one step's router logits alone, in batches it schedules itself"),
    ([{"name": "tiny", "config": {**MOE, "head_dim": 16}, "engine": ["transformers", "vllm"]}],
     "models[0].engine[1]: tiny[vllm] cannot run on engine vllm: attention head size 16 is not one vLLM's CPU "
     "attention takes (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)"),
    ([{"name": "moe", "config": MOE, "engine": "sglang"}],
     "models[0].engine: unknown engine 'sglang'; known: llamacpp, transformers, vllm"),
    ([{"name": "moe", "config": MOE, "engine": {"name": "vllm", "tensor_parallel_size": 0}}],
     "models[0].engine.tensor_parallel_size: must be an integer >= 1, got 0"),
    ([{"name": "moe", "config": MOE, "engine": {"name": "vllm", "kv_cache": "1GiB"}}],
     "models[0].engine.kv_cache: unknown key (did you mean 'kv_cache_bytes'?); known: tensor_parallel_size, "
     "kv_cache_bytes, max_model_len"),
])
def test_what_an_engine_cannot_run_is_refused_when_the_suite_is_read(models, message):
    assert refused(models) == message


def test_a_local_checkpoint_of_a_family_vllm_lacks_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    assert refused([{"name": "gpt", "checkpoint": str(tmp_path), "engine": "vllm"}]) == (
        "models[0].engine: gpt[vllm] cannot run on engine vllm: vLLM 0.32 has no model class for family 'gpt2'; "
        "it loads llama, qwen3, granite, olmo, olmoe, mixtral, granitemoe, qwen2_moe, qwen3_moe, deepseek_v3")


def test_what_local_daemons_cannot_host():
    s = suite([{"name": "moe", "config": MOE, "engine": ["transformers", {"name": "vllm", "tensor_parallel_size": 2}]}])
    vs, _ = planner.expand(s, VERSIONS)
    assert planner.local_engine_refusals(vs, "cpu", installed=lambda name: False) == [
        "moe[vllm,tensor_parallel_size=2]: engine vllm is not installed in this Python, where the local daemons run "
        "(python workers/engines/vllm/install.py, from the repository root), and no --workers name one that has it"]
    assert planner.local_engine_refusals(vs, "cpu", installed=lambda name: True) == [
        "moe[vllm,tensor_parallel_size=2]: tensor_parallel_size 2 needs 2 devices; a CPU worker hosts a build on "
        "one (tensor_parallel_size 1)"]
    assert planner.local_engine_refusals(vs, "cuda:0", installed=lambda name: True) == []


def test_harness_run_refuses_with_exit_2_and_leaves_nothing(tmp_path):
    """The CLI as a user runs it: one line, exit 2, no run folder (the suite's head size is refused)."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"name": "bad", "models": [
        {"name": "moe", "config": MOE, "routing": ["expert_choice"], "engine": "vllm"}], "tasks": []}))
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(bad), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "harness: models[0].routing[0]: expert_choice cannot run on engine vllm (variant moe@expert_choice[vllm]): "
        "its rule reads every token of the batch at once (a token's experts depend on the others), and vLLM "
        "calls a routing function with one step's router logits alone, in batches it schedules itself"]
    assert not out.exists()
