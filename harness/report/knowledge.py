"""Knowledge a trained build stored, from the exact knowledge tasks, and the regime it was trained in.

Exact knowledge tasks ``<group>_values_<bucket>`` (head / torso / tail) ask one attribute of one
entity as a choice over *all* the attribute's values (chance 1/V). Their per-document ``bits`` is the
Allen-Zhu & Li (arXiv 2404.05405) measure: log2 V minus the cross-entropy in bits of the right value
under the model's distribution normalised over the V values, floored at 0.

Bits stored in a bucket = mean ``bits`` per document × entities in the bucket × attributes per
entity (each document is one (entity, attribute) fact, so the mean estimates the bits of an average
fact). Bits per parameter = the buckets' sum / the build's total parameters, beside the ~2 bits per
parameter ceiling the same paper measures.

The regime (tokens per parameter, exposures per fact, fact bits against capacity) comes from the
train result's corpus meta, in either of the shapes the workers write (``corpus.regime`` as computed
by ``moe_schema.capacity.regime``, or the same figures at the top of ``corpus``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.report.buckets import BUCKETS, BucketGroup, bucket_groups
from harness.report.run import Run

BITS_PER_PARAM = 2.0
VALUES_SUFFIX = "_values"


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def corpus_meta(run: Run, variant: str) -> dict | None:
    """The knowledge corpus meta of the variant's train result (``corpus`` or ``train.corpus``)."""
    for r in run.trained_by(variant):
        for corpus in (r.get("corpus"), (r.get("train") or {}).get("corpus")):
            if isinstance(corpus, dict):
                return corpus
    return None


@dataclass
class Regime:
    """What a verdict states about how the build was trained; None where the run does not say."""

    variant: str
    total_params: float | None = None
    tokens_per_param: float | None = None
    exposures: dict[str, float] = field(default_factory=dict)  # bucket -> mean exposures per fact
    fact_bits: float | None = None
    capacity_bits: float | None = None
    tokenizer: str | None = None  # what every token count above is counted in (byte / word)

    @property
    def exposures_mean(self) -> float | None:
        vals = [self.exposures[b] for b in BUCKETS if b in self.exposures] or list(self.exposures.values())
        return sum(vals) / len(vals) if vals else None

    @property
    def facts_exceed(self) -> bool | None:
        if self.fact_bits is None or self.capacity_bits is None:
            return None
        return self.fact_bits > self.capacity_bits


def _exposures(value) -> dict[str, float]:
    if _num(value):
        return {"all": float(value)}
    if not isinstance(value, dict):
        return {}
    out = {}
    for b, v in value.items():
        if _num(v):
            out[b] = float(v)
        elif isinstance(v, dict) and _num(v.get("exposures_mean")):
            out[b] = float(v["exposures_mean"])
    order = list(BUCKETS) + sorted(set(out) - set(BUCKETS))
    return {b: out[b] for b in order if b in out}


def regime_of(run: Run, variant: str) -> Regime | None:
    corpus = corpus_meta(run, variant)
    total = run.params(variant).get("total")
    if corpus is None:
        train = run.training(variant) or {}
        if _num(train.get("tokens")) and _num(total):
            return Regime(variant, float(total), train["tokens"] / total)
        return None
    reg = {**{k: v for k, v in corpus.items() if k != "regime"}, **(corpus.get("regime") or {})}
    capacity = reg.get("capacity_bits_at_2_per_param", reg.get("capacity_bits"))
    if not _num(capacity) and _num(total):
        capacity = BITS_PER_PARAM * total
    tpp = reg.get("tokens_per_param")
    if not _num(tpp) and _num(total) and _num(reg.get("tokens_trained")):
        tpp = reg["tokens_trained"] / total
    return Regime(variant, float(total) if _num(total) else None, float(tpp) if _num(tpp) else None,
                  _exposures(reg.get("exposures_per_fact")),
                  float(reg["fact_bits"]) if _num(reg.get("fact_bits")) else None,
                  float(capacity) if _num(capacity) else None,
                  reg.get("tokenizer") if isinstance(reg.get("tokenizer"), str) else None)


def facts_against_capacity(regimes: list[Regime]) -> tuple[Regime | None, float | None, float | None]:
    """(the smaller build's regime, the facts' bits, its capacity at ~2 bits per parameter), or Nones
    where the run did not record them: the facts bind when they exceed that capacity."""
    regimes = [r for r in regimes if r is not None]
    sized = [r for r in regimes if r.total_params is not None]
    small = min(sized, key=lambda r: r.total_params) if sized else None
    facts = next((r.fact_bits for r in regimes if r.fact_bits is not None), None)
    if small is None or facts is None:
        return None, None, None
    return small, facts, BITS_PER_PARAM * small.total_params


