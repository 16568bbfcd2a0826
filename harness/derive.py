"""Derived twins: exact parameter arithmetic for config builds, torch-free.

``count(config)`` counts a config build's parameters the way ``workers.builds.params.count_params``
counts the instantiated model (total / active, with and without embeddings), from the config dict
alone. ``derive_twin(config, match)`` solves an FFN width so that a second build matches the first:

- MoE → dense: same vocab, hidden size, layers, heads and head size; the dense ``intermediate_size``
  is solved so the twin's total parameters equal the MoE's **active** (``match="active"``) or
  **total** (``match="total"``) parameters. The dense family (override with ``family=``):

  ====================  ==========  ==================================================
  MoE family            dense twin  why
  ====================  ==========  ==================================================
  olmoe                 olmo        OLMoE's public twins are OLMo models
  mixtral               llama       Mistral/Llama blocks are Mixtral's dense blocks
  qwen2_moe, qwen3_moe  qwen3       the Qwen dense family transformers 5 ships
  granitemoe            granite     Granite 3.0's MoE and dense models share their blocks
  ====================  ==========  ==================================================

  Small per-family differences (OLMo's parameter-free norms, Qwen's qk-norm, biases) are
  absorbed by the solved width, so counts agree to a fraction of a percent.
- dense → MoE (``match="active"`` only): ``num_experts`` routed experts, ``top_k`` per token
  (default: ``granularity``), optional ``shared_experts`` (qwen2_moe only). The expert width is
  solved so the MoE's active parameters equal the dense total: with the default top-k that is
  dense width / granularity, less a little for the router.

Defaults for keys a config leaves out follow transformers 5's config classes, except
``vocab_size``, which ``workers.builds`` sets to the byte tokenizer's 259 (a test checks both).
"""

from __future__ import annotations

from workers.families import FAMILIES

BYTE_VOCAB_SIZE = 259  # workers.builds.tokenizer.BYTE_VOCAB_SIZE (not imported: it loads `tokenizers`)
DENSE_TWIN = {"olmoe": "olmo", "mixtral": "llama", "qwen2_moe": "qwen3", "qwen3_moe": "qwen3",
              "granitemoe": "granite"}
MATCHES = ("active", "total")

# transformers 5 defaults for the keys the arithmetic reads (vocab_size excepted, see above).
_DEFAULTS = {
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
}


class DeriveError(ValueError):
    """A config that cannot be counted or twinned; the message names the offending key."""


def _family(config: dict, where: str):
    if not isinstance(config, dict):
        raise DeriveError(f"{where}: expected a map, got {type(config).__name__}")
    model_type = config.get("model_type")
    if model_type not in _DEFAULTS:
        raise DeriveError(f"{where}.model_type: unknown model family {model_type!r}; known: {', '.join(_DEFAULTS)}")
    return FAMILIES[model_type]


def resolved(config: dict, where: str = "config") -> dict:
    """The config with every key the arithmetic reads filled in (transformers' defaults, vocab 259)."""
    fam = _family(config, where)
    c = {"vocab_size": BYTE_VOCAB_SIZE, "tie_word_embeddings": False, "attention_bias": False,
         "mlp_bias": False, "decoder_sparse_step": 1, "mlp_only_layers": [], "shared_expert_intermediate_size": 0,
         **_DEFAULTS[fam.model_type], **config}
    c.setdefault("num_key_value_heads", c["num_attention_heads"])
    if fam.moe:
        c["num_experts"] = c[fam.num_experts_key]
    ints = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
            "decoder_sparse_step"]
    ints += [k for k in ("num_experts", "num_experts_per_tok", fam.expert_width_key) if fam.moe and k]
    ints += ["head_dim"] if c.get("head_dim") is not None else []
    ints += ["intermediate_size"] if not fam.moe or fam.model_type.startswith("qwen") else []
    for key in ints:
        if not isinstance(c[key], int) or isinstance(c[key], bool) or c[key] <= 0:
            raise DeriveError(f"{where}.{key}: expected a positive int, got {c[key]!r}")
    if c.get("head_dim") is None:
        c["head_dim"] = c["hidden_size"] // c["num_attention_heads"]
    return c


def _sparse_layers(c: dict) -> list[bool]:
    """Which layers hold an MoE block (qwen MoE families can keep some layers dense)."""
    step, dense_only = c["decoder_sparse_step"], set(c["mlp_only_layers"])
    return [i not in dense_only and (i + 1) % step == 0 for i in range(c["num_hidden_layers"])]


