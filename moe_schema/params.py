"""Per-family parameter arithmetic from a config dict alone: the one place it is written.

``count(config)`` counts a config build's parameters the way ``workers.builds.params.count_params``
counts the instantiated model (total / active, with and without embeddings; a test checks every
family against transformers' own classes). ``parts(config)`` gives the same numbers by role, which
the worker's roofline (``moe_schema.roofline.ModelShape``) reads. The harness counts, plans and
derives twins with it (``harness.derive``) without loading a model.

Defaults for keys a config leaves out follow transformers 5's config classes, except
``vocab_size``, which ``workers.builds`` sets to the byte tokenizer's 259 (a test checks both).
Per-family details that are easy to get wrong: OLMo's LayerNorm has no weights; Mixtral's attention
has no bias whatever ``attention_bias`` says; qwen2_moe's biases follow ``qkv_bias`` (q, k, v only)
and its shared-expert gate exists even at shared width 0.
"""

from __future__ import annotations

from moe_schema.check import SchemaError
from moe_schema.families import FAMILIES
from moe_schema.tokens import BYTE_VOCAB_SIZE


# transformers 5 defaults for the keys the arithmetic reads (vocab_size excepted, see above).
FAMILY_DEFAULTS = {
    "llama": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32),
    "olmo": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32),
    "qwen3": dict(hidden_size=4096, intermediate_size=22016, num_hidden_layers=32, num_attention_heads=32,
                  head_dim=128),
    "granite": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32),
    "granitemoe": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                       num_local_experts=8, num_experts_per_tok=2),
    "olmoe": dict(hidden_size=2048, intermediate_size=2048, num_hidden_layers=16, num_attention_heads=16,
                  num_experts=64, num_experts_per_tok=8),
    "mixtral": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                    num_key_value_heads=8, num_local_experts=8, num_experts_per_tok=2),
    "qwen2_moe": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=24, num_attention_heads=16,
                      num_experts=60, num_experts_per_tok=4, moe_intermediate_size=1408,
                      shared_expert_intermediate_size=5632, qkv_bias=True),
    "qwen3_moe": dict(hidden_size=2048, intermediate_size=6144, num_hidden_layers=24, num_attention_heads=32,
                      num_key_value_heads=4, num_experts=128, num_experts_per_tok=8, moe_intermediate_size=768),
    "deepseek_v3": dict(hidden_size=7168, intermediate_size=18432, num_hidden_layers=61, num_attention_heads=128,
                        n_routed_experts=256, n_shared_experts=1, num_experts_per_tok=8,
                        moe_intermediate_size=2048, first_k_dense_replace=3, kv_lora_rank=512, q_lora_rank=1536,
                        qk_rope_head_dim=64, qk_nope_head_dim=128, v_head_dim=128),
}


class ParamsError(SchemaError):
    """A config that cannot be counted; the message names the offending key."""


def family_of(config: dict, where: str):
    if not isinstance(config, dict):
        raise ParamsError(f"{where}: expected a map, got {type(config).__name__}")
    model_type = config.get("model_type")
    if model_type not in FAMILY_DEFAULTS:
        raise ParamsError(f"{where}.model_type: unknown model family {model_type!r}; known: {', '.join(FAMILY_DEFAULTS)}")
    return FAMILIES[model_type]


