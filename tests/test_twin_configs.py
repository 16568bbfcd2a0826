"""Derived twins (harness.derive) as whole configs, against widths worked out by hand: which keys a
twin carries from its source, the solved width, each family's extras (qwen2_moe's shared expert and
no q/k/v bias, DeepSeek's latent ranks), granularity changes (regranulate), and every refusal with
its message. Every twin is also a config the suite would accept (moe_schema.families.check_config).

Sizes as in test_param_arithmetic.py: hidden 8, 2 layers, 2 heads of 4, 1 kv head, vocabulary 11. A
llama of FFN width w has 600 + 48 w parameters (embeddings 176, attention 192 and norms 16 per layer,
final norm 8, MLP 24 w per layer); the MoE families add a router of 8 per expert per layer and
24 w per active expert per layer.
"""

from __future__ import annotations

import re

import pytest

from harness.derive import DeriveError, count, derive_twin, regranulate
from moe_schema.families import check_config

SHAPE = dict(vocab_size=11, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
CARRIED = {**SHAPE, "head_dim": 4}
DENSE = {"model_type": "llama", **SHAPE, "intermediate_size": 60}  # 600 + 48*60 = 3480
MIXTRAL = {"model_type": "mixtral", **SHAPE, "intermediate_size": 6, "num_local_experts": 4, "num_experts_per_tok": 2}
# MIXTRAL: 176 + 2*(192 + 16 + 32) + 8 = 664 without experts; active 664 + 2*2*144 = 1240, total 664 + 2*4*144 = 1816


def checked(twin: dict) -> dict:
    check_config(twin, "twin")
    return twin


def test_the_hand_counts_hold():
    assert count(DENSE)["total"] == 3480
    assert (count(MIXTRAL)["active"], count(MIXTRAL)["total"]) == (1240, 1816)


@pytest.mark.parametrize("match, multiple_of, width", [
    ("active", 1, 13),   # (1240 - 600) / 48 = 13.33
    ("total", 1, 25),    # (1816 - 600) / 48 = 25.33
    ("active", 4, 12),   # 3.33 fours
    ("total", 4, 24),
    ("active", 32, 32),  # never below one multiple
])
def test_dense_twin_of_an_moe(match, multiple_of, width):
    twin = checked(derive_twin(MIXTRAL, match, multiple_of=multiple_of))
    assert twin == {"model_type": "llama", **CARRIED, "intermediate_size": width}


def test_a_twin_carries_the_source_s_optional_keys_its_family_accepts_and_the_shape_always():
    src = {**MIXTRAL, "rope_theta": 1e6, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
           "max_position_embeddings": 64, "router_jitter_noise": 0.1}
    twin = checked(derive_twin(src, "active"))
    assert {k: twin[k] for k in ("rope_theta", "rms_norm_eps", "tie_word_embeddings", "max_position_embeddings")} == \
        {"rope_theta": 1e6, "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "max_position_embeddings": 64}
    assert "router_jitter_noise" not in twin
    bare = checked(derive_twin({"model_type": "mixtral"}, "active"))  # transformers' defaults, vocab 259
    assert {k: bare[k] for k in CARRIED} == dict(vocab_size=259, hidden_size=4096, num_hidden_layers=32,
                                                   num_attention_heads=32, num_key_value_heads=8, head_dim=128)
    granite = derive_twin({**MIXTRAL, "model_type": "granitemoe", "embedding_multiplier": 12.0}, "active",
                          family="llama")
    assert "embedding_multiplier" not in granite  # llama has no such key


def test_a_deepseek_v3_dense_twin_is_a_llama_with_its_head_of_hidden_over_heads():
    deepseek = {"model_type": "deepseek_v3", **SHAPE, "intermediate_size": 6, "n_routed_experts": 4,
                "n_shared_experts": 1, "num_experts_per_tok": 2, "moe_intermediate_size": 5,
                "first_k_dense_replace": 1, "kv_lora_rank": 4, "q_lora_rank": 6, "qk_rope_head_dim": 2,
                "qk_nope_head_dim": 3, "v_head_dim": 4}
    twin = checked(derive_twin(deepseek, "active"))
    assert twin["model_type"] == "llama" and twin["head_dim"] == 4
    assert abs(count(twin)["total"] - count(deepseek)["active"]) <= 24  # within one width step


def test_a_width_of_exactly_one_fits():
    """A qwen3 dense twin (qk-norm 8 per layer) of a one-expert, width-one mixtral (router 8 per layer)."""
    one = {**MIXTRAL, "intermediate_size": 1, "num_local_experts": 1, "num_experts_per_tok": 1}
    assert checked(derive_twin(one, "active", family="qwen3"))["intermediate_size"] == 1
    dense = {"model_type": "qwen3", **SHAPE, "head_dim": 4, "intermediate_size": 1}
    moe = checked(derive_twin(dense, "active", family="mixtral", num_experts=1))
    assert moe["intermediate_size"] == 1 and count(moe)["active"] == count(dense)["total"]


MOE_TWINS = {
    # (3480 - 664) / 96 = 29.33
    "mixtral": ({}, {"num_local_experts": 4, "intermediate_size": 29}),
    "granitemoe": ({}, {"num_local_experts": 4, "intermediate_size": 29}),
    # qk-norm 12 per layer: (3480 - 688) / 96 = 29.08
    "olmoe": ({}, {"num_experts": 4, "intermediate_size": 29}),
    # qk-norm 8 per layer: (3480 - 680) / 96 = 29.17; the dense width set to the expert width
    "qwen3_moe": ({}, {"num_experts": 4, "moe_intermediate_size": 29, "intermediate_size": 29}),
    # a shared expert as wide as one expert (24 w per layer) and its gate (8): (3480 - 680) / 144 = 19.44
    "qwen2_moe": ({"shared_experts": 1}, {"qkv_bias": False, "num_experts": 4, "moe_intermediate_size": 19,
                                          "shared_expert_intermediate_size": 19, "intermediate_size": 19}),
}


def test_a_qwen2_moe_shared_expert_is_shared_experts_widths_wide():
    """Two experts' worth of shared expert: 24 * 2w per layer more, (3480 - 680) / 192 = 14.58."""
    twin = checked(derive_twin(DENSE, "active", family="qwen2_moe", num_experts=4, granularity=2, shared_experts=2))
    assert (twin["moe_intermediate_size"], twin["shared_expert_intermediate_size"], twin["intermediate_size"]) == \
        (15, 30, 15)


@pytest.mark.parametrize("family", MOE_TWINS)
def test_moe_twin_of_a_dense_build(family):
    extra, want = MOE_TWINS[family]
    twin = checked(derive_twin(DENSE, "active", family=family, num_experts=4, granularity=2, **extra))
    assert twin == {"model_type": family, **CARRIED, "num_experts_per_tok": 2, **want}


# DeepSeek twin of head 4: rope 2, nope 2, v 4, kv rank 16, q rank 48; attention per layer
# q 8*48 + 48 + 48*2*4 = 816, kv 8*18 + 16 + 16*2*6 = 352, o 64: 1232. Active: 176 + 2*(1232 + 16 + 32) + 8
# + 96 w + 48 w per shared expert: (3480 - 2744) / 144 = 5.11, / 192 = 3.83.
@pytest.mark.parametrize("shared, width", [(1, 5), (2, 4)])
def test_deepseek_v3_twin_of_a_dense_build(shared, width):
    twin = checked(derive_twin(DENSE, "active", family="deepseek_v3", num_experts=4, granularity=2,
                               shared_experts=shared))
    assert twin == {"model_type": "deepseek_v3", **SHAPE, "first_k_dense_replace": 0, "n_group": 1, "topk_group": 1,
                    "n_shared_experts": shared, "qk_rope_head_dim": 2, "qk_nope_head_dim": 2, "v_head_dim": 4,
                    "kv_lora_rank": 16, "q_lora_rank": 48, "num_experts_per_tok": 2, "n_routed_experts": 4,
                    "moe_intermediate_size": width, "intermediate_size": width}


def test_deepseek_v3_latent_ranks_scale_with_the_head():
    wide = {"model_type": "llama", "vocab_size": 11, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 4000}
    twin = checked(derive_twin(wide, "active", family="deepseek_v3", num_experts=4, granularity=2, shared_experts=1))
    assert {k: twin[k] for k in ("qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "kv_lora_rank",
                                 "q_lora_rank")} == {"qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 16,
                                                     "kv_lora_rank": 64, "q_lora_rank": 192}
    small = {**wide, "hidden_size": 6, "num_attention_heads": 2}  # head 3: rope 2, nope 1
    twin = checked(derive_twin(small, "active", family="deepseek_v3", num_experts=4, granularity=2, shared_experts=1))
    assert (twin["qk_rope_head_dim"], twin["qk_nope_head_dim"], twin["v_head_dim"]) == (2, 1, 3)


def test_top_k_defaults_to_the_granularity_and_may_be_every_expert():
    assert derive_twin(DENSE, "active", family="mixtral", num_experts=4)["num_experts_per_tok"] == 1
    assert derive_twin(DENSE, "active", family="mixtral", num_experts=4, top_k=4)["num_experts_per_tok"] == 4
    assert derive_twin(DENSE, "active", family="olmoe", num_experts=1)["num_experts_per_tok"] == 1


@pytest.mark.parametrize("args, kwargs, message", [
    ((MIXTRAL, "active"), {"multiple_of": 0}, "config: multiple_of must be a positive int, got 0"),
    ((MIXTRAL, "active"), {"multiple_of": "8"}, "config: multiple_of must be a positive int, got '8'"),
    ((MIXTRAL, "active"), {"family": "olmoe"}, "config: dense twin family 'olmoe' is not a dense family; "
                                               "known: llama, olmo, qwen3, granite"),
    (({**MIXTRAL, "hidden_size": 0}, "active"), {"where": "models[2].config"},
     "models[2].config.hidden_size: expected a positive int, got 0"),
    (({**MIXTRAL, "head_dim": 64, "intermediate_size": 1, "num_local_experts": 1, "num_experts_per_tok": 1},
      "active"), {"family": "qwen3"}, "config: no dense qwen3 twin fits 6424 active parameters"),
    ((DENSE, "total"), {"family": "mixtral", "num_experts": 4},
     "config: a dense build's MoE twin is derived at equal active parameters only"),
    ((DENSE, "active"), {"num_experts": 4}, "config: an MoE twin needs family= one of granitemoe, olmoe, mixtral, "
                                            "qwen2_moe, qwen3_moe, deepseek_v3, got None"),
    ((DENSE, "active"), {"family": "olmo", "num_experts": 4}, "an MoE twin needs family= one of granitemoe, olmoe, "
                                                              "mixtral, qwen2_moe, qwen3_moe, deepseek_v3, got 'olmo'"),
    ((DENSE, "active"), {"family": "gpt9", "num_experts": 4}, "got 'gpt9'"),
    ((DENSE, "active"), {"family": "mixtral", "num_experts": 0}, "config: num_experts must be an int >= 1, got 0"),
    ((DENSE, "active"), {"family": "mixtral", "num_experts": True}, "config: num_experts must be an int >= 1, got True"),
    ((DENSE, "active"), {"family": "mixtral", "num_experts": 4, "granularity": 0},
     "config: granularity must be an int >= 1, got 0"),
    ((DENSE, "active"), {"family": "qwen2_moe", "num_experts": 4, "shared_experts": -1},
     "config: shared_experts must be an int >= 0, got -1"),
    ((DENSE, "active"), {"family": "mixtral", "num_experts": 4, "top_k": 5},
     "config: top_k must be an int in 1..num_experts=4, got 5"),
    ((DENSE, "active"), {"family": "mixtral", "num_experts": 4, "top_k": 0},
     "config: top_k must be an int in 1..num_experts=4, got 0"),
    ((DENSE, "active"), {"family": "deepseek_v3", "num_experts": 4, "where": "models[3].derive"},
     "models[3].derive: a deepseek_v3 twin needs shared_experts >= 1, got 0"),
    ((DENSE, "active"), {"family": "mixtral", "num_experts": 4, "shared_experts": 1},
     "config: shared_experts needs family qwen2_moe or deepseek_v3 (mixtral has no shared expert)"),
    (({**DENSE, "intermediate_size": 1}, "active"), {"family": "mixtral", "num_experts": 4, "granularity": 2},
     "config: no mixtral twin with 4 experts fits 648 active parameters"),
])
def test_what_cannot_be_twinned_is_named(args, kwargs, message):
    with pytest.raises(DeriveError, match=("^" if message.startswith(("config", "models")) else "") +
                       re.escape(message) + "$"):
        derive_twin(*args, **kwargs)


# ---- regranulate: more, narrower experts at the same active parameters -------------------------
def test_regranulate_keeps_the_active_count():
    # 8 experts, top-4: 176 + 2*(192 + 16 + 64) + 8 = 728, + 2*4*24 w: (1240 - 728) / 192 = 2.67
    assert regranulate(MIXTRAL, 8) == {**MIXTRAL, "num_local_experts": 8, "num_experts_per_tok": 4,
                                       "intermediate_size": 3}
    assert regranulate(MIXTRAL, 8, multiple_of=2)["intermediate_size"] == 2
    # 2 experts, top-1: 176 + 2*(192 + 16 + 16) + 8 = 632, + 48 w: (1240 - 632) / 48 = 12.67
    assert regranulate(MIXTRAL, 2)["intermediate_size"] == 13
    qwen = {"model_type": "qwen3_moe", **SHAPE, "head_dim": 4, "num_experts": 4, "num_experts_per_tok": 2,
            "moe_intermediate_size": 6}
    out = regranulate(qwen, 8)
    assert "intermediate_size" not in out and out["moe_intermediate_size"] == 3 and out["num_experts"] == 8
    assert abs(count(out)["active"] - count(qwen)["active"]) <= 8 * 24 // 2


def test_regranulating_to_the_same_experts_gives_the_config_back_and_one_expert_is_allowed():
    for width in (1, 6):
        config = {**MIXTRAL, "intermediate_size": width}
        assert regranulate(config, 4) == config
    # 4 of 4 experts active (1816) as one expert: the router shrinks to 8 per layer, 616 + 48 w = 1816
    every = {**MIXTRAL, "num_experts_per_tok": 4}
    assert regranulate(every, 1) == {**every, "num_local_experts": 1, "num_experts_per_tok": 1,
                                     "intermediate_size": 25}


@pytest.mark.parametrize("config, experts, message", [
    (MIXTRAL, 3, "config: 3 experts at the granularity of 4 experts x top-2 need top-1.5 per token, not a whole number"),
    (MIXTRAL, 64, "config: no expert width gives 64 experts 1240 active parameters"),
    (MIXTRAL, 0, "config: num_experts must be an int >= 1, got 0"),
    (MIXTRAL, True, "config: num_experts must be an int >= 1, got True"),
    (DENSE, 8, "config: llama is a dense family; experts apply to MoE builds"),
    ({"model_type": "gpt9"}, 8, "config.model_type: unknown model family 'gpt9'"),
    ({**MIXTRAL, "hidden_size": 0}, 8, "config.hidden_size: expected a positive int, got 0"),
])
def test_what_cannot_be_regranulated_is_named(config, experts, message):
    with pytest.raises(DeriveError, match="^" + re.escape(message)):
        regranulate(config, experts)
    with pytest.raises(DeriveError, match="^" + re.escape(message.replace("config", "models[1].config", 1))):
        regranulate(config, experts, where="models[1].config")
