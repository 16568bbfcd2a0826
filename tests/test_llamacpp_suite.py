"""The llamacpp engine as the coordinator reads it (no llama.cpp needed): its entry point, the
quantization axis, and every refusal a suite gets when it is read, one line naming the place and
the variant. Each case beside its neighbour that is accepted, so a refusal that flips shows."""

from __future__ import annotations

import json

import pytest

from harness import plan as planner
from harness.pairs import pair_group
from harness.suite import parse
from moe_schema import engines
from moe_schema.check import SchemaError
from workers.builds.tokenizer import save_byte_tokenizer, save_word_tokenizer

VERSIONS = {"moe-harness": "0", "result_schema": "1", "torch": "t", "transformers": "x", "lm_eval": "l"}
MOE = {"model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 2,
       "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 32, "num_experts": 4,
       "num_experts_per_tok": 2, "moe_intermediate_size": 32, "norm_topk_prob": True}
OLMOE = {"model_type": "olmoe", "hidden_size": 64, "intermediate_size": 32, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 4, "num_experts": 4, "num_experts_per_tok": 2}


def suite(models):
    return parse({"name": "q", "models": models, "tasks": []})


def refused(models) -> str:
    with pytest.raises(SchemaError) as exc:
        suite(models)
    return str(exc.value)


def names(s) -> list[str]:
    vs, _ = planner.expand(s, VERSIONS)
    return [v["name"] for v in vs]


def test_llamacpp_comes_in_through_its_entry_point_like_a_third_party_engine():
    spec = engines.get("llamacpp")
    assert type(spec).__module__ == "workers.engines.llamacpp.spec"  # not registered by moe_schema itself
    assert engines.engine_spec("llamacpp") == {"name": "llamacpp", "params": {
        "quant": "f32", "kv_cache": "f32", "threads": None, "n_ctx": None}}


def test_the_quant_axis_makes_one_variant_per_quantization_and_leaves_transformers_alone():
    s = suite([{"name": "moe", "config": MOE, "engine": ["transformers", "llamacpp"], "quant": ["f32", "q8_0", "q4_0"]}])
    assert names(s) == ["moe", "moe[llamacpp]", "moe[llamacpp,quant=q8_0]", "moe[llamacpp,quant=q4_0]"]
    # pairs form within one engine and one quantization: the engine label carries the quantization
    assert pair_group("moe[llamacpp,quant=q8_0]")[2] == "[llamacpp,quant=q8_0]"
    assert pair_group("moe[llamacpp]")[2] == "[llamacpp]"


def test_one_quantization_as_a_string_and_the_engines_own_parameter_agree():
    a = suite([{"name": "moe", "config": MOE, "engine": "llamacpp", "quant": "q4_k_m"}])
    b = suite([{"name": "moe", "config": MOE, "engine": {"name": "llamacpp", "quant": "q4_k_m"}}])
    assert names(a) == names(b) == ["moe[llamacpp,quant=q4_k_m]"]


@pytest.mark.parametrize("model, message", [
    ({"quant": ["f32", "q3"], "engine": "llamacpp"},
     "models[0].quant[1].quant: expected one of f32, f16, q8_0, q4_0, q4_k_m, got 'q3'"),
    ({"quant": ["q8_0"], "engine": "transformers"},
     "models[0].quant: none of this model's engines takes a quantization; llamacpp does (add it to engine:)"),
    ({"quant": ["q8_0"]},
     "models[0].quant: none of this model's engines takes a quantization; llamacpp does (add it to engine:)"),
    ({"quant": ["q8_0", "q8_0"], "engine": "llamacpp"}, "models[0].quant: a quantization is listed twice"),
    ({"quant": [], "engine": "llamacpp"}, "models[0].quant: empty: name at least one quantization"),
    ({"quant": ["q8_0"], "engine": {"name": "llamacpp", "quant": "q4_0"}},
     "models[0].engine: engine llamacpp names quant 'q4_0' and the model's quant axis too; write it in one place"),
    ({"engine": {"name": "llamacpp", "kv_cache": "q8"}},
     "models[0].engine.kv_cache: expected one of f32, f16, got 'q8'"),
    ({"engine": {"name": "llamacpp", "threads": 0}},
     "models[0].engine.threads: must be an integer >= 1 or null, got 0"),
])
def test_a_bad_quant_axis_is_one_line_at_its_path(model, message):
    assert refused([{"name": "moe", "config": MOE, **model}]) == message


# ---- the routing llama.cpp can run: native, and topk through expert_used_count with 1 <= k <= experts


def test_topk_up_to_the_builds_experts_is_accepted():
    s = suite([{"name": "moe", "config": MOE, "routing": ["native", {"name": "topk", "k": 1}, {"name": "topk", "k": 4}],
                "engine": "llamacpp"}])
    assert names(s) == ["moe[llamacpp]", "moe@topk(k=1)[llamacpp]", "moe@topk(k=4)[llamacpp]"]


def test_a_k_above_the_builds_experts_is_refused_before_llama_cpp_aborts_on_it():
    assert refused([{"name": "moe", "config": MOE, "routing": [{"name": "topk", "k": 5}], "engine": "llamacpp"}]) == (
        "models[0].routing[0]: topk cannot run on engine llamacpp (variant moe@topk(k=5)[llamacpp]): k=5 is not "
        "between 1 and the build's 4 experts (llama.cpp aborts the process on it)")


