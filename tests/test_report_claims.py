"""The answer card's logic on constructed runs (no models): Holm within each claim, each claim's
boundary, sign and margin base, no verdict on untrained builds, and the number rule.

Constructed runs are tests/data/answers_fixture without its sweep, with one claim's per-seed values
rewritten so that getting the boundary, the sign or the margin base wrong changes the verdict.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from harness.report.answers import verdict_table
from harness.report.card import UNTRAINED, build_card
from harness.report.numbers import fmt, fmt_ci, fmt_effect, fmt_signed, tick
from harness.report.run import Run
from harness.report.seeds import ModelPair
from harness.report.pairdiff import PairRow
from harness.report.stats import holm_adjusted_p, holm_levels, t_interval, t_ppf
from harness.report.verdicts import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, Evidence, all_verdicts, holm_family, judge

DATA = Path(__file__).resolve().parent / "data"
ANSWERS = DATA / "answers_fixture"
EMPTY = Run(Path("."), {}, {}, [])


# ---- the number rule -----------------------------------------------------------------------------
def test_numbers_have_four_significant_digits_and_switch_to_scientific():
    assert fmt(3078819961374.3672) == "3.079e+12"        # the word perplexity
    assert fmt(883812537.6714) == "8.838e+08"
    assert fmt(1.23456) == "1.235" and fmt(0.0123456) == "0.01235" and fmt(12345.6) == "12,350"
    assert fmt(999_999.7) == "1.000e+06" and fmt(9.99996) == "10.00"
    assert fmt(3.2e-7) == "3.200e-07" and fmt(0.0) == "0" and fmt(42) == "42" and fmt(None) == "-"
    assert fmt(float("nan")) == "nan" and fmt_signed(0.5) == "+0.5000" and fmt_signed(-0.5) == "-0.5000"


def test_an_effect_narrower_than_the_printed_precision_keeps_its_digits():
    # "better by 0.0000 … [-0.0000, -0.0000]" in the issue: a non-zero effect never prints as zero
    mean, lo, hi = fmt_effect(-3.2e-7, -4e-7, -2.4e-7)
    assert (mean, lo, hi) == ("-3.200e-07", "-4.000e-07", "-2.400e-07")
    # a CI narrower than 4 significant digits: decimals are added until its ends differ
    assert fmt_effect(0.123456, 0.12344, 0.12347) == ("+0.123456", "+0.123440", "+0.123470")
    # large values: scientific with enough digits to show the width
    m, a, b = fmt_effect(3.0788e12, 3.0787e12, 3.0789e12)
    assert a != b and m.startswith("+3.0788") and "e+12" in m
    assert fmt_ci(-0.0708, 0.0308, mean=-0.02) == "[-0.07080, +0.03080]"
    assert fmt_effect(0.0, 0.0, 0.0) == ("+0", "+0", "+0")
    # beyond 8 decimals: scientific with the digits the width needs
    m, a, b = fmt_effect(500.0, 500 - 1e-9, 500 + 2e-9)
    assert a != b != m and m.startswith("+5.000000000")


def test_tick_labels_use_three_significant_digits():
    assert [tick(x) for x in (120_000, 140_000, 1.2e6, 0.5, 1e-5, 0, 2.5)] == [
        "120,000", "140,000", "1.2e6", "0.5", "1e-5", "0", "2.5"]


# ---- Holm's step-down, against hand values -------------------------------------------------------
def test_holm_levels_and_adjusted_p_against_hand_values():
    ps = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005 (≤ .05/4 = .0125: reject), 0.01 (≤ .05/3: reject), 0.03 (> .05/2: stop), 0.04
    levels = holm_levels(ps, 0.05)
    assert [r for _, r in levels] == [True, False, False, True]
    assert [round(l, 6) for l, _ in levels] == [round(1 - 0.05 / 3, 6), 0.975, 0.975, 0.9875]
    assert holm_adjusted_p(ps) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_levels([0.2]) == [(0.95, False)] and holm_levels([0.01]) == [(0.95, True)]


def test_p_value_and_interval_at_another_level_by_hand():
    ci = t_interval([1.0, 2.0, 3.0])                      # mean 2, sd 1, se 1/sqrt(3), df 2
    ev = Evidence(ci.mean, ci.lo, ci.hi, "seeds", 3, (1.0, 2.0, 3.0), ("1", "2", "3"), ci.sd)
    t = 2.0 / (1 / math.sqrt(3))                           # 3.4641
    assert ev.p_value(0.0) == pytest.approx(2 * (0.5 - t / (2 * math.sqrt(2 + t * t))), abs=1e-9)  # t cdf, df 2
    lo, hi = ev.at_level(0.99)
    assert (hi - lo) / 2 == pytest.approx(t_ppf(0.995, 2) / math.sqrt(3), rel=1e-9)  # 9.925 × se
    assert ev.at_level(0.95) == pytest.approx((ci.lo, ci.hi))


def _row(per_seed, dense=1.0, task="kg_heldout_seen") -> PairRow:
    seeds = [(f"moe#s{i + 1}", f"dense#s{i + 1}") for i in range(len(per_seed))]
    mean = sum(per_seed) / len(per_seed)
    return PairRow(ModelPair("active", "moe", "dense", 1.0, seeds), task, "bits_per_byte", dense + mean, dense,
                   "no per-document samples", None, len(per_seed), tuple(per_seed), t_interval(per_seed))


def test_one_of_eight_that_holds_only_before_adjustment_is_inconclusive_after():
    # seven comparisons nowhere near, one whose raw 95% CI clears 0 but not its 1 − 0.05/8 one
    far = [judge("5", _row([0.01, -0.01, 0.005], task=f"t{i}"), False, 0.0, f"native vs s{i}", EMPTY)
           for i in range(7)]
    near = judge("5", _row([0.004, 0.006, 0.008], task="t7"), False, 0.0, "native vs s7", EMPTY)
    assert near.verdict == HOLDS and near.evidence.lo > 0    # raw: holds
    family = holm_family(far + [near])
    assert near.raw_verdict == HOLDS and near.verdict == INCONCLUSIVE and near.adj_lo < 0 < near.adj_hi
    assert near.level == pytest.approx(1 - 0.05 / 8) and near.family == 8
    card = build_card(EMPTY, {"5": family})
    assert card.lines[0].verdict == INCONCLUSIVE
    assert card.lines[0].tally == "holds in 0 of 8 after Holm (1 before)"
    table = verdict_table(EMPTY, {"5": family})
    row = next(r for r in table.rows if r[2] == "t7")
    col = table.columns.index
    assert row[col("verdict (Holm)")] == INCONCLUSIVE and row[col("raw verdict")] == HOLDS
    assert row[col("raw 95% CI (metric unit)")] != row[col("Holm-adjusted CI (metric unit)")]
    # a strong one in the same family still holds after adjustment
    strong = judge("5", _row([0.030, 0.031, 0.032], task="t8"), False, 0.0, "native vs s8", EMPTY)
    holm_family(far + [strong])
    assert strong.verdict == HOLDS


# ---- each claim's boundary, sign and margin base on constructed runs -------------------------------
def constructed(tmp_path: Path, tasks, values: dict[str, list[float]], metric: str) -> Run:
    """answers_fixture without its sweep, with ``metric`` of each of ``tasks`` set per model and seed."""
    run = tmp_path / "run"
    shutil.copytree(ANSWERS, run)
    plan = json.loads((run / "plan.json").read_text())
    plan["variants"] = [v for v in plan["variants"] if "[" not in v["name"]]
    (run / "plan.json").write_text(json.dumps(plan))
    out = []
    for line in (run / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "[" in (r.get("variant") or ""):
            continue
        model, _, seed = (r.get("variant") or "").rpartition("#s")
        for task in tasks:
            if r.get("kind") == "evaluate" and task in (r.get("metrics") or {}) and model in values:
                r["metrics"][task][metric] = values[model][int(seed) - 1]
        out.append(json.dumps(r))
    (run / "results.jsonl").write_text("\n".join(out) + "\n")
    return Run.load(run)


HELD = ("kg_heldout_seen", "kg_heldout_unseen")


def _verdicts(run: Run, claim: str) -> set[str]:
    return {v.verdict for v in all_verdicts(run)[claim]}


@pytest.mark.parametrize("moe, twin, want", [
    ([1.00, 1.01, 0.99], [1.10, 1.12, 1.09], HOLDS),            # sign: lower MoE loss favours the claim
    ([1.10, 1.12, 1.09], [1.00, 1.01, 0.99], DOES_NOT_HOLD),
    ([1.005, 1.006, 1.005], [1.0, 1.0, 1.0], DOES_NOT_HOLD),    # boundary 0: a 1% margin would call it holds
])
def test_claim1_sign_and_boundary(tmp_path, moe, twin, want):
    run = constructed(tmp_path, HELD, {"moe": moe, "dense-active": twin}, "bits_per_byte")
    assert _verdicts(run, "1") == {want}


@pytest.mark.parametrize("moe, want", [
    ([0.980, 0.979, 0.981], DOES_NOT_HOLD),        # sign: the MoE 2% better breaks "dense as good or better"
    ([0.995, 0.9949, 0.9951], HOLDS),               # boundary −1%, not 0: a 0.5% MoE lead is within the margin
    ([1 - 0.00994, 1 - 0.00995, 1 - 0.00996], HOLDS),  # margin base: 1% of the dense twin (1.0), not of the MoE
])
def test_claim2_sign_boundary_and_margin_base(tmp_path, moe, want):
    run = constructed(tmp_path, HELD, {"moe": moe, "dense-total": [1.0, 1.0, 1.0]}, "bits_per_byte")
    vs = all_verdicts(run)["2"]
    assert {v.verdict for v in vs} == {want}
    assert all(v.boundary == pytest.approx(-0.01) for v in vs)  # 1% of the twin's 1.0
    if want == HOLDS and moe[0] < 0.991:  # the margin-base case: relative to the MoE it would not hold
        assert all(v.adj_hi < -0.01 * (1 - 0.00995) for v in vs)


@pytest.mark.parametrize("moe, twins, want", [
    ([0.80, 0.82, 0.79], [0.50, 0.52, 0.49], HOLDS),            # sign: more tail bits favour the claim
    ([0.50, 0.52, 0.49], [0.80, 0.82, 0.79], DOES_NOT_HOLD),
    ([0.4985, 0.4986, 0.4984], [0.5, 0.5, 0.5], DOES_NOT_HOLD),  # boundary 0: a 1% margin would call it holds
])
def test_claim3_sign_and_boundary(tmp_path, moe, twins, want):
    run = constructed(tmp_path, ("kg_values_tail",), {"moe": moe, "dense-active": twins, "dense-total": twins},
                      "bits")
    assert _verdicts(run, "3") == {want}


@pytest.mark.parametrize("moe, total_twin, want, word", [
    ([0.50, 0.52, 0.49], [0.80, 0.82, 0.79], HOLDS, "holds"),                  # MoE < dense-total: as predicted
    ([0.80, 0.82, 0.79], [0.50, 0.52, 0.49], DOES_NOT_HOLD, "does not hold"),  # flipped: the opposite
])
def test_claim3_family_is_equal_active_only_and_equal_total_is_judged_as_the_paper_predicts(
        tmp_path, moe, total_twin, want, word):
    """Allen-Zhu & Li predict that at equal total parameters the MoE stores less: an equal-total pair
    is never in claim 3's Holm family, but judged apart ("3t"), positive when the MoE stores less."""
    active_twin = [x - 0.3 for x in moe]  # the MoE well ahead of its equal-active twin in both cases
    run = constructed(tmp_path, ("kg_values_tail",), {"moe": moe, "dense-active": active_twin,
                                                     "dense-total": total_twin}, "bits")
    verdicts = all_verdicts(run)
    c3, paper = verdicts["3"], verdicts["3t"]
    assert [v.extra["kind"] for v in c3] == ["active"] and c3[0].family == 1 and c3[0].verdict == HOLDS
    assert [v.extra["kind"] for v in paper] == ["total"] and paper[0].family == 1
    assert paper[0].verdict == want and paper[0].evidence.mean == pytest.approx(
        (sum(total_twin) - sum(moe)) / 3)  # twin − MoE: positive, the MoE stores less
    note = next(n for n in build_card(run, verdicts).notes if n.startswith("Beside claim 3"))
    assert note.startswith("Beside claim 3, outside its family: at equal total parameters the MoE stores less "
                           f"long-tail knowledge, as the paper predicts (Allen-Zhu & Li, arXiv 2404.05405: 1.3–1.5× "
                           f"fewer bits per parameter): {word} ")
    assert "twin − MoE " + ("+" if want == HOLDS else "-") in note and "moe vs dense-total" in note
    # the claim's line on the card tallies its own family alone
    line = next(c for c in build_card(run, verdicts).lines if c.claim == "3")
    assert line.tally == "holds in 1 of 1 after Holm (1 before)"


