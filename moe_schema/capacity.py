"""The knowledge regime of a training run and the knowledge it stored, in bits. Pure python.

Regime (``regime``): tokens per parameter, epochs over the corpus, exposures per fact in each
bucket (biographies seen during training: each states every fact of its entity once), and whether
the corpus's facts exceed the build's capacity at ~2 bits per parameter (Allen-Zhu & Li, "Physics
of Language Models 3.3", arXiv 2404.05405: ~2 bits/param after ~1000 exposures, ~1 after 100).

Knowledge stored (``knowledge_bits``), a simple estimate after their capacity measure: a fact of an
attribute with value set ``V`` holds ``log2 |V|`` bits. From 4-way multiple-choice accuracy ``a``
the fraction of facts known is guess-corrected, ``known = max(0, (a - 1/4) / (3/4))`` (a model that
knows a fraction ``q`` and guesses the rest scores ``q + (1 - q)/4``). Bits stored in a bucket:
``entities in bucket × Σ_attributes known × log2 |V|``; the total over buckets, per total parameter.
It understates partial knowledge (Allen-Zhu & Li use the value's loss, not accuracy).

Bits stored the paper's way (``bits_stored``), for a ``bios`` corpus: Allen-Zhu & Li's bit-complexity
measure for bioS(N) (their Definition 4.3; their Theorem 3.2 is stated for the bioD data, not bioS), over
the whole population of N persons,

    bits = N log2((N0 - N) / e^p1)  +  N log2(S0 / e^p2)
         = [N log2(N0 - N) - L_name / ln 2]  +  [N Σ_a log2 |V_a| - Σ_a L_a / ln 2]

with ``N0`` the name space (400 x 400 x 1000), ``S0 = Π_a |V_a|``, ``L_name`` the summed cross-entropy
(nats) of the first-sentence name tokens after BOS (N p1) and ``L_a`` that of attribute ``a``'s value
tokens in context (N p2 split by attribute; the employer's city, whose |V| is 1, counts its loss
against 0 bits). The loss is the model's own full-vocabulary next-token cross-entropy: a model
that puts probability 1 on every right value stores exactly ``N log2 S0``; one uniform over each
attribute's values stores 0; nothing is floored. ``N0 - N`` is the paper's name-ambiguity term (the
names already taken). The two parts are reported apart; ``bits`` is their sum (the paper's), and
``value_bits`` the attributes alone.

The most the bound can give (``max_bits``): the values' ``N log2 S0`` plus the name ceiling. A model
reads a biography's first name right after BOS, before anything says whose biography it is, so
its name loss is at least the entropy of a uniform draw among the N persons it saw, ``N ln N``;
the name term is then at most ``name_ceiling = N log2((N0 - N) / N)``, the measured formula at that
loss (not ``N log2(N0 - N)``, which is N log2 N higher: 282 bits at N = 50, ~780k at N = 50,000).
Using the formula's own maximum keeps ``bits <= max_bits`` exact; ``N log2(N0 / N)`` differs from it
by ``N log2(N0 / (N0 - N))`` (0.036 bits at N = 2,000, 23 bits at N = 50,000).

What the paper predicts per build (``expectation``): the capacity law is a peak over model sizes,
~2 bits/param at 1000 exposures and ~1 at 100; gated MLPs (SwiGLU: every family here) are ~1.3x
lower at 100 exposures (1 / 1.3 = 0.77) and about the same at 1000. A build can reach at most
``R_max = max_bits / P``, so the expectation is ``min(R_max, peak)``; where ``R_max < 1.5 x peak``
the corpus, not the build's capacity, bounds the figure ("bounded by the corpus").

The MoE factor (``moe_factor``): the paper's MoE (32 experts, each as wide as the model, top-1)
stores 1.3x fewer bits/param than the dense law at 1000 exposures, 1.5x at 100. The factor is
quoted only for that geometry.
"""

from __future__ import annotations

import math

CHANCE = 0.25  # 4-way multiple choice
BITS_PER_PARAM = 2.0
PEAK = {100: 1.0, 1000: 2.0}  # the law's peak bits/param over model sizes, at these exposures per person
GATED_FACTOR = {100: 1.3, 1000: 1.0}  # gated MLP (SwiGLU) below the law, by exposures
MOE_FACTOR = {100: 1.5, 1000: 1.3}  # the paper's 32-expert MoE below the law, by exposures
PAPER_EXPERTS = 32
BOUNDED_MARGIN = 1.5  # R_max below this times the peak: the corpus bounds the figure


def known_fraction(accuracy: float) -> float:
    return min(1.0, max(0.0, (accuracy - CHANCE) / (1 - CHANCE)))


def fact_bits(meta: dict) -> float:
    """Bits of all the corpus's facts: entities × Σ log2 |V| over attributes."""
    return meta["entities"] * sum(math.log2(n) for n in meta["value_counts"].values())


def regime(meta: dict, tokens_trained: int, params: dict) -> dict:
    """What the report states about a knowledge run: see the module doc. ``meta``: a corpus's meta.json."""
    epochs = tokens_trained / meta["tokens"]
    facts = fact_bits(meta) if meta.get("kind") == "knowledge" else None
    out = {
        "tokens_trained": tokens_trained,
        "corpus_tokens": meta["tokens"],
        "epochs": epochs,
        "tokens_per_param": tokens_trained / params["total"],
        "tokens_per_active_param": tokens_trained / params["active"],
        "tokenizer": meta.get("tokenizer", "byte"),  # every token count here is in this tokenizer's tokens
    }
    if facts is None:
        return out
    out["exposures_per_fact"] = {
        b: {k: v * epochs for k, v in stats.items() if k.startswith("exposures_")}
        for b, stats in meta["buckets"].items()}
    out["fact_bits"] = facts
    out["capacity_bits_at_2_per_param"] = BITS_PER_PARAM * params["total"]
    out["facts_exceed_capacity"] = facts > BITS_PER_PARAM * params["total"]
    return out