def test_a_k_above_the_family_default_experts_is_refused_when_the_config_leaves_them_out():
    cfg = {k: v for k, v in MOE.items() if k != "num_experts"}  # qwen3_moe's default: 128 experts
    assert suite([{"name": "m", "config": cfg, "routing": [{"name": "topk", "k": 128}], "engine": "llamacpp"}])
    assert "between 1 and the build's 128 experts" in refused(
        [{"name": "m", "config": cfg, "routing": [{"name": "topk", "k": 129}], "engine": "llamacpp"}])


@pytest.mark.parametrize("strategy", [{"name": "topp", "p": 0.5}, {"name": "random", "seed": 0}, "expert_choice"])
def test_every_other_routing_strategy_is_refused_naming_the_variant(strategy):
    message = refused([{"name": "moe", "config": MOE, "routing": [strategy], "engine": ["transformers", "llamacpp"]}])
    assert message.startswith("models[0].routing[0]: ")
    assert "[llamacpp]): llama.cpp's only routing setting is the number of experts a token uses" in message


def test_topk_with_its_own_renormalize_is_refused():
    message = refused([{"name": "moe", "config": MOE, "routing": [{"name": "topk", "k": 2, "renormalize": False}],
                        "engine": "llamacpp"}])
    assert message.endswith("topk's renormalize is llama.cpp's own per family (set at conversion): leave it out")


# ---- the families and what differs from transformers


@pytest.mark.parametrize("config, why", [
    ({**MOE, "norm_topk_prob": False}, "qwen3_moe with norm_topk_prob false: llama.cpp always renormalises"),
    ({k: v for k, v in MOE.items() if k != "norm_topk_prob"}, "qwen3_moe with norm_topk_prob false"),  # the default
    ({**OLMOE, "num_key_value_heads": 2}, "olmoe with 2 KV heads for 4 heads: llama.cpp reads olmoe's attn_k_norm"),
    ({**OLMOE, "norm_topk_prob": True}, "olmoe with norm_topk_prob true: llama.cpp's olmoe never renormalises"),
    ({"model_type": "qwen2_moe", "hidden_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1},
     "llama.cpp gives NaN logits for qwen2_moe where a token's embedding row is zero"),
    ({"model_type": "granite", "hidden_size": 64, "num_attention_heads": 2, "num_hidden_layers": 1},
     "the harness writes GGUF files for families llama, mixtral, qwen3, qwen3_moe, olmoe; not 'granite'"),
])
def test_a_family_case_llama_cpp_computes_differently_is_refused(config, why):
    message = refused([{"name": "m", "config": config, "engine": ["transformers", "llamacpp"]}])
    assert message.startswith("models[0].engine[1]: m[llamacpp] cannot run on engine llamacpp: " + why)


@pytest.mark.parametrize("config", [MOE, OLMOE, {**OLMOE, "norm_topk_prob": False},
                                    {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 2,
                                     "num_hidden_layers": 1}])
def test_the_neighbouring_family_cases_are_accepted(config):
    assert names(suite([{"name": "m", "config": config, "engine": "llamacpp"}])) == ["m[llamacpp]"]


def test_a_device_other_than_the_cpu_is_refused():
    spec = engines.engine_spec("llamacpp")
    assert engines.refusal(spec, config=MOE, dtype="float32", device="cpu") is None
    got = engines.refusal(spec, config=MOE, dtype="float32", device="cuda:0")
    assert got.what == "device" and "runs llama.cpp on CPU" in got.why


# ---- tokenizers: the GGUF writer expresses the harness's byte tokenizer only


def _checkpoint(tmp_path, save):
    (tmp_path / "config.json").write_text(json.dumps({**MOE, "vocab_size": 259}))
    save(tmp_path)
    return str(tmp_path)


def test_a_local_checkpoint_with_the_byte_tokenizer_is_accepted(tmp_path):
    path = _checkpoint(tmp_path, save_byte_tokenizer)
    assert names(suite([{"name": "m", "checkpoint": path, "engine": "llamacpp"}])) == ["m[llamacpp]"]


def test_a_local_checkpoint_with_a_word_tokenizer_is_refused_in_one_line(tmp_path):
    path = _checkpoint(tmp_path, lambda d: save_word_tokenizer(d, ["alice", "lives", "in", "paris"]))
    message = refused([{"name": "m", "checkpoint": path, "engine": "llamacpp"}])
    assert message.startswith("models[0].engine: m[llamacpp] cannot run on engine llamacpp: its tokenizer (WordLevel")
    assert "\n" not in message


def test_exactness_decides_who_is_held_to_the_parity_tolerance():
    spec = engines.get("llamacpp")
    assert spec.exact({"quant": "f32", "kv_cache": "f32"})
    assert not spec.exact({"quant": "f32", "kv_cache": "f16"})
    assert not spec.exact({"quant": "q8_0", "kv_cache": "f32"})
    assert engines.get("transformers").exact({}) and engines.get("vllm").exact({})


def test_local_daemons_without_llama_cpp_or_on_a_gpu_are_refused_with_the_install_line():
    vs, _ = planner.expand(suite([{"name": "moe", "config": MOE, "engine": ["transformers", "llamacpp"]}]), VERSIONS)
    assert planner.local_engine_refusals(vs, "cpu", installed=lambda name: False) == [
        "moe[llamacpp]: engine llamacpp is not installed in this Python, where the local daemons run (pip install -e "
        "'.[llamacpp]' (builds llama.cpp from source: README, 'The llama.cpp engine')), and no --workers name one "
        "that has it"]
    assert planner.local_engine_refusals(vs, "cpu", installed=lambda name: True) == []
    assert planner.local_engine_refusals(vs, "cuda:0", installed=lambda name: True) == [
        "moe[llamacpp]: the harness runs llama.cpp on CPU (its CPU build, no layers offloaded); device cuda:0 is not one"]
