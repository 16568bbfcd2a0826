"""The answer card, the report's first screen (harness/report/card.py), decided from both sides: a
trained run holding one untrained variant keeps its verdicts and says which comparisons were not
judged; a run of untrained builds only gets no verdict; each claim's word over its family, its tally
before and after Holm, its headline effect with the boundary, the regime in a few words. Hand-made
verdicts on an in-memory run: milliseconds each."""

from __future__ import annotations

from pathlib import Path

from harness.report import card as C
from harness.report.knowledge import Regime
from harness.report.run import Run
from harness.report.verdicts import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, Evidence, Verdict


def v(word, raw=None, claim="1", sweep=None, lo=0.5, hi=1.5, mean=1.0, boundary=0.0, task="kg_heldout_seen",
      regimes=(), subject="moe vs dense", why_none=""):
    e = Evidence(mean, lo, hi, "seeds" if lo is not None else "none", 3, why_none=why_none)
    return Verdict(claim, subject, task, "bits_per_byte", word, e, boundary, regimes=list(regimes),
                   sweep=sweep or {}, raw_verdict=raw or word, adjusted=(lo, hi))


def run_of(**builds) -> Run:
    """A run in memory whose variants have these builds (a dict each)."""
    plan = {"variants": [{"name": n, "build": b} for n, b in builds.items()]}
    return Run(Path("mem"), plan, {}, [], variant_order=list(builds))


TRAINED = {"checkpoint": "/ckpt"}
RANDOM = {"config": {"model_type": "qwen3_moe"}}


# ---- whose verdicts the card shows ------------------------------------------------------------
def test_a_trained_run_with_one_untrained_variant_shows_its_verdicts_and_names_what_was_not_judged():
    run = run_of(moe=TRAINED, dense=TRAINED, rand=RANDOM)
    card = C.build_card(run, {"1": [v(HOLDS)], "2": [], "3": [], "5": []})
    assert card.headline == "" and [ln.claim for ln in card.lines] == ["1"] and card.lines[0].verdict == HOLDS
    assert "Not judged: comparisons reading untrained builds (rand; random weights)." in card.notes
    assert card.notes[0] == C.METHOD
    # the card passed no claim 9: a run without quantized variants cannot speak to it either
    assert card.notes[-1] == "This run cannot speak to claim(s) 2, 3, 5, 9 (see the details below)."
    two = C.build_card(run_of(moe=TRAINED, r1=RANDOM, r2=RANDOM), {"1": [v(HOLDS)], "2": [], "3": [], "5": []})
    assert "Not judged: comparisons reading untrained builds (r1, r2; random weights)." in two.notes
    # the same run without the untrained variant: no such note
    plain = C.build_card(run_of(moe=TRAINED, dense=TRAINED), {"1": [v(HOLDS)], "2": [], "3": [], "5": []})
    assert not any(n.startswith("Not judged") for n in plain.notes) and plain.lines


def test_a_run_of_untrained_builds_only_gets_no_verdict_and_is_told_which_suites_judge():
    card = C.build_card(run_of(a=RANDOM, b=RANDOM), {"1": [], "2": [], "3": [], "5": []})
    assert card.headline == C.UNTRAINED and card.lines == [] and len(card.notes) == 1
    assert "random weights (a, b)" in card.notes[0]
    assert "suites/claims.yaml (claims 1, 2, 3 and 5); suites/longtail.yaml (claim 3)" in card.notes[0]


def test_a_run_of_trained_builds_with_no_comparison_says_no_claim_can_be_spoken_to():
    card = C.build_card(run_of(a=TRAINED), {"1": [], "2": [], "3": [], "5": []})
    assert card.headline == "No claim this run can speak to." and card.lines == []
    assert card.notes == ["It has no pair or routing comparison a claim reads. Suites that can judge: "
                          "suites/claims.yaml (claims 1, 2, 3 and 5); suites/longtail.yaml (claim 3)."]


def test_a_prediction_alone_is_not_a_claim_the_card_speaks_to():
    card = C.build_card(run_of(a=TRAINED), {"1": [], "3t": [v(HOLDS, claim="3t")]})
    assert card.headline == "No claim this run can speak to."


def test_a_prediction_gets_its_own_line_under_the_card_outside_its_claims_family():
    vs = {"1": [], "2": [], "3": [v(INCONCLUSIVE, claim="3")], "3t": [v(HOLDS, claim="3t")], "5": []}
    card = C.build_card(run_of(m=TRAINED), vs)
    assert [ln.claim for ln in card.lines] == ["3"] and card.lines[0].verdict == INCONCLUSIVE
    assert card.notes[0].startswith("Beside claim 3, outside its family: at equal total parameters the MoE "
                                    "stores less long-tail knowledge")
    assert ": holds (holds in 1 of 1 after Holm (1 before)); twin − MoE " in card.notes[0]
    assert card.notes[1] == C.METHOD


def test_each_card_line_names_its_regime_once_by_id_in_order_of_first_appearance():
    r1 = Regime("moe", 100.0, 20.0)
    r2 = Regime("moe", 100.0, 40.0)
    vs = {"1": [v(HOLDS, regimes=[r1])], "2": [v(HOLDS, claim="2", regimes=[r2])],
          "3": [v(HOLDS, claim="3", regimes=[r1])], "5": []}
    card = C.build_card(run_of(m=TRAINED), vs)
    assert [ln.regime_id for ln in card.lines] == ["R1", "R2", "R1"]
    assert sorted(card.regimes) == ["R1", "R2"] and "20" in card.regimes["R1"] and "40" in card.regimes["R2"]
    assert card.lines[0].regime == "20.0 tokens/param" and card.lines[1].regime == "40.0 tokens/param"
    assert card.lines[0].quote and card.lines[0].quote != card.lines[1].quote