@pytest.mark.parametrize("native, others, want", [
    ([1.00, 1.01, 0.99], [1.20, 1.22, 1.19], HOLDS),            # sign: a higher loss elsewhere favours native
    ([1.20, 1.22, 1.19], [1.00, 1.01, 0.99], DOES_NOT_HOLD),
    ([1.005, 1.006, 1.005], [1.0, 1.0, 1.0], DOES_NOT_HOLD),    # boundary 0
])
def test_claim5_sign_and_boundary(tmp_path, native, others, want):
    alts = {m: others for m in ("moe@topk(k=1)", "moe@random", "moe@prune(fraction=0.5)")}
    run = constructed(tmp_path, HELD, {"moe": native, **alts}, "bits_per_byte")
    assert _verdicts(run, "5") == {want}


# ---- untrained builds ------------------------------------------------------------------------------
def test_untrained_builds_get_no_verdict_and_the_card_says_why(tmp_path):
    """The smoke-shaped fixture with its routing pair made native: claim 5 has comparisons, but every
    build is a config build never trained, so none is judged."""
    run_dir = tmp_path / "smoke-like"
    shutil.copytree(DATA / "run_fixture", run_dir)
    plan = json.loads((run_dir / "plan.json").read_text())
    for v in plan["variants"]:
        if v["name"] == "moe-a@topk(k=2)":
            v["routing"] = {"name": "native", "params": {}}
    (run_dir / "plan.json").write_text(json.dumps(plan))
    (run_dir / "results.jsonl").write_text("".join(
        l + "\n" for l in (run_dir / "results.jsonl").read_text().splitlines() if '"kind": "train"' not in l))
    run = Run.load(run_dir)
    assert all(run.untrained(v) for v in run.variants)
    assert all(vs == [] for vs in all_verdicts(run).values())
    card = build_card(run)
    assert card.headline == UNTRAINED and not card.lines
    assert "suites/claims.yaml" in card.notes[0] and "suites/longtail.yaml" in card.notes[0]
    # the same builds as checkpoints are judged
    for v in plan["variants"]:
        v["build"] = {"checkpoint": f"/ckpt/{v['model']}"}
    (run_dir / "plan.json").write_text(json.dumps(plan))
    assert all_verdicts(Run.load(run_dir))["5"]