def _attention(model_type: str, c: dict) -> int:
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


def count(config: dict, where: str = "config") -> dict:
    """Parameters of a config build: the keys of ``count_params`` (total, active, *_no_embed, ...)."""
    fam = _family(config, where)
    c = resolved(config, where)
    mt, h, v = fam.model_type, c["hidden_size"], c["vocab_size"]
    embed = v * h * (1 if c["tie_word_embeddings"] else 2)
    final_norm = 0 if mt == "olmo" else h
    total = active = embed + final_norm
    for sparse in (_sparse_layers(c) if fam.moe else [False] * c["num_hidden_layers"]):
        layer = _attention(mt, c) + _norms(mt, h)
        total += layer
        active += layer
        if not sparse:
            width = c["intermediate_size"]
            mlp = 3 * h * width + (2 * width + h if c["mlp_bias"] and mt in ("llama", "granite") else 0)
            total += mlp
            active += mlp
            continue
        e, k = c["num_experts"], c["num_experts_per_tok"]
        expert = 3 * h * c[fam.expert_width_key]
        always = h * e  # router
        if mt == "qwen2_moe":  # shared expert (width may be 0) and its gate, which exists regardless
            always += 3 * h * c["shared_expert_intermediate_size"] + h
        total += always + e * expert
        active += always + min(k, e) * expert
    return {
        "total": total, "active": active, "total_no_embed": total - embed, "active_no_embed": active - embed,
        "num_experts": c["num_experts"] if fam.moe else None,
        "experts_per_token": float(c["num_experts_per_tok"]) if fam.moe else None,
    }


def _round(x: float, multiple_of: int) -> int:
    return max(multiple_of, int(round(x / multiple_of)) * multiple_of)


_SHARED_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "head_dim", "tie_word_embeddings", "max_position_embeddings", "rope_theta", "rms_norm_eps",
                "initializer_range", "hidden_act", "attention_dropout",
                "embedding_multiplier", "logits_scaling", "residual_multiplier", "attention_multiplier")


def _carry(c: dict, source: dict, family: str) -> dict:
    """Architecture keys the twin shares with the source (only those its family accepts)."""
    keys = FAMILIES[family].keys
    out = {"model_type": family}
    for key in _SHARED_KEYS:
        if key in keys and (key in source or key in ("vocab_size", "hidden_size", "num_hidden_layers",
                                                      "num_attention_heads", "num_key_value_heads", "head_dim")):
            out[key] = c[key]
    return out


