"""The model families a build can be made from a config: a torch-free table.

The harness validates a suite's ``config:`` blocks against it (key names and types) without
importing transformers; the worker side (``workers/builds``) instantiates the family's own
transformers classes from it.

Each family names its transformers ``model_type``, whether it is an MoE family, and which of its
config keys hold the expert count, the experts per token and the expert width.
"""

from __future__ import annotations

import attrs

from moe_schema.check import SchemaError, did_you_mean, expect, got, type_name, unknown, value_problem
from moe_schema.check import fits as check_value  # noqa: F401  (the name callers know)

_COMMON = {
    "vocab_size": int,
    "hidden_size": int,
    "intermediate_size": int,
    "num_hidden_layers": int,
    "num_attention_heads": int,
    "num_key_value_heads": int,
    "head_dim": int,
    "hidden_act": str,
    "max_position_embeddings": int,
    "initializer_range": float,
    "rms_norm_eps": float,
    "tie_word_embeddings": bool,
    "rope_theta": float,
    "attention_bias": bool,
    "attention_dropout": float,
}
_MOE = {
    "num_experts_per_tok": int,
    "norm_topk_prob": bool,
    "router_aux_loss_coef": float,
    "output_router_logits": bool,
}

_GRANITE = {  # Granite's scaling knobs (muP-style multipliers)
    "embedding_multiplier": float,
    "logits_scaling": float,
    "residual_multiplier": float,
    "attention_multiplier": float,
}

_MAY_BE_ZERO = ("decoder_sparse_step", "first_k_dense_replace")  # 0: no MoE layer (qwen MoE) / no dense first layer (DeepSeek)


@attrs.frozen
class Family:
    model_type: str
    causal_lm_class: str  # transformers class name, e.g. "OlmoeForCausalLM"
    moe: bool
    keys: dict  # config key -> python type
    num_experts_key: str | None = None
    expert_width_key: str | None = None  # per-expert FFN width
    shared_width_key: str | None = None  # shared expert FFN width (0 or absent: none)


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in [
        Family("llama", "LlamaForCausalLM", False, {**_COMMON, "mlp_bias": bool}),
        Family("olmo", "OlmoForCausalLM", False, {**_COMMON, "clip_qkv": float}),
        Family("qwen3", "Qwen3ForCausalLM", False, dict(_COMMON)),
        Family("granite", "GraniteForCausalLM", False, {**_COMMON, **_GRANITE, "mlp_bias": bool}),
        Family(
            "olmoe", "OlmoeForCausalLM", True,
            {**_COMMON, **_MOE, "num_experts": int, "clip_qkv": float},
            num_experts_key="num_experts", expert_width_key="intermediate_size",
        ),
        Family(
            "mixtral", "MixtralForCausalLM", True,
            {**_COMMON, **_MOE, "num_local_experts": int, "router_jitter_noise": float},
            num_experts_key="num_local_experts", expert_width_key="intermediate_size",
        ),
        Family(
            "granitemoe", "GraniteMoeForCausalLM", True,
            {**_COMMON, **_GRANITE, "num_experts_per_tok": int, "router_aux_loss_coef": float,
             "output_router_logits": bool, "num_local_experts": int},
            num_experts_key="num_local_experts", expert_width_key="intermediate_size",
        ),
        Family(
            "qwen2_moe", "Qwen2MoeForCausalLM", True,
            {**_COMMON, **_MOE, "num_experts": int, "moe_intermediate_size": int,
             "shared_expert_intermediate_size": int, "decoder_sparse_step": int, "mlp_only_layers": list,
             "qkv_bias": bool},
            num_experts_key="num_experts", expert_width_key="moe_intermediate_size",
            shared_width_key="shared_expert_intermediate_size",
        ),
        Family(
            "qwen3_moe", "Qwen3MoeForCausalLM", True,
            {**_COMMON, **_MOE, "num_experts": int, "num_local_experts": int, "moe_intermediate_size": int,
             "decoder_sparse_step": int, "mlp_only_layers": list},
            num_experts_key="num_experts", expert_width_key="moe_intermediate_size",
        ),
        Family(  # fine-grained routed experts, shared experts, multi-head latent attention
            "deepseek_v3", "DeepseekV3ForCausalLM", True,
            {**{k: t for k, t in _COMMON.items() if k != "head_dim"}, **_MOE, "n_routed_experts": int,
             "n_shared_experts": int, "moe_intermediate_size": int, "first_k_dense_replace": int,
             "kv_lora_rank": int, "q_lora_rank": int, "qk_rope_head_dim": int, "qk_nope_head_dim": int,
             "v_head_dim": int, "n_group": int, "topk_group": int, "routed_scaling_factor": float},
            num_experts_key="n_routed_experts", expert_width_key="moe_intermediate_size",
        ),
    ]
}


def check_config(config, where: str = "config") -> dict:
    """A config build's ``config``: a known ``model_type`` and, for each key, the family's type
    (ints positive). The one check of a config block: the suite parser runs it at
    ``models[i].config``, a worker at ``variant.build.config``. Raises ``SchemaError``."""
    config = expect(where, config, dict, "a map")
    if "model_type" not in config:
        raise SchemaError(where, f"missing 'model_type'; known: {', '.join(FAMILIES)}")
    model_type = config["model_type"]
    if model_type not in FAMILIES:
        raise SchemaError(f"{where}.model_type", unknown("model family", model_type, FAMILIES))
    keys = FAMILIES[model_type].keys
    for key, value in config.items():
        if key == "model_type":
            continue
        if key not in keys:
            raise SchemaError(f"{where}.{key}", f"not a {model_type} config key{did_you_mean(key, keys)}; "
                                                f"known: {', '.join(sorted(keys))}")
        if not check_value(keys[key], value):
            raise SchemaError(f"{where}.{key}", f"expected {value_problem(value) or type_name(keys[key])}, got {got(value)}")
        if keys[key] is int and value <= 0 and key not in _MAY_BE_ZERO:
            raise SchemaError(f"{where}.{key}", f"must be positive, got {value}")
    return config