def test_the_claims_card_quotes_every_claim_it_judges(tmp_path):
    from harness.report.claims import claims

    card = build_card(Run.load(ANSWERS))
    assert [c.claim for c in card.lines] == ["1", "2", "3", "5"]
    for line in card.lines:
        assert line.quote == claims()[line.claim]
        assert re.search(r"\[[-+][\d.e+-]+, [-+][\d.e+-]+\] \(\d+(\.\d+)?% CI", line.effect), line.effect
        assert "bits/" in line.effect and "tokens/param" in line.regime
    assert any("Holm" in n for n in card.notes)


def test_the_cards_regime_says_whether_the_facts_exceed_the_smaller_builds_capacity():
    """Claim 3's regime in a few words names the binding regime: facts above ~2 bits/param of the
    smaller build (embeddings counted), or that capacity does not bind, or nothing where unrecorded."""
    from harness.report.card import regime_words
    from harness.report.knowledge import Regime

    small = Regime("dense-active", total_params=5_000, tokens_per_param=1000.0, exposures={"tail": 100.0},
                   fact_bits=12_000.0)
    big = Regime("moe", total_params=7_500, tokens_per_param=700.0, fact_bits=12_000.0)
    assert regime_words([small, big]).endswith("tail facts seen ~100×, facts exceed the smaller build's capacity")
    roomy = Regime("dense-active", total_params=6_001, fact_bits=12_000.0)
    assert regime_words([roomy, big]).endswith("capacity does not bind")
    assert "capacity" not in regime_words([Regime("moe", total_params=7_500)])
