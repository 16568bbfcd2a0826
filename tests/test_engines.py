"""moe_schema.engines and the routing strategies' engines: the one check of a variant's engine, the
suite's forms of it, and what vLLM can host, on both sides (no vLLM needed)."""

from __future__ import annotations

import pytest

from moe_schema import engines
from moe_schema.check import SchemaError
from moe_schema.hashing import model_key
from moe_schema.routing import BATCH, ROUTING, STATE, TOKEN
from moe_schema.variant import check_variant

OK_MOE = {"model_type": "qwen3_moe", "hidden_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2,
          "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64, "intermediate_size": 128}


def test_missing_engine_is_transformers_and_vllm_fills_its_defaults():
    assert engines.check_engine("variant.engine", None) == {"name": "transformers", "params": {}}
    assert engines.check_engine("variant.engine", {"name": "vllm"}) == {
        "name": "vllm", "params": {"tensor_parallel_size": 1, "kv_cache_bytes": None, "max_model_len": None}}


@pytest.mark.parametrize("data, message", [
    ({"name": "vlm"}, "variant.engine.name: unknown engine 'vlm' (did you mean 'vllm'?); known: llamacpp, transformers, vllm"),
    ({"name": "vllm", "params": {"tensor_parallel_size": 0}},
     "variant.engine.params.tensor_parallel_size: must be an integer >= 1, got 0"),
    ({"name": "vllm", "params": {"kv_cache_byte": 5}},
     "variant.engine.params.kv_cache_byte: unknown key (did you mean 'kv_cache_bytes'?); "
     "known: tensor_parallel_size, kv_cache_bytes, max_model_len"),
    ({"name": "vllm", "params": {"max_model_len": "long"}},
     "variant.engine.params.max_model_len: expected int or null, got 'long'"),
    ({"name": "transformers", "params": {"tensor_parallel_size": 2}},
     "variant.engine.params.tensor_parallel_size: unknown key; known: "),
    ({"params": {}}, "variant.engine: missing 'name'"),
    ("vllm", "variant.engine: expected a map with an engine 'name' and its 'params', got 'vllm'"),
])
def test_a_bad_engine_entry_is_one_line_at_its_path(data, message):
    with pytest.raises(SchemaError) as exc:
        engines.check_engine("variant.engine", data)
    assert str(exc.value) == message


def test_the_suite_forms():
    one = engines.suite_engines("models[0].engine", "vllm")
    assert [e["name"] for e in one] == ["vllm"]
    both = engines.suite_engines("models[0].engine", ["transformers", {"name": "vllm", "kv_cache_bytes": "1GiB",
                                                                       "tensor_parallel_size": 2}])
    assert both[1]["params"] == {"tensor_parallel_size": 2, "kv_cache_bytes": 2**30, "max_model_len": None}
    assert engines.suite_engines("models[0].engine", None) == ({"name": "transformers", "params": {}},)
    assert engines.size_bytes("x", "512 MiB") == 512 * 2**20 and engines.size_bytes("x", "2GB") == 2 * 10**9
    with pytest.raises(SchemaError, match=r"^models\[0\].engine: engine 'vllm' listed twice"):
        engines.suite_engines("models[0].engine", ["vllm", {"name": "vllm"}])
    with pytest.raises(SchemaError, match=r"^models\[0\].engine\[1\].kv_cache_bytes: expected a byte count"):
        engines.suite_engines("models[0].engine", ["transformers", {"name": "vllm", "kv_cache_bytes": "lots"}])
    with pytest.raises(SchemaError, match=r"^models\[0\].engine: empty"):
        engines.suite_engines("models[0].engine", [])


def test_labels_leave_transformers_names_alone():
    assert engines.label({"name": "transformers", "params": {}}) == ""
    assert engines.label(engines.engine_spec("vllm")) == "[vllm]"
    assert engines.label(engines.engine_spec("vllm", {"tensor_parallel_size": 2})) == "[vllm,tensor_parallel_size=2]"


def vllm_refusal(config, dtype):
    return engines.get("vllm").build_refusal(config, dtype)


def cpu_refusal(engine):
    refused = engines.refusal(engine, config=None, dtype="float32", device="cpu")
    return refused.why if refused else None


def test_what_vllm_hosts_on_cpu():
    assert vllm_refusal(OK_MOE, "float32") is None
    head16 = {**OK_MOE, "hidden_size": 64}
    assert vllm_refusal(head16, "float32") == (
        "attention head size 16 is not one vLLM's CPU attention takes "
        "(32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)")
    assert vllm_refusal({**head16, "head_dim": 32}, "float32") is None  # an explicit head_dim wins
    assert "dtype float64" in vllm_refusal(OK_MOE, "float64")
    assert "no model class for family 'gpt2'" in vllm_refusal({"model_type": "gpt2"}, "float32")
    assert vllm_refusal(None, "float32") is None  # a hub checkpoint: known on the worker
    mla = {"model_type": "deepseek_v3", "hidden_size": 128, "num_attention_heads": 4, "kv_lora_rank": 64}
    assert "latent attention head size 128" in vllm_refusal(mla, "float32")
    assert cpu_refusal(engines.engine_spec("vllm", {"tensor_parallel_size": 2})).startswith(
        "tensor_parallel_size 2 needs 2 devices")
    assert cpu_refusal(engines.engine_spec("vllm")) is None


def test_every_strategy_states_what_its_rule_needs_and_engines_decide_from_it():
    """One fact per strategy (TOKEN / BATCH / STATE); vLLM runs TOKEN rules only, transformers all."""
    assert {name: ROUTING.get(name).needs for name in ROUTING.names()} == {
        "native": TOKEN, "topk": TOKEN, "topp": TOKEN, "random": TOKEN, "hash": TOKEN, "prune": TOKEN,
        "capacity": BATCH, "expert_choice": BATCH, "aux_free": STATE}
    vllm, transformers = engines.get("vllm"), engines.get("transformers")
    for name in ROUTING.names():
        cls = ROUTING.get(name)
        assert transformers.routing_refusal(cls.__new__(cls)) is None
        assert (vllm.routing_refusal(cls.__new__(cls)) is None) == (cls.needs == TOKEN), name
    ec = ROUTING.get("expert_choice")()
    assert vllm.routing_refusal(ec) == (
        "its rule reads every token of the batch at once (a token's experts depend on the others), and vLLM "
        "calls a routing function with one step's router logits alone, in batches it schedules itself")
    assert vllm.routing_refusal(ROUTING.get("aux_free")()).startswith("its rule reads learned state saved beside")


def test_the_worker_refuses_what_the_suite_refuses():
    base = {"name": "moe[vllm]", "build": {"config": OK_MOE, "seed": 0}, "engine": {"name": "vllm"}}
    assert check_variant(base)["engine"]["params"]["tensor_parallel_size"] == 1
    with pytest.raises(SchemaError) as exc:
        check_variant({**base, "routing": {"name": "expert_choice", "params": {}}})
    assert str(exc.value).startswith("variant.routing: expert_choice cannot run on engine vllm: its rule reads "
                                     "every token of the batch")
    with pytest.raises(SchemaError) as exc:
        check_variant({**base, "build": {"config": {**OK_MOE, "hidden_size": 64}, "seed": 0}})
    assert str(exc.value).startswith("variant.engine: moe[vllm] cannot run on engine vllm: attention head size 16")
    assert check_variant({**base, "engine": None})["engine"] == {"name": "transformers", "params": {}}


def test_an_engine_is_part_of_the_model_key_but_transformers_keys_stay():
    v = {"build": {"config": OK_MOE, "seed": 0}, "dtype": "float32", "trust_remote_code": False,
         "experts_implementation": None}
    plain = model_key(v)
    assert model_key({**v, "engine": {"name": "transformers", "params": {}}}) == plain
    vllm = model_key({**v, "engine": engines.engine_spec("vllm")})
    assert vllm != plain
    assert model_key({**v, "engine": engines.engine_spec("vllm", {"kv_cache_bytes": 2**30})}) != vllm


def test_a_result_says_which_engine_ran_it_and_old_results_stay_valid():
    from moe_schema.result import check_result

    base = {"params": {"total": 10, "active": 5}}
    assert check_result(base, "describe") is base  # stored before engines: transformers
    check_result({**base, "engine": {"name": "vllm", "version": "0.32.0"}}, "describe")
    for engine, message in [
        ({"name": "vllm"}, "result.engine: missing 'version'"),
        ({"name": "sglang", "version": "1"}, "result.engine.name: unknown engine 'sglang'"),
        ({"name": "vllm", "version": 32}, "result.engine.version: expected a version string, got int 32"),
        ({"name": "vllm", "version": "1", "pid": 3}, "result.engine.pid: unknown key"),
    ]:
        with pytest.raises(SchemaError) as exc:
            check_result({**base, "engine": engine}, "describe")
        assert str(exc.value).startswith(message)


#: keys and model keys (affinity) of suites/smoke.yaml and suites/engines.yaml jobs, recorded before
#: engines became plugins: a cached result must keep its name (fixed versions, so no install matters).
#: A job's spec names its local task file by absolute path, so the keys are taken with the checkout's
#: folder written as /repo (a clone elsewhere keys its own results by its own paths).
PINNED = [
    ("smoke", "evaluate", "moe-8x2", "smoke_mc", "9099be7fe26b6644c445eb0b", "52423fd6600cfd5b"),
    ("smoke", "probe", "moe-8x2@topk(k=1)", "latency", "e7c16ded914d186ea1e81200", "52423fd6600cfd5b"),
    ("engines", "evaluate", "moe[vllm]", "smoke_mc", "72617a53bcde2b0dbe70d26a", "1780a4fdd863b045"),
    ("engines", "describe", "moe@topk(k=1)[vllm]", "", "5aab009abf83e7eb6e2efcbf", "1780a4fdd863b045"),
    ("engines", "evaluate", "moe@random(keyed=true)", "smoke_gen", "59fa00ea9264bc04be4d427f", "ed55d1741dbaa06e"),
]


def _at_repo(spec: dict, repo: str) -> dict:
    task = spec.get("task")
    if isinstance(task, dict) and str(task.get("path", "")).startswith(repo):
        spec = {**spec, "task": {**task, "path": "/repo" + task["path"][len(repo):]}}
    return spec


def test_job_keys_of_the_example_suites_did_not_move():
    from pathlib import Path

    from harness import plan, suite

    versions = {"moe-harness": "0.1.0", "result_schema": "1", "torch": "2.0", "transformers": "5.0",
                "lm_eval": "0.4", "vllm": "0.32.0"}
    repo = Path(__file__).resolve().parent.parent
    found = {}
    for name in ("smoke", "engines"):
        _, jobs = plan.expand(suite.load(repo / "suites" / f"{name}.yaml"), versions)
        for j in jobs:
            what = (j.spec.get("task") or j.spec.get("probe") or {}).get("name", "")
            spec = _at_repo(j.spec, str(repo))
            found[(name, j.kind, j.variant, what)] = (plan.job_key(spec, versions), j.affinity)
    for *where, key, affinity in PINNED:
        assert found[tuple(where)] == (key, affinity), where
