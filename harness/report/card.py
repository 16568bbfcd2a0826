"""The answer card: the report's first screen, one line per claim the run can speak to.

Each line quotes the claim from ``claims.md`` (:mod:`harness.report.claims`), gives the claim's
verdict over its family of comparisons after Holm's step-down (:func:`verdicts.holm_family`), the
headline comparison's effect with its adjusted interval and units, and the regime in a few words. A
prediction of a claim's own source (``verdicts.PREDICTIONS``: at equal total parameters the MoE stores
less) gets a line of its own under the card, judged as its own family, never in the claim's.
A run whose comparisons all read untrained builds gets no verdict, and the card says why and which
suites can judge. Pure data; markdown.py and html.py render it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.report.claims import claim as claim_text
from harness.report.knowledge import Regime, facts_against_capacity, regime_sentence
from harness.report.numbers import fmt, fmt_effect, fmt_level, unit
from harness.report.run import Run
from harness.report.verdicts import CLAIMS, PREDICTIONS, Verdict, all_verdicts, untrained_variants

#: the suites that train their builds, and the claims each can judge
JUDGING_SUITES = (("suites/claims.yaml", "claims 1, 2, 3 and 5"), ("suites/longtail.yaml", "claim 3"))
UNTRAINED = "untrained builds: no claim can be judged"
METHOD = ("Multiplicity: each claim's comparisons are one family under Holm's step-down at 5% family-wise "
          "error; the i-th strongest of m is judged on its interval at level 1 − 0.05/(m − i + 1), and from the "
          "first that does not clear the boundary on, every one is shown at that level and judged inconclusive, "
          "so each interval shown agrees with its verdict (docs/claims.md). These adjusted intervals are not "
          "simultaneous 95% intervals: four comparisons away from their boundaries cover their true values "
          "together only about 86-91% of the time.")


@dataclass
class CardLine:
    claim: str
    quote: str       # the claim in words, from claims.md
    verdict: str     # one word over the family, or "mixed"
    tally: str       # "holds in 2 of 8 after Holm (2 before)"
    effect: str      # the headline comparison: effect, adjusted CI, units, what was compared
    regime: str      # a few words
    regime_id: str = ""


@dataclass
class Card:
    lines: list[CardLine] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # under the card: method, untrained, what cannot be judged
    headline: str = ""                                # a line instead of rows (the untrained card)
    regimes: dict = field(default_factory=dict)      # regime id -> the full regime sentence (stated once)


def family_word(vs: list[Verdict]) -> str:
    words = {v.verdict for v in vs}
    return words.pop() if len(words) == 1 else "mixed"


def tally(vs: list[Verdict]) -> str:
    def count(attr):
        counts: dict[str, int] = {}
        for v in vs:
            counts[getattr(v, attr)] = counts.get(getattr(v, attr), 0) + 1
        return counts
    after, before = count("verdict"), count("raw_verdict")
    words = [w for w in ("holds", "does not hold") if after.get(w) or before.get(w)]
    parts = [f"{w} in {after.get(w, 0)} of {len(vs)} after Holm ({before.get(w, 0)} before)" for w in words]
    return "; ".join(parts) or f"none of {len(vs)} clears the boundary, before or after Holm"


def headline(vs: list[Verdict]) -> Verdict:
    """The comparison the card shows: the first at the suite's own settings (no sweep point), else the first."""
    return next((v for v in vs if not v.sweep), vs[0])


def effect_text(v: Verdict) -> str:
    e = v.evidence
    what = f"{v.subject}, {v.task}"
    if e.lo is None:
        return f"{fmt_effect(e.mean)[0]} {unit(v.metric)} (no interval: {e.why_none}); {what}"
    mean, lo, hi = fmt_effect(e.mean, v.adj_lo, v.adj_hi)
    bound = f"; boundary {fmt_effect(v.boundary)[0]}" if v.boundary else ""
    return f"{mean} {unit(v.metric)} [{lo}, {hi}] ({fmt_level(v.level)} CI{bound}); {what}"


