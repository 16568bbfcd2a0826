"""count_params against parameter counts worked out by hand from each family's config."""

from __future__ import annotations

import pytest

from workers.builds.materialize import instantiate
from workers.builds.params import count_params

V = 259  # byte tokenizer vocabulary, the default for config builds
BASE = {"hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 8}


def expected(cfg: dict, k: float | None = None) -> dict:
    """Total / active / embedding parameters of a config, from the architecture by hand."""
    t = cfg["model_type"]
    H, L, I = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim", H // nh)
    tied = cfg.get("tie_word_embeddings", False)

    # attention: q, k, v, o projections
    attn = H * nh * hd + 2 * H * nkv * hd + nh * hd * H
    if t == "qwen2_moe" and cfg.get("qkv_bias", True):
        attn += nh * hd + 2 * nkv * hd  # biases on q, k, v (not o)
    if t in ("llama", "olmo", "granite", "granitemoe") and cfg.get("attention_bias", False):
        attn += nh * hd + 2 * nkv * hd + H
    if t in ("qwen3", "qwen3_moe"):
        attn += 2 * hd  # q_norm and k_norm over one head
    if t == "olmoe":
        attn += nh * hd + nkv * hd  # q_norm and k_norm over all heads
    norms = 0 if t == "olmo" else 2 * H  # olmo's LayerNorm has no weights

    def mlp(width):
        return 3 * H * width + ((2 * width + H) if cfg.get("mlp_bias", False) else 0)

    E = cfg.get("num_experts", cfg.get("num_local_experts"))
    native_k = cfg.get("num_experts_per_tok")
    k = native_k if k is None else k
    routed_total = routed_active = 0
    per_layer_other = 0
    for layer in range(L):
        per_layer_other += attn + norms
        if t in ("llama", "olmo", "qwen3", "granite"):
            per_layer_other += mlp(I)
            continue
        sparse = True
        if t in ("qwen2_moe", "qwen3_moe"):
            step = cfg.get("decoder_sparse_step", 1)
            sparse = layer not in cfg.get("mlp_only_layers", []) and (layer + 1) % step == 0
        if not sparse:
            per_layer_other += mlp(I)  # a dense layer inside an MoE model uses intermediate_size
            continue
        width = cfg["moe_intermediate_size"] if t in ("qwen2_moe", "qwen3_moe") else I
        experts = E * 3 * H * width
        routed_total += experts
        routed_active += experts * min(k, E) / E
        per_layer_other += E * H  # router
        if t == "qwen2_moe":
            per_layer_other += 3 * H * cfg["shared_expert_intermediate_size"] + H  # shared expert + its gate
    final_norm = 0 if t == "olmo" else H
    embed = V * H * (1 if tied else 2)
    total = per_layer_other + routed_total + final_norm + embed
    active = round(per_layer_other + routed_active + final_norm + embed)
    return {"total": total, "active": active, "total_no_embed": total - embed,
            "active_no_embed": active - embed, "num_experts": E,
            "experts_per_token": None if E is None else float(k), "active_measured": False}


MOE = {"num_experts_per_tok": 2}
CASES = {
    "llama": {"model_type": "llama", **BASE},
    "llama-tied-biases": {"model_type": "llama", **BASE, "tie_word_embeddings": True, "attention_bias": True,
                          "mlp_bias": True},
    "llama-default-head-dim": {"model_type": "llama", **{k: v for k, v in BASE.items() if k != "head_dim"},
                               "num_attention_heads": 2, "num_key_value_heads": 1},
    "olmo": {"model_type": "olmo", **BASE},
    "qwen3": {"model_type": "qwen3", **BASE},
    "qwen3-tied": {"model_type": "qwen3", **BASE, "tie_word_embeddings": True},
    "olmoe": {"model_type": "olmoe", **{k: v for k, v in BASE.items() if k != "head_dim"}, **MOE, "num_experts": 8},
    "mixtral": {"model_type": "mixtral", **BASE, **MOE, "num_local_experts": 4},
    "qwen2_moe": {"model_type": "qwen2_moe", **BASE, **MOE, "num_experts": 6, "moe_intermediate_size": 16,
                  "shared_expert_intermediate_size": 24},
    "qwen2_moe-sparse-step-2": {"model_type": "qwen2_moe", **BASE, **MOE, "num_experts": 4,
                                "moe_intermediate_size": 16, "shared_expert_intermediate_size": 24,
                                "decoder_sparse_step": 2, "qkv_bias": False},
    "qwen3_moe": {"model_type": "qwen3_moe", **BASE, **MOE, "num_experts": 4, "moe_intermediate_size": 16},
    "granite": {"model_type": "granite", **BASE, "attention_bias": True, "mlp_bias": True},
    "granitemoe": {"model_type": "granitemoe", **BASE, **MOE, "num_local_experts": 4},
    "qwen3_moe-mlp-only-0": {"model_type": "qwen3_moe", **BASE, "num_experts_per_tok": 1, "num_experts": 4,
                             "moe_intermediate_size": 16, "mlp_only_layers": [0],
                             "tie_word_embeddings": True},
}


@pytest.fixture(scope="module")
def models():
    import torch

    torch.set_num_threads(1)
    return {name: instantiate({"config": cfg, "seed": 0}) for name, cfg in CASES.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_counts_match_the_hand_formula(models, name):
    got = count_params(models[name])
    assert got == expected(CASES[name])
    assert got["total"] == sum(p.numel() for p in models[name].parameters())  # tied weights once


@pytest.mark.parametrize("name", ["olmoe", "mixtral", "qwen2_moe", "qwen3_moe-mlp-only-0", "granitemoe"])
@pytest.mark.parametrize("k", [1, 1.5, 100])
def test_experts_per_token_override(models, name, k):
    got = count_params(models[name], experts_per_token=k)
    assert got == expected(CASES[name], k=k)
    assert got["experts_per_token"] == float(k)


def test_moe_active_is_less_than_total_and_dense_equal(models):
    moe = count_params(models["olmoe"])
    assert moe["active"] < moe["total"] and moe["num_experts"] == 8 and moe["experts_per_token"] == 2.0
    dense = count_params(models["llama"])
    assert dense["active"] == dense["total"] and dense["num_experts"] is None and dense["experts_per_token"] is None


def test_all_experts_active_equals_total(models):
    got = count_params(models["qwen2_moe"], experts_per_token=6)
    assert got["active"] == got["total"]


def test_a_model_without_an_output_head_counts_its_input_embeddings_only():
    """A headless model (``get_output_embeddings()`` is None) still counts; only its input
    embeddings are embedding parameters."""
    import torch
    from transformers import LlamaConfig, LlamaModel

    torch.manual_seed(0)
    model = LlamaModel(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=40, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=8))
    assert model.get_output_embeddings() is None
    got = count_params(model)
    total = sum(p.numel() for p in model.parameters())
    assert got["total"] == got["active"] == total
    assert got["total_no_embed"] == got["active_no_embed"] == total - V * 32
    assert got["num_experts"] is None and got["experts_per_token"] is None

