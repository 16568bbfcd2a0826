"""Derived twins of config builds, torch-free.

The parameter arithmetic (``count(config)``: a config build's parameters the way
``workers.builds.params.count_params`` counts the instantiated model) is ``moe_schema.params``,
shared with the worker's roofline; it is re-exported here. ``derive_twin(config, match)`` solves an FFN width so that a second build matches the first:

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
  (default: ``granularity``), ``shared_experts`` (qwen2_moe: optional; deepseek_v3: at least one). The expert width is
  solved so the MoE's active parameters equal the dense total: with the default top-k that is
  dense width / granularity, less a little for the router.

Defaults for keys a config leaves out: see ``moe_schema.params``.
"""

from __future__ import annotations

from moe_schema.families import FAMILIES
from moe_schema.params import FAMILY_DEFAULTS as DEFAULTS
from moe_schema.params import ParamsError, count, resolved, sparse_layers
from moe_schema.params import family_of as _family

DeriveError = ParamsError  # a config that cannot be counted or twinned; the message names the key

DENSE_TWIN = {"olmoe": "olmo", "mixtral": "llama", "qwen2_moe": "qwen3", "qwen3_moe": "qwen3",
              "granitemoe": "granite", "deepseek_v3": "llama"}
MATCHES = ("active", "total")

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
    target = count(config)[match]  # resolved above: the config counts
    if fam.moe:
        twin_family = family or DENSE_TWIN[fam.model_type]
        if twin_family not in DEFAULTS or FAMILIES[twin_family].moe:
            dense = [f for f in DEFAULTS if not FAMILIES[f].moe]
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
    if family is None or family not in DEFAULTS or not FAMILIES[family].moe:
        moe = [f for f in DEFAULTS if FAMILIES[f].moe]
        raise DeriveError(f"{where}: an MoE twin needs family= one of {', '.join(moe)}, got {family!r}")
    for name, value, low in (("num_experts", num_experts, 1), ("granularity", granularity, 1),
                             ("shared_experts", shared_experts, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise DeriveError(f"{where}: {name} must be an int >= {low}, got {value!r}")
    k = granularity if top_k is None else top_k
    if not isinstance(k, int) or not 1 <= k <= num_experts:
        raise DeriveError(f"{where}: top_k must be an int in 1..num_experts={num_experts}, got {k!r}")
    if shared_experts and family not in ("qwen2_moe", "deepseek_v3"):
        raise DeriveError(f"{where}: shared_experts needs family qwen2_moe or deepseek_v3 ({family} has no "
                          f"shared expert)")
    if family == "deepseek_v3" and not shared_experts:  # the family's n_shared_experts is a positive int
        raise DeriveError(f"{where}: a deepseek_v3 twin needs shared_experts >= 1, got {shared_experts!r}")
    twin = _carry(c, config, family)
    if family == "deepseek_v3":  # every layer MoE, one routing group, latent ranks scaled from the head size
        hd = c["head_dim"]
        rope = max(2, hd // 2 // 2 * 2)
        twin.update(first_k_dense_replace=0, n_group=1, topk_group=1, n_shared_experts=shared_experts,
                    qk_rope_head_dim=rope, qk_nope_head_dim=max(1, hd - rope), v_head_dim=hd,
                    kv_lora_rank=4 * hd, q_lora_rank=12 * hd)
    twin["num_experts_per_tok"] = k
    twin[FAMILIES[family].num_experts_key] = num_experts
    if family == "qwen2_moe":
        twin["qkv_bias"] = False
    # Active parameters are linear in the expert width w: base + slope * w.
    wkey, skey = FAMILIES[family].expert_width_key, FAMILIES[family].shared_width_key

    def widths(w: int) -> dict:  # the expert width, and the shared expert's (shared_experts widths) if any
        return {wkey: w, **({skey: shared_experts * w} if skey else {})}

    a1 = count({**twin, **widths(1)})["active"]
    slope = count({**twin, **widths(2)})["active"] - a1
    width = 1 + (target - a1) / slope
    if width < 1:
        raise DeriveError(f"{where}: no {family} twin with {num_experts} experts fits {target} active parameters")
    w = _round(width, multiple_of)
    twin.update(widths(w))
    if family in ("qwen2_moe", "qwen3_moe", "deepseek_v3"):
        twin["intermediate_size"] = w  # every layer is sparse: the dense width is unused, set to match
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
    target = count(config)["active"]  # resolved above: the config and its probes (positive ints) count
    wkey = fam.expert_width_key
    probe = {**config, fam.num_experts_key: num_experts, "num_experts_per_tok": k, wkey: 1}
    a1 = count(probe)["active"]
    slope = count({**probe, wkey: 2})["active"] - a1
    width = 1 + (target - a1) / slope
    if width < 1:
        raise DeriveError(f"{where}: no expert width gives {num_experts} experts {target} active parameters")
    return {**probe, wkey: _round(width, multiple_of)}