def knowledge_bits(meta: dict, accuracy: dict, total_params: int | None = None) -> dict:
    """Bits stored, from ``accuracy[bucket]`` (a number) or ``accuracy[bucket][attribute]`` (numbers).

    A bucket-level number applies to every attribute (bits use the mean of log2 |V|)."""
    by_bucket = {}
    for bucket, acc in accuracy.items():
        n = meta["buckets"][bucket]["entities"]
        per_attr = acc if isinstance(acc, dict) else {a: acc for a in meta["value_counts"]}
        by_bucket[bucket] = n * sum(known_fraction(a) * math.log2(meta["value_counts"][attr])
                                    for attr, a in per_attr.items())
    bits = sum(by_bucket.values())
    return {"bits": bits, "by_bucket": by_bucket, "fact_bits": fact_bits(meta),
            "bits_per_param": bits / total_params if total_params else None}


def accuracy_by_attribute(rows: list[dict], samples: list[dict], metric: str = "acc") -> dict:
    """``{attribute: accuracy}`` for one bucket: task rows (the jsonl, in order) joined with an
    evaluate job's per-document ``samples`` by ``doc_id``."""
    hits: dict[str, list[float]] = {}
    for s in samples:
        hits.setdefault(rows[s["doc_id"]]["attribute"], []).append(float(s[metric]))
    return {a: sum(v) / len(v) for a, v in hits.items()}


def bits_stored(measured: dict, params: dict | None = None) -> dict:
    """Bits stored from a train result's ``capacity`` scoring (``workers.training.capacity``): see
    the module doc. ``params`` (``count_params``'s): adds bits per parameter with and without the
    embeddings (input and output)."""
    n, loss = measured["persons"], measured["loss_nats"]
    ln2 = math.log(2)
    per_attr = {a: n * math.log2(v) - loss[a] / ln2 for a, v in measured["value_counts"].items()}
    value_bits = sum(per_attr.values())
    name_bits = None
    if "name" in loss and measured.get("name_space"):
        name_bits = n * math.log2(measured["name_space"] - n) - loss["name"] / ln2
    bits = value_bits + (name_bits or 0.0)
    facts = n * sum(math.log2(v) for v in measured["value_counts"].values())
    out = {"bits": bits, "value_bits": value_bits, "name_bits": name_bits, "by_attribute": per_attr,
           "fact_bits": facts,  # the values' bits; max_bits adds the name ceiling
           "max_bits": facts + (name_ceiling(n, measured["name_space"]) if name_bits is not None else 0.0),
           "persons": n, "tokenizer": measured.get("tokenizer")}
    if params:
        for key, count in (("total", params.get("total")), ("total_no_embed", params.get("total_no_embed"))):
            out[f"bits_per_param_{key}"] = bits / count if count else None
            out[f"value_bits_per_param_{key}"] = value_bits / count if count else None
    return out


def name_ceiling(persons: int, name_space: int) -> float:
    """The most the name term can give: ``N log2((N0 - N) / N)``, its value at name loss ``N ln N``
    (uniform over the N names seen). See the module doc."""
    return persons * math.log2((name_space - persons) / persons)


def paper_exposures(exposures: float | None) -> int | None:
    """The paper's exposure count (100 or 1000) within a factor 1.5 of ``exposures``, else None."""
    if not exposures or exposures <= 0:
        return None
    near = min(PEAK, key=lambda e: abs(math.log(exposures / e)))
    return near if abs(math.log(exposures / near)) < math.log(1.5) else None


def expectation(exposures: float | None, r_max: float, gated: bool = True) -> dict | None:
    """What the paper predicts for one build: ``peak`` (the law's bits/param at the nearest of 100 /
    1000 exposures, lowered 1.3x for a gated MLP at 100), ``expected = min(r_max, peak)``, and
    ``bounded`` (the corpus bounds the figure: ``r_max < 1.5 x peak``). None away from 100 / 1000."""
    e = paper_exposures(exposures)
    if e is None:
        return None
    peak = PEAK[e] / (GATED_FACTOR[e] if gated else 1.0)
    return {"exposures": e, "peak": peak, "r_max": r_max, "expected": min(r_max, peak),
            "bounded": r_max < BOUNDED_MARGIN * peak}


def moe_factor(exposures: float | None, num_experts: int | None, top_k: float | None,
               expert_width: int | None, hidden: int | None) -> tuple[float | None, str]:
    """The paper's MoE factor for this geometry and exposure count, and the words the report prints:
    a factor only for 32 experts, each as wide as the model, top-1, at ~100 or ~1000 exposures."""
    e = paper_exposures(exposures)
    shape = f"{num_experts} experts of width {expert_width}, hidden {hidden}, top-{top_k:g}" if top_k else \
        f"{num_experts} experts"
    if not (top_k == 1 and expert_width == hidden and expert_width):
        return None, f"not the paper's geometry ({shape}; the paper: 32 experts as wide as the model, top-1)"
    if num_experts != PAPER_EXPERTS:
        return None, f"{num_experts} experts: not the paper's geometry (32)"
    if e is None:
        return None, "no paper figure at this exposure count (100 or 1000)"
    return MOE_FACTOR[e], f"{MOE_FACTOR[e]:g}x below the dense law at {e} exposures (32 experts, width = hidden, top-1)"


def tied_equivalent(total: int, vocab: int, hidden: int, tied: bool) -> int:
    """Parameters counted the paper's way (one embedding table): an untied build less its output
    table (``vocab x hidden``); a tied build as it is."""
    return total if tied else total - vocab * hidden