# ---- a claim's word and tally -----------------------------------------------------------------
def test_a_claims_word_is_its_verdicts_common_word_else_mixed():
    assert C.family_word([v(HOLDS), v(HOLDS)]) == HOLDS
    assert C.family_word([v(HOLDS), v(INCONCLUSIVE)]) == "mixed"


def test_the_tally_counts_holds_and_does_not_hold_after_and_before_holm():
    vs = [v(HOLDS), v(INCONCLUSIVE, raw=HOLDS), v(DOES_NOT_HOLD), v(INCONCLUSIVE)]
    assert C.tally(vs) == ("holds in 1 of 4 after Holm (2 before); "
                           "does not hold in 1 of 4 after Holm (1 before)")
    assert C.tally([v(INCONCLUSIVE, raw=HOLDS)]) == "holds in 0 of 1 after Holm (1 before)"
    assert C.tally([v(INCONCLUSIVE), v(INCONCLUSIVE)]) == "none of 2 clears the boundary, before or after Holm"


def test_the_headline_is_the_first_comparison_at_the_suites_own_settings():
    swept, own, own2 = v(HOLDS, sweep={"train.tokens": 8}), v(HOLDS), v(INCONCLUSIVE)
    assert C.headline([swept, own, own2]) is own
    only_swept = [v(HOLDS, sweep={"t": 1}), v(HOLDS, sweep={"t": 2})]
    assert C.headline(only_swept) is only_swept[0]


# ---- the effect, with its boundary -------------------------------------------------------------
def test_the_effect_states_the_adjusted_interval_its_level_and_a_non_zero_boundary():
    x = v(HOLDS, mean=0.25, lo=0.125, hi=0.375)
    x.level = 0.975
    assert C.effect_text(x) == "+0.2500 bits/byte [+0.1250, +0.3750] (97.5% CI); moe vs dense, kg_heldout_seen"
    y = v(HOLDS, mean=0.25, lo=0.125, hi=0.375, boundary=-0.5)
    assert C.effect_text(y) == ("+0.2500 bits/byte [+0.1250, +0.3750] (95% CI; boundary -0.5000); "
                                "moe vs dense, kg_heldout_seen")


def test_an_effect_without_an_interval_says_why():
    x = v(INCONCLUSIVE, mean=0.25, lo=None, hi=None, why_none="no per-document samples")
    assert C.effect_text(x) == "+0.2500 bits/byte (no interval: no per-document samples); moe vs dense, kg_heldout_seen"


# ---- the regime in a few words ------------------------------------------------------------------
def test_the_regime_in_words_gives_a_range_of_tokens_per_param_or_one_value():
    assert C.regime_words([]) == "regime not recorded"
    assert C.regime_words([None]) == "regime not recorded"
    assert C.regime_words([Regime("a")]) == "regime not recorded"
    assert C.regime_words([Regime("a", 10.0, 20.0), Regime("b", 30.0, 5.0)]) == "5.00–20.0 tokens/param"
    assert C.regime_words([Regime("a", 10.0, 20.0), Regime("b", 30.0, 20.0)]) == "20.0 tokens/param"
    assert C.regime_words([Regime("a", 10.0, 20.0), Regime("b", 30.0, None)]) == "20.0 tokens/param"


def test_the_regime_names_tail_exposures_else_the_first_bucket():
    tail = Regime("a", None, None, {"head": 100.0, "tail": 4.0})
    assert C.regime_words([tail]) == "tail facts seen ~4.00×"
    head = Regime("a", None, None, {"head": 100.0, "torso": 10.0})
    assert C.regime_words([Regime("x"), head]) == "head facts seen ~100×"


def test_the_regime_says_whether_the_facts_exceed_the_smaller_builds_capacity():
    # capacity at 2 bits per parameter of the smaller build (100 params: 200 bits)
    small, big = Regime("s", 100.0, 1.0, fact_bits=201.0), Regime("b", 1000.0, 1.0)
    assert C.regime_words([big, small]) == "1.00 tokens/param, facts exceed the smaller build's capacity"
    at = Regime("s", 100.0, 1.0, fact_bits=200.0)
    assert C.regime_words([big, at]) == "1.00 tokens/param, capacity does not bind"


def test_the_card_states_its_multiplicity_method_and_the_untrained_headline_in_words():
    assert C.UNTRAINED == "untrained builds: no claim can be judged"
    assert C.METHOD == (
        "Multiplicity: each claim's comparisons are one family under Holm's step-down at 5% family-wise "
        "error; the i-th strongest of m is judged on its interval at level 1 − 0.05/(m − i + 1), and from the "
        "first that does not clear the boundary on, every one is shown at that level and judged inconclusive, "
        "so each interval shown agrees with its verdict (docs/claims.md). These adjusted intervals are not "
        "simultaneous 95% intervals: four comparisons away from their boundaries cover their true values "
        "together only about 86-91% of the time.")
    card = C.build_card(run_of(a=RANDOM), {"1": [], "2": [], "3": [], "5": []})
    assert card.notes[0] == (
        "This run's builds made from a config and never trained have random weights (a): no claim about trained "
        "models can be judged on them, and no other comparison here reads a claim. The tables and plots below "
        "still show what was measured. Suites that train their builds and can judge claims: suites/claims.yaml "
        "(claims 1, 2, 3 and 5); suites/longtail.yaml (claim 3).")