def prediction_note(key: str, vs: list[Verdict]) -> str:
    """A prediction of a claim's source (``verdicts.PREDICTIONS``), on its own line under the card: its
    verdict over its own family (never the claim's) and its headline comparison."""
    statement, _, _, claim = PREDICTIONS[key]
    return (f"Beside claim {claim}, outside its family: {statement[0].lower() + statement[1:]}: "
            f"{family_word(vs)} ({tally(vs)}); twin − MoE {effect_text(headline(vs))}.")


def regime_words(regimes: list[Regime]) -> str:
    """The regime in a few words: tokens per total parameter, exposures per tail fact, and whether the
    facts exceed the smaller build's capacity."""
    regimes = [r for r in regimes if r is not None]
    if not regimes:
        return "regime not recorded"
    tpp = [r.tokens_per_param for r in regimes if r.tokens_per_param is not None]
    parts = []
    if tpp:
        lo, hi = min(tpp), max(tpp)
        parts.append(f"{fmt(lo, 3)}–{fmt(hi, 3)} tokens/param" if fmt(lo, 3) != fmt(hi, 3)
                     else f"{fmt(lo, 3)} tokens/param")
    exp = next((r.exposures for r in regimes if r.exposures), None)
    if exp:
        key = "tail" if "tail" in exp else next(iter(exp))
        parts.append(f"{key} facts seen ~{fmt(exp[key], 3)}×")
    small, facts, cap = facts_against_capacity(regimes)
    if small is not None:
        parts.append("facts exceed the smaller build's capacity" if facts > cap else "capacity does not bind")
    return ", ".join(parts) or "regime not recorded"


def regime_ids(verdicts: dict) -> dict[str, str]:
    """{regime sentence: "R1", "R2", ...} in order of first appearance over every verdict: the card and
    the sentences below it name a regime by its id and state it once."""
    ids: dict[str, str] = {}
    for vs in verdicts.values():
        for v in vs:
            ids.setdefault(regime_sentence(v.regimes), f"R{len(ids) + 1}")
    return ids


def build_card(run: Run, verdicts: dict | None = None) -> Card:
    verdicts = all_verdicts(run) if verdicts is None else verdicts
    card = Card()
    untrained = untrained_variants(run)
    spoken = {c: vs for c, vs in verdicts.items() if vs and c in CLAIMS}
    suites = "; ".join(f"{s} ({what})" for s, what in JUDGING_SUITES)
    if not spoken and untrained:
        card.headline = UNTRAINED
        card.notes.append(
            f"This run's builds made from a config and never trained have random weights ({', '.join(untrained)}): "
            f"no claim about trained models can be judged on them, and no other comparison here reads a claim. "
            f"The tables and plots below still show what was measured. Suites that train their builds and can "
            f"judge claims: {suites}.")
        return card
    if not spoken:
        card.headline = "No claim this run can speak to."
        card.notes.append(f"It has no pair or routing comparison a claim reads. Suites that can judge: {suites}.")
        return card
    ids = regime_ids(verdicts)  # the same ids as the sentences below the card, predictions included
    for c, vs in spoken.items():
        head = headline(vs)
        sentence = regime_sentence(head.regimes)
        rid = ids[sentence]
        card.regimes[rid] = sentence
        card.lines.append(CardLine(c, claim_text(c), family_word(vs), tally(vs), effect_text(head),
                                   regime_words(head.regimes), rid))
    card.notes += [prediction_note(k, vs) for k, vs in verdicts.items() if vs and k in PREDICTIONS]
    card.notes.append(METHOD)
    if untrained:
        card.notes.append(f"Not judged: comparisons reading untrained builds ({', '.join(untrained)}; random weights).")
    silent = [c for c in CLAIMS if not verdicts.get(c)]
    if silent:
        card.notes.append(f"This run cannot speak to claim(s) {', '.join(silent)} (see the details below).")
    return card