def resolved(config: dict, where: str = "config") -> dict:
    """The config with every key the arithmetic reads filled in (transformers' defaults, vocab 259)."""
    fam = family_of(config, where)
    c = {"vocab_size": BYTE_VOCAB_SIZE, "tie_word_embeddings": False, "attention_bias": False,
         "mlp_bias": False, "decoder_sparse_step": 1, "mlp_only_layers": [], "shared_expert_intermediate_size": 0,
         **FAMILY_DEFAULTS[fam.model_type], **config}
    if c.get("num_key_value_heads") is None:  # absent, or null in a checkpoint's config.json
        c["num_key_value_heads"] = c["num_attention_heads"]
    if fam.moe:
        c["num_experts"] = c[fam.num_experts_key]
    ints = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
            "decoder_sparse_step"]
    ints += [k for k in (fam.num_experts_key, "num_experts_per_tok", fam.expert_width_key) if fam.moe and k]
    if fam.model_type == "deepseek_v3":  # latent attention: its head sizes are its own keys
        ints += ["n_shared_experts", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim"]
        ints += ["q_lora_rank"] if c.get("q_lora_rank") is not None else []
        c["head_dim"] = c["hidden_size"] // c["num_attention_heads"]  # what a Llama twin carries
    ints += ["head_dim"] if c.get("head_dim") is not None else []
    ints += ["intermediate_size"] if (not fam.moe or fam.model_type.startswith("qwen")
                                      or fam.model_type == "deepseek_v3") else []
    for key in ints:
        if not isinstance(c[key], int) or isinstance(c[key], bool) or c[key] <= 0:
            raise ParamsError(f"{where}.{key}: expected a positive int, got {c[key]!r}")
    if c.get("head_dim") is None:
        c["head_dim"] = c["hidden_size"] // c["num_attention_heads"]
    return c


def sparse_layers(c: dict) -> list[bool]:
    """Which layers of a resolved config hold an MoE block (qwen MoE families can keep some layers
    dense, DeepSeek its first k)."""
    step, dense_only = c["decoder_sparse_step"], set(c["mlp_only_layers"])
    first = c.get("first_k_dense_replace", 0) or 0
    return [i >= first and i not in dense_only and (i + 1) % step == 0 for i in range(c["num_hidden_layers"])]


def _latent_attention(c: dict) -> int:
    """DeepSeek's multi-head latent attention: low-rank q and kv projections with their norms."""
    h, nh, qr, kvr = c["hidden_size"], c["num_attention_heads"], c.get("q_lora_rank"), c["kv_lora_rank"]
    rope, nope, v = c["qk_rope_head_dim"], c["qk_nope_head_dim"], c["v_head_dim"]
    bias = c["attention_bias"]
    q = h * nh * (rope + nope) if qr is None else h * qr + qr * bias + qr + qr * nh * (rope + nope)
    kv = h * (kvr + rope) + (kvr + rope) * bias + kvr + kvr * nh * (nope + v)
    return q + kv + nh * v * h + h * bias


def _attention(model_type: str, c: dict) -> int:
    if model_type == "deepseek_v3":
        return _latent_attention(c)
    h, hd, nh, nkv = c["hidden_size"], c["head_dim"], c["num_attention_heads"], c["num_key_value_heads"]
    n = 2 * h * nh * hd + 2 * h * nkv * hd  # q, o and k, v
    if model_type == "qwen2_moe":
        n += (nh + 2 * nkv) * hd if c["qkv_bias"] else 0
    elif model_type != "mixtral" and c["attention_bias"]:
        n += (nh + 2 * nkv) * hd + h
    if model_type == "olmoe":  # qk-norm over all heads
        n += (nh + nkv) * hd
    elif model_type in ("qwen3", "qwen3_moe"):  # qk-norm per head
        n += 2 * hd
    return n


def _norms(model_type: str, h: int) -> int:
    return 0 if model_type == "olmo" else 2 * h  # OLMo's LayerNorm has no parameters


def parts(config: dict, where: str = "config") -> dict:
    """The parameters by role: ``embed`` (the input table), ``head`` (the LM head, the same table when
    ``tied``), ``other`` (every other non-expert weight: attention, norms, routers, dense and shared
    MLPs, the final norm), ``moe_layers``, ``num_experts``, ``top_k`` and ``expert`` (one routed
    expert in one layer), plus the attention shape a roofline needs."""
    fam = family_of(config, where)
    c = resolved(config, where)
    mt, h, v = fam.model_type, c["hidden_size"], c["vocab_size"]
    other = 0 if mt == "olmo" else h  # final norm
    moe_layers = 0
    for sparse in (sparse_layers(c) if fam.moe else [False] * c["num_hidden_layers"]):
        other += _attention(mt, c) + _norms(mt, h)
        if not sparse:
            width = c["intermediate_size"]
            other += 3 * h * width + (2 * width + h if c["mlp_bias"] and mt in ("llama", "granite") else 0)
            continue
        moe_layers += 1
        other += h * c["num_experts"]  # router
        if mt == "qwen2_moe":  # shared expert (width may be 0) and its gate, which exists regardless
            other += 3 * h * c["shared_expert_intermediate_size"] + h
        elif mt == "deepseek_v3":  # n shared experts, one MLP n expert widths wide
            other += 3 * h * c["n_shared_experts"] * c[fam.expert_width_key]
    return {
        "moe": fam.moe, "embed": v * h, "head": v * h, "tied": bool(c["tie_word_embeddings"]), "other": other,
        "moe_layers": moe_layers, "num_experts": c["num_experts"] if fam.moe else 0,
        "top_k": c["num_experts_per_tok"] if fam.moe else 0,
        "expert": 3 * h * c[fam.expert_width_key] if fam.moe else 0,
        "layers": c["num_hidden_layers"], "hidden": h, "heads": c["num_attention_heads"],
        "kv_heads": c["num_key_value_heads"], "head_dim": c["head_dim"], "vocab": v,
    }


def count(config: dict, where: str = "config", experts_per_token: float | None = None) -> dict:
    """Parameters of a config build: the keys of ``count_params`` (total, active, *_no_embed, ...).

    ``experts_per_token`` replaces the native top-k (a routing strategy's count), rounded the way
    ``count_params`` rounds it."""
    p = parts(config, where)
    embed = p["embed"] + (0 if p["tied"] else p["head"])
    routed = p["moe_layers"] * p["expert"]
    k = p["top_k"] if experts_per_token is None else experts_per_token
    total = embed + p["other"] + p["num_experts"] * routed
    active = embed + p["other"] + round(min(k, p["num_experts"]) * routed)
    return {
        "total": total, "active": active, "total_no_embed": total - embed, "active_no_embed": active - embed,
        "num_experts": p["num_experts"] if p["moe"] else None,
        "experts_per_token": float(k) if p["moe"] else None,
    }