def derive_twin(config: dict, match: str, *, family: str | None = None, num_experts: int | None = None,
                top_k: int | None = None, shared_experts: int = 0, granularity: int = 1, multiple_of: int = 1,
                where: str = "config") -> dict:
    """The twin config of ``config`` at equal ``match`` ("active" or "total") parameters.

    An MoE config gives a dense twin (``family`` defaults to ``DENSE_TWIN``); a dense config gives an
    MoE twin of ``family`` (required) with ``num_experts`` experts, at equal active parameters.
    Solved widths are rounded to ``multiple_of``. Raises ``DeriveError`` naming the bad argument.
    """
    fam = _family(config, where)
    if match not in MATCHES:
        raise DeriveError(f"{where}: match must be one of {', '.join(MATCHES)}, got {match!r}")
    if not isinstance(multiple_of, int) or multiple_of < 1:
        raise DeriveError(f"{where}: multiple_of must be a positive int, got {multiple_of!r}")
    c = resolved(config, where)
    target = count(config, where)[match]
    if fam.moe:
        twin_family = family or DENSE_TWIN[fam.model_type]
        if twin_family not in _DEFAULTS or FAMILIES[twin_family].moe:
            dense = [f for f in _DEFAULTS if not FAMILIES[f].moe]
            raise DeriveError(f"{where}: dense twin family {twin_family!r} is not a dense family; known: "
                              f"{', '.join(dense)}")
        twin = _carry(c, config, twin_family)
        base = count({**twin, "intermediate_size": 1})["total"] - 3 * c["hidden_size"] * c["num_hidden_layers"]
        width = (target - base) / (3 * c["hidden_size"] * c["num_hidden_layers"])
        if width < 1:
            raise DeriveError(f"{where}: no dense {twin_family} twin fits {target} {match} parameters")
        twin["intermediate_size"] = _round(width, multiple_of)
        return twin
    if match != "active":
        raise DeriveError(f"{where}: a dense build's MoE twin is derived at equal active parameters only")
    if family is None or family not in _DEFAULTS or not FAMILIES[family].moe:
        moe = [f for f in _DEFAULTS if FAMILIES[f].moe]
        raise DeriveError(f"{where}: an MoE twin needs family= one of {', '.join(moe)}, got {family!r}")
    for name, value, low in (("num_experts", num_experts, 1), ("granularity", granularity, 1),
                             ("shared_experts", shared_experts, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise DeriveError(f"{where}: {name} must be an int >= {low}, got {value!r}")
    k = granularity if top_k is None else top_k
    if not isinstance(k, int) or not 1 <= k <= num_experts:
        raise DeriveError(f"{where}: top_k must be an int in 1..num_experts={num_experts}, got {k!r}")
    if shared_experts and family != "qwen2_moe":
        raise DeriveError(f"{where}: shared_experts needs family qwen2_moe ({family} has no shared expert)")
    twin = _carry(c, config, family)
    twin["num_experts_per_tok"] = k
    twin[FAMILIES[family].num_experts_key] = num_experts
    if family == "qwen2_moe":
        twin["qkv_bias"] = False
    # Active parameters are linear in the expert width w: base + slope * w.
    wkey, skey = FAMILIES[family].expert_width_key, FAMILIES[family].shared_width_key
    probe = {**twin, wkey: 1, **({skey: shared_experts} if skey else {})}
    if family in ("qwen2_moe", "qwen3_moe"):
        probe["intermediate_size"] = 1  # unused by sparse layers
    a1 = count(probe)["active"]
    probe2 = {**probe, wkey: 2, **({skey: 2 * shared_experts} if skey else {})}
    slope = count(probe2)["active"] - a1
    width = 1 + (target - a1) / slope
    if width < 1:
        raise DeriveError(f"{where}: no {family} twin with {num_experts} experts fits {target} active parameters")
    w = _round(width, multiple_of)
    twin.update({k2: v for k2, v in probe.items() if k2 not in (wkey, skey)})
    twin[wkey] = w
    if skey:
        twin[skey] = shared_experts * w
    if family in ("qwen2_moe", "qwen3_moe"):
        twin["intermediate_size"] = w
    return twin


def relative_gap(a: int, b: int) -> float:
    """|a - b| / b: how far a derived count is from its target."""
    return abs(a - b) / b


def regranulate(config: dict, num_experts: int, where: str = "config", multiple_of: int = 1) -> dict:
    """The MoE ``config`` with ``num_experts`` experts at the same active parameters (granularity,
    claim 6): ``E`` experts take ``k * E / E0`` per token, and the expert width is solved (active
    parameters are linear in it) so the active count equals the original's; total parameters stay
    about the same, since ``E * width`` does. Raises ``DeriveError`` when the top-k is not whole."""
    fam = _family(config, where)
    if not fam.moe:
        raise DeriveError(f"{where}: {fam.model_type} is a dense family; experts apply to MoE builds")
    if not isinstance(num_experts, int) or isinstance(num_experts, bool) or num_experts < 1:
        raise DeriveError(f"{where}: num_experts must be an int >= 1, got {num_experts!r}")
    c = resolved(config, where)
    e0, k0 = c["num_experts"], c["num_experts_per_tok"]
    if (k0 * num_experts) % e0:
        raise DeriveError(f"{where}: {num_experts} experts at the granularity of {e0} experts x top-{k0} need "
                          f"top-{k0 * num_experts / e0:g} per token, not a whole number")
    k = k0 * num_experts // e0
    target = count(config, where)["active"]
    wkey = fam.expert_width_key
    probe = {**config, fam.num_experts_key: num_experts, "num_experts_per_tok": k, wkey: 1}
    a1 = count(probe, where)["active"]
    slope = count({**probe, wkey: 2}, where)["active"] - a1
    width = 1 + (target - a1) / slope
    if width < 1:
        raise DeriveError(f"{where}: no expert width gives {num_experts} experts {target} active parameters")
    out = {**probe, wkey: _round(width, multiple_of)}
    if fam.model_type in ("qwen2_moe", "qwen3_moe") and "intermediate_size" not in config:
        out.pop("intermediate_size", None)
    return out
