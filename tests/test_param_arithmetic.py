"""Parameter counts of every family from a config alone (moe_schema.params), against arithmetic
written out by hand on configs small enough to check on paper. test_derive.py and test_counting.py
compare the same function with instantiated models; these need no torch, so mutation testing can run
them, and they pin each per-family detail (biases, qk-norms, parameter-free norms, shared experts,
dense layers among MoE ones, latent attention) on its own.

Every config: hidden 8, 2 layers, 2 heads of 4 (q, o: 2*8*2*4 = 128), 1 kv head (k, v: 2*8*1*4 = 64),
vocabulary 11 (embedding 88, LM head 88), FFN width 6 (3*8*6 = 144), 4 experts of which 2 per token.
"""

from __future__ import annotations

import re

import pytest

from moe_schema.params import ParamsError, count, parts, resolved, sparse_layers

BASE = dict(vocab_size=11, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
            intermediate_size=6)
EMBED = 88 + 88
ATTN = 128 + 64
NORMS = 2 * 8  # two RMSNorms per layer
FINAL = 8
MLP = 3 * 8 * 6
ROUTER = 8 * 4


def dense(model_type, **extra):
    return {"model_type": model_type, **BASE, **extra}


def moe(model_type, experts_key, **extra):
    return {"model_type": model_type, **BASE, experts_key: 4, "num_experts_per_tok": 2, **extra}


def totals(other: int, expert: int = 0, moe_layers: int = 0, k: int = 2, experts: int = 4) -> tuple[int, int]:
    return EMBED + other + experts * moe_layers * expert, EMBED + other + k * moe_layers * expert


DENSE_CASES = {
    "llama": (dense("llama"), 2 * (ATTN + NORMS + MLP) + FINAL),
    "llama attention_bias": (dense("llama", attention_bias=True), 2 * (ATTN + (2 + 2) * 4 + 8 + NORMS + MLP) + FINAL),
    "llama mlp_bias": (dense("llama", mlp_bias=True), 2 * (ATTN + NORMS + MLP + 2 * 6 + 8) + FINAL),
    "granite mlp_bias": (dense("granite", mlp_bias=True), 2 * (ATTN + NORMS + MLP + 2 * 6 + 8) + FINAL),
    "olmo (norms without weights)": (dense("olmo"), 2 * (ATTN + MLP)),
    "olmo mlp_bias is not read": (dense("olmo", mlp_bias=True), 2 * (ATTN + MLP)),
    "qwen3 (qk-norm per head)": (dense("qwen3", head_dim=4), 2 * (ATTN + 2 * 4 + NORMS + MLP) + FINAL),
}


@pytest.mark.parametrize("name", DENSE_CASES)
def test_dense_counts(name):
    config, other = DENSE_CASES[name]
    n = count(config)
    assert n == {"total": EMBED + other, "active": EMBED + other, "total_no_embed": other, "active_no_embed": other,
                 "num_experts": None, "experts_per_token": None}


def test_tied_embeddings_count_once():
    other = 2 * (ATTN + NORMS + MLP) + FINAL
    assert count(dense("llama", tie_word_embeddings=True))["total"] == 88 + other
    assert count(dense("llama", tie_word_embeddings=True))["total_no_embed"] == other


MOE_CASES = {
    # router 8*4 per layer; every expert 3*8*6 (their width is intermediate_size)
    "mixtral": (moe("mixtral", "num_local_experts"), 2 * (ATTN + NORMS + ROUTER) + FINAL, MLP, 2),
    "mixtral ignores attention_bias": (moe("mixtral", "num_local_experts", attention_bias=True),
                                       2 * (ATTN + NORMS + ROUTER) + FINAL, MLP, 2),
    "granitemoe attention_bias": (moe("granitemoe", "num_local_experts", attention_bias=True),
                                  2 * (ATTN + 16 + 8 + NORMS + ROUTER) + FINAL, MLP, 2),
    "olmoe (qk-norm over all heads)": (moe("olmoe", "num_experts"), 2 * (ATTN + (2 + 1) * 4 + NORMS + ROUTER) + FINAL,
                                       MLP, 2),
    # layer 0 MoE (router, shared expert of width 3 and its gate, q/k/v biases), layer 1 a dense MLP
    "qwen2_moe": (moe("qwen2_moe", "num_experts", moe_intermediate_size=5, shared_expert_intermediate_size=3,
                      mlp_only_layers=[1]),
                  (ATTN + 16 + NORMS + ROUTER + 3 * 8 * 3 + 8) + (ATTN + 16 + NORMS + MLP) + FINAL, 3 * 8 * 5, 1),
    "qwen2_moe, no qkv bias, shared width 0 keeps its gate": (
        moe("qwen2_moe", "num_experts", moe_intermediate_size=5, shared_expert_intermediate_size=0, qkv_bias=False),
        2 * (ATTN + NORMS + ROUTER + 8) + FINAL, 3 * 8 * 5, 2),
    "qwen3_moe (qk-norm per head)": (moe("qwen3_moe", "num_experts", moe_intermediate_size=5),
                                     2 * (ATTN + 2 * 4 + NORMS + ROUTER) + FINAL, 3 * 8 * 5, 2),
}


