"""harness.derive: analytic parameter counts agree with the instantiated models; twins match within 2%."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.derive import DENSE_TWIN, DeriveError, count, derive_twin, relative_gap, resolved

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)
TINY_MOE = {
    "olmoe": dict(model_type="olmoe", intermediate_size=24, num_experts=8, num_experts_per_tok=2, **TINY),
    "mixtral": dict(model_type="mixtral", intermediate_size=40, num_local_experts=4, num_experts_per_tok=2, **TINY),
    "qwen2_moe": dict(model_type="qwen2_moe", intermediate_size=64, moe_intermediate_size=16, num_experts=8,
                      num_experts_per_tok=2, shared_expert_intermediate_size=32, **TINY),
    "qwen3_moe": dict(model_type="qwen3_moe", intermediate_size=64, moe_intermediate_size=16, num_experts=8,
                      num_experts_per_tok=2, **TINY),
    "granitemoe": dict(model_type="granitemoe", intermediate_size=24, num_local_experts=8, num_experts_per_tok=2,
                       **TINY),
}
# Published shapes (config.json of each checkpoint), counted analytically only.
REAL = {
    "OLMoE-1B-7B": (dict(model_type="olmoe", vocab_size=50304, hidden_size=2048, intermediate_size=1024,
                         num_hidden_layers=16, num_attention_heads=16, num_key_value_heads=16, num_experts=64,
                         num_experts_per_tok=8), 6.92e9, 1.28e9),
    "Qwen1.5-MoE-A2.7B": (dict(model_type="qwen2_moe", vocab_size=151936, hidden_size=2048, intermediate_size=5632,
                               num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=16, num_experts=60,
                               num_experts_per_tok=4, moe_intermediate_size=1408,
                               shared_expert_intermediate_size=5632), 14.3e9, 2.69e9),
    "Mixtral-8x7B": (dict(model_type="mixtral", vocab_size=32000, hidden_size=4096, intermediate_size=14336,
                          num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8, num_local_experts=8,
                          num_experts_per_tok=2), 46.7e9, 12.9e9),
}


def instantiated_count(config: dict) -> dict:
    """workers.builds' own count on the family's transformers model."""
    import torch

    from workers.builds.materialize import instantiate
    from workers.builds.params import count_params

    torch.set_num_threads(1)
    return count_params(instantiate({"config": config, "seed": 0}))


VARIANTS = [
    dict(model_type="llama", intermediate_size=48, **TINY),
    dict(model_type="llama", intermediate_size=48, attention_bias=True, mlp_bias=True, tie_word_embeddings=True,
         **TINY),
    dict(model_type="olmo", intermediate_size=48, **TINY),
    dict(model_type="qwen3", intermediate_size=48, **TINY),
    dict(model_type="qwen3", intermediate_size=48, head_dim=8, attention_bias=True, **TINY),
    dict(model_type="granite", intermediate_size=48, attention_bias=True, mlp_bias=True, **TINY),
    *TINY_MOE.values(),
    {**TINY_MOE["olmoe"], "attention_bias": True},
    {**TINY_MOE["qwen2_moe"], "decoder_sparse_step": 2, "qkv_bias": False},
    {**TINY_MOE["qwen2_moe"], "shared_expert_intermediate_size": 0},
    {**TINY_MOE["qwen3_moe"], "mlp_only_layers": [0]},
]


@pytest.mark.parametrize("config", VARIANTS, ids=lambda c: c["model_type"])
def test_count_agrees_with_instantiated_model(config):
    want = instantiated_count(config)
    got = count(config)
    for key in ("total", "active", "total_no_embed", "active_no_embed", "num_experts", "experts_per_token"):
        assert got[key] == want[key], (key, got, want)


def test_defaults_agree_with_transformers():
    import transformers

    for model_type in ("llama", "olmo", "qwen3", "granite", "olmoe", "mixtral", "qwen2_moe", "qwen3_moe",
                       "granitemoe", "deepseek_v3"):
        ours = resolved({"model_type": model_type})
        hf = transformers.AutoConfig.for_model(model_type)
        for key, value in ours.items():
            if key in ("vocab_size", "model_type") or not hasattr(hf, key) or getattr(hf, key) is None:
                continue
            if model_type == "deepseek_v3" and key == "head_dim":  # its head sizes are its own keys
                continue
            assert getattr(hf, key) == value, (model_type, key)
    from workers.builds.tokenizer import BYTE_VOCAB_SIZE

    assert resolved({"model_type": "llama"})["vocab_size"] == BYTE_VOCAB_SIZE


@pytest.mark.parametrize("name", ["olmoe", "qwen2_moe", "mixtral", "qwen3_moe", "granitemoe"])
@pytest.mark.parametrize("match", ["active", "total"])
def test_dense_twin_of_tiny_moe_matches_instantiated(name, match):
    moe = TINY_MOE[name]
    twin = derive_twin(moe, match)
    assert twin["model_type"] == DENSE_TWIN[name]
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads"):
        assert twin[key] == moe[key]
    assert relative_gap(instantiated_count(twin)["total"], instantiated_count(moe)[match]) < 0.02


@pytest.mark.parametrize("name", list(REAL))
def test_real_shapes_count_and_twins(name):
    config, total, active = REAL[name]
    n = count(config)
    assert relative_gap(n["total"], total) < 0.02 and relative_gap(n["active"], active) < 0.02, n
    for match in ("active", "total"):
        for family in (None, "llama"):
            twin = derive_twin(config, match, family=family, multiple_of=64)
            assert twin["intermediate_size"] % 64 == 0
            assert relative_gap(count(twin)["total"], n[match]) < 0.02


def test_granite_3b_a800m_counts():
    """granite-3.0-3b-a800m's published shape: 3.3B total, 800M active (IBM counts active without
    the 49k x 1536 embedding, which is tied); its equal-active twin is a Granite dense model."""
    config = dict(model_type="granitemoe", vocab_size=49155, hidden_size=1536, intermediate_size=512,
                  num_hidden_layers=32, num_attention_heads=24, num_key_value_heads=8, num_local_experts=40,
                  num_experts_per_tok=8, tie_word_embeddings=True)
    n = count(config)
    assert relative_gap(n["total"], 3.3e9) < 0.02 and relative_gap(n["active_no_embed"], 0.8e9) < 0.02, n
    twin = derive_twin({**config, "embedding_multiplier": 12.0, "residual_multiplier": 0.22}, "active",
                       multiple_of=64)
    assert twin["model_type"] == "granite" and relative_gap(count(twin)["total"], n["active"]) < 0.02
    assert twin["embedding_multiplier"] == 12.0 and twin["residual_multiplier"] == 0.22  # the same scaling


def test_olmoe_dense_twin_near_olmo_1b():
    """OLMoE-1B-7B's equal-active twin has about OLMo-1B's ~1.2B parameters."""
    twin = derive_twin(REAL["OLMoE-1B-7B"][0], "active")
    assert twin["model_type"] == "olmo" and 1.1e9 < count(twin)["total"] < 1.4e9


@pytest.mark.parametrize("family,shared,granularity", [("olmoe", 0, 1), ("olmoe", 0, 4), ("mixtral", 0, 2),
                                                       ("qwen2_moe", 1, 2), ("qwen3_moe", 0, 2),
                                                       ("granitemoe", 0, 2)])
def test_moe_twin_of_dense(family, shared, granularity):
    dense = dict(model_type="llama", intermediate_size=128, **TINY)
    twin = derive_twin(dense, "active", family=family, num_experts=8, shared_experts=shared,
                       granularity=granularity)
    assert twin["num_experts_per_tok"] == granularity
    got = instantiated_count(twin)
    assert got["num_experts"] == 8
    assert relative_gap(got["active"], instantiated_count(dense)["total"]) < 0.02
    width = twin["moe_intermediate_size" if family.startswith("qwen") else "intermediate_size"]
    assert abs(width - 128 / (granularity + shared)) <= 128 / (granularity + shared) * 0.15


def test_moe_twin_of_real_dense():
    olmo_1b = dict(model_type="olmo", vocab_size=50304, hidden_size=2048, intermediate_size=8192,
                   num_hidden_layers=16, num_attention_heads=16)
    twin = derive_twin(olmo_1b, "active", family="olmoe", num_experts=64, granularity=8, multiple_of=64)
    assert twin["intermediate_size"] == 1024 and twin["num_experts_per_tok"] == 8  # OLMoE's own shape
    assert relative_gap(count(twin)["active"], count(olmo_1b)["total"]) < 0.02


@pytest.mark.parametrize("args,needle", [
    (({"model_type": "gpt9"}, "active"), "config.model_type: unknown model family 'gpt9'"),
    ((TINY_MOE["olmoe"], "biggest"), "match must be one of active, total"),
    ((TINY_MOE["olmoe"], "active", {"family": "mixtral"}), "not a dense family"),
    ((dict(model_type="llama", **TINY), "total", {"family": "olmoe", "num_experts": 4}), "equal active"),
    ((dict(model_type="llama", **TINY), "active", {"family": "olmoe", "num_experts": 4, "shared_experts": 1}),
     "shared_experts needs family qwen2_moe"),
    ((dict(model_type="llama", **TINY), "active", {"family": "olmoe", "num_experts": 2, "top_k": 3}),
     "top_k must be"),
    ((dict(model_type="llama", **TINY), "active", {"family": "olmoe"}), "num_experts must be"),
    (({**TINY_MOE["olmoe"], "hidden_size": "wide"}, "active"), "config.hidden_size: expected a positive int"),
])
def test_errors_name_what_is_wrong(args, needle):
    config, match, *kw = args
    with pytest.raises(DeriveError, match=None) as err:
        derive_twin(config, match, **(kw[0] if kw else {}))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_derive_is_torch_free():
    code = "import sys, harness.derive; bad = {'torch', 'transformers', 'lm_eval'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