def regime_sentence(regimes: list[Regime]) -> str:
    """One sentence: tokens per parameter of each build, exposures per fact, facts vs the smaller
    build's capacity at ~2 bits per parameter."""
    regimes = [r for r in regimes if r is not None]
    if not regimes:
        return "Regime: not recorded (no train result carries a corpus or token count)."
    tpp = [f"{r.variant} {r.tokens_per_param:.3g}" for r in regimes if r.tokens_per_param is not None]
    parts = [f"tokens per (total) parameter: {', '.join(tpp)}" if tpp else "tokens per parameter: not recorded"]
    exp = next((r.exposures for r in regimes if r.exposures), None)
    tok = next((r.tokenizer for r in regimes if r.tokenizer), None)
    if tok:
        parts[0] += f" ({tok} tokens)"
    if exp:
        parts.append("exposures per fact: " + ", ".join(f"{b} {v:.3g}" for b, v in exp.items()))
    else:
        parts.append("exposures per fact: not recorded")
    small, facts, cap = facts_against_capacity(regimes)
    if small is not None:
        if facts > cap:
            parts.append(f"facts exceed the smaller build's capacity: they hold {facts:,.0f} bits, more than "
                         f"~{cap:,.0f} bits at 2 bits/param ({small.variant}, embeddings counted)")
        else:
            parts.append(f"the facts hold {facts:,.0f} bits, less than the smaller build's ~{cap:,.0f}-bit "
                         f"capacity at 2 bits/param ({small.variant}): capacity does not bind")
    else:
        parts.append("fact bits vs capacity: not recorded")
    return "Regime: " + "; ".join(parts) + "."


# ---- exact knowledge tasks -------------------------------------------------------------------
def values_groups(run: Run) -> list[BucketGroup]:
    """The ``<group>_values_<bucket>`` task groups of the run."""
    return [g for g in bucket_groups(run) if g.form == "tasks" and g.name.endswith(VALUES_SUFFIX)]


@dataclass
class Stored:
    """Knowledge one variant stored in one values group."""

    variant: str
    per_doc: dict[str, float]            # bucket -> mean bits per document
    acc: dict[str, float]                # bucket -> accuracy over all values
    chance: float | None                 # mean 1/V over attributes
    by_bucket: dict[str, float] | None   # bucket -> bits stored (None without the corpus meta)
    total_params: float | None
    fact_bits: float | None = None       # bits all the corpus's facts hold

    @property
    def bits(self) -> float | None:
        return sum(self.by_bucket.values()) if self.by_bucket else None

    @property
    def bits_per_param(self) -> float | None:
        return self.bits / self.total_params if self.bits is not None and self.total_params else None


def stored(run: Run, variant: str, group: BucketGroup) -> Stored | None:
    metrics = run.metrics(variant)
    per_doc = {b: float(metrics[t]["bits"]) for b, t in group.tasks.items() if _num(metrics.get(t, {}).get("bits"))}
    acc = {b: float(metrics[t]["acc"]) for b, t in group.tasks.items() if _num(metrics.get(t, {}).get("acc"))}
    if not per_doc and not acc:
        return None
    corpus = corpus_meta(run, variant) or next(
        (c for c in (corpus_meta(run, v) for v in run.variants) if c is not None), None)
    chance, by_bucket, facts = None, None, None
    if corpus and isinstance(corpus.get("value_counts"), dict) and corpus["value_counts"]:
        counts = [n for n in corpus["value_counts"].values() if _num(n) and n > 0]
        chance = sum(1.0 / n for n in counts) / len(counts) if counts else None
        buckets = corpus.get("buckets") or {}
        ents = {b: (buckets.get(b) or {}).get("entities") for b in per_doc}
        if per_doc and all(_num(e) for e in ents.values()):
            by_bucket = {b: per_doc[b] * ents[b] * len(corpus["value_counts"]) for b in per_doc}
        if all(_num(n) and n > 1 for n in corpus["value_counts"].values()) and _num(corpus.get("entities")):
            facts = corpus["entities"] * sum(math.log2(n) for n in corpus["value_counts"].values())
    reg = regime_of(run, variant)
    facts = reg.fact_bits if reg is not None and reg.fact_bits is not None else facts
    total = run.params(variant).get("total")
    return Stored(variant, per_doc, acc, chance, by_bucket, float(total) if _num(total) else None, facts)