@pytest.mark.parametrize("name", MOE_CASES)
def test_moe_counts(name):
    config, other, expert, moe_layers = MOE_CASES[name]
    total, active = totals(other, expert, moe_layers)
    assert count(config) == {"total": total, "active": active, "total_no_embed": total - EMBED,
                             "active_no_embed": active - EMBED, "num_experts": 4, "experts_per_token": 2.0}


# DeepSeek-V3's latent attention, with rope 2, nope 3, v 4, kv rank 4, q rank 6:
#   q  = 8*6 (down) + 6 (its norm) + 6*2*(2+3) (up)          = 114   (no q rank: 8*2*(2+3) = 80)
#   kv = 8*(4+2) (down) + 4 (its norm) + 4*2*(3+4) (up)       = 108
#   o  = 2*4*8                                                =  64
# biases (attention_bias): q down 6, kv down 4+2, o 8         =  20
DEEPSEEK = dict(model_type="deepseek_v3", **{k: v for k, v in BASE.items()}, n_routed_experts=4, n_shared_experts=1,
                num_experts_per_tok=2, moe_intermediate_size=5, first_k_dense_replace=1, kv_lora_rank=4, q_lora_rank=6,
                qk_rope_head_dim=2, qk_nope_head_dim=3, v_head_dim=4)


@pytest.mark.parametrize("extra, attention", [({}, 114 + 108 + 64), ({"attention_bias": True}, 114 + 108 + 64 + 20),
                                              ({"q_lora_rank": None}, 80 + 108 + 64)],
                         ids=["q rank", "attention bias", "no q rank"])
def test_deepseek_v3_counts(extra, attention):
    """Layer 0 dense (first_k_dense_replace 1), layer 1 MoE with one shared expert of the expert width."""
    other = (attention + NORMS + MLP) + (attention + NORMS + ROUTER + 3 * 8 * 1 * 5) + FINAL
    total, active = totals(other, 3 * 8 * 5, 1)
    n = count({**DEEPSEEK, **extra})
    assert (n["total"], n["active"], n["num_experts"]) == (total, active, 4)


def test_deepseek_v3_every_layer_moe_and_two_shared_experts():
    n = count({**DEEPSEEK, "first_k_dense_replace": 0, "n_shared_experts": 2})
    other = 2 * (114 + 108 + 64 + NORMS + ROUTER + 3 * 8 * 2 * 5) + FINAL
    assert (n["total"], n["active"]) == totals(other, 3 * 8 * 5, 2)


def test_parts_give_the_same_numbers_by_role_and_the_attention_shape():
    assert parts(moe("mixtral", "num_local_experts")) == {
        "moe": True, "embed": 88, "head": 88, "tied": False, "other": 2 * (ATTN + NORMS + ROUTER) + FINAL,
        "moe_layers": 2, "num_experts": 4, "top_k": 2, "expert": MLP,
        "layers": 2, "hidden": 8, "heads": 2, "kv_heads": 1, "head_dim": 4, "vocab": 11}
    assert parts(dense("llama", tie_word_embeddings=True, num_key_value_heads=2)) == {
        "moe": False, "embed": 88, "head": 88, "tied": True, "other": 2 * (ATTN + 64 + NORMS + MLP) + FINAL,
        "moe_layers": 0, "num_experts": 0, "top_k": 0, "expert": 0,
        "layers": 2, "hidden": 8, "heads": 2, "kv_heads": 2, "head_dim": 4, "vocab": 11}


def test_deepseek_head_dim_is_what_a_llama_twin_carries():
    """DeepSeek's config.json carries head_dim = the rope size; its twin's head is hidden/heads."""
    assert parts({**DEEPSEEK, "head_dim": 2})["head_dim"] == 4
    assert resolved({**DEEPSEEK, "head_dim": 2})["head_dim"] == 4


def test_experts_per_token_replaces_the_native_top_k_and_is_capped_at_all_experts():
    config = moe("mixtral", "num_local_experts")
    other = 2 * (ATTN + NORMS + ROUTER) + FINAL
    assert count(config, experts_per_token=1.5)["active"] == EMBED + other + round(1.5 * 2 * MLP)
    assert count(config, experts_per_token=1.5)["experts_per_token"] == 1.5
    assert count(config, experts_per_token=10)["active"] == count(config)["total"]


def test_which_layers_are_sparse():
    c = resolved(moe("qwen2_moe", "num_experts", num_hidden_layers=7, decoder_sparse_step=3, mlp_only_layers=[5]))
    assert sparse_layers(c) == [False, False, True, False, False, False, False]
    c = resolved(moe("qwen3_moe", "num_experts", num_hidden_layers=4, decoder_sparse_step=2))
    assert sparse_layers(c) == [False, True, False, True]
    assert sparse_layers(resolved({**DEEPSEEK, "num_hidden_layers": 4, "first_k_dense_replace": 3})) == \
        [False, False, False, True]
    assert sparse_layers(resolved({**DEEPSEEK, "first_k_dense_replace": None})) == [True, True]


def test_defaults_fill_what_a_config_leaves_out():
    c = resolved({"model_type": "llama"})
    assert (c["vocab_size"], c["hidden_size"], c["num_key_value_heads"], c["head_dim"]) == (259, 4096, 32, 128)
    assert resolved({"model_type": "llama", "num_key_value_heads": None})["num_key_value_heads"] == 32
    assert resolved({"model_type": "mixtral"})["num_experts"] == 8


@pytest.mark.parametrize("config, where, message", [
    ([1], "config", "config: expected a map, got list"),
    ({"model_type": "gpt2"}, "models[1].config", "models[1].config.model_type: unknown model family 'gpt2'; known: "
     "llama, olmo, qwen3, granite, granitemoe, olmoe, mixtral, qwen2_moe, qwen3_moe, deepseek_v3"),
    ({"model_type": "llama", "hidden_size": 0}, "config", "config.hidden_size: expected a positive int, got 0"),
    ({"model_type": "llama", "num_hidden_layers": True}, "config", "config.num_hidden_layers: expected a positive int, got True"),
    ({"model_type": "llama", "head_dim": 0}, "config", "config.head_dim: expected a positive int, got 0"),
    ({"model_type": "llama", "intermediate_size": 0}, "config", "config.intermediate_size: expected a positive int, got 0"),
    ({"model_type": "qwen2_moe", "intermediate_size": 0}, "config", "config.intermediate_size: expected a positive int, got 0"),
    ({"model_type": "qwen3_moe", "moe_intermediate_size": 2.5}, "config",
     "config.moe_intermediate_size: expected a positive int, got 2.5"),
    ({"model_type": "mixtral", "num_local_experts": 0}, "config", "config.num_local_experts: expected a positive int, got 0"),
    ({**DEEPSEEK, "n_routed_experts": 0}, "config", "config.n_routed_experts: expected a positive int, got 0"),
    ({**DEEPSEEK, "intermediate_size": 0}, "config", "config.intermediate_size: expected a positive int, got 0"),
    ({**DEEPSEEK, "hidden_size": -8}, "config", "config.hidden_size: expected a positive int, got -8"),
    ({**DEEPSEEK, "q_lora_rank": 0}, "config", "config.q_lora_rank: expected a positive int, got 0"),
    ({**DEEPSEEK, "kv_lora_rank": "4"}, "config", "config.kv_lora_rank: expected a positive int, got '4'"),
])
def test_a_config_that_cannot_be_counted_is_named(config, where, message):
    for fn in (resolved, parts, count):
        with pytest.raises(ParamsError, match="^" + re.escape(message) + "$"):
            fn(config, where)
        if where == "config":  # the same error at the caller's path
            with pytest.raises(ParamsError, match="^" + re.escape("variant.build." + message) + "$"):
                fn(config, "variant.build.config")


def test_the_default_path_is_config():
    for fn in (resolved, parts, count):
        with pytest.raises(ParamsError, match=r"^config\.hidden_size: expected a positive int, got 0$"):
            fn({"model_type": "olmo", "hidden_size": 0})
        with pytest.raises(ParamsError, match=r"^config\.model_type: unknown model family None"):
            fn({})
