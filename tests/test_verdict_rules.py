"""The claims' verdicts decided from both sides of each boundary (harness/report/verdicts.py): an
interval touching a non-zero boundary, claim 2's p-values taken against its -1% boundary, a trained
run holding one untrained variant, seeds against the bootstrap against no interval, the power a run
lacks, the family under Holm. Pure figures and in-memory runs: milliseconds each (mutation testing
runs them for every mutant)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.report import verdicts as V
from harness.report.bootstrap import Diff
from harness.report.pairdiff import PairRow
from harness.report.run import Run
from harness.report.seeds import ModelPair
from harness.report.stats import quantile, two_sided_p

HOLDS, NOT, INC = V.HOLDS, V.DOES_NOT_HOLD, V.INCONCLUSIVE


def ev(mean, lo, hi, source="seeds", n=3, **kw):
    return V.Evidence(mean, lo, hi, source, n, **kw)


def verdict(e, boundary=0.0, variants=("moe#s1", "dense#s1"), **kw):
    raw = V.decide(e.lo, e.hi, boundary) if e.lo is not None else INC
    return V.Verdict("2", "moe vs dense", "t", "bits_per_byte", raw, e, boundary, variants=variants,
                     raw_verdict=raw, adjusted=(e.lo, e.hi), **kw)


def run_of(variants: dict, records=()) -> Run:
    """A run in memory: ``variants`` {name: spec fields}; ``records`` its results."""
    plan = {"variants": [{"name": n, **spec} for n, spec in variants.items()]}
    return Run(Path("mem"), plan, {}, list(records), variant_order=list(variants))


# ---- decide: the boundary is the claim's, not 0 ------------------------------------------------
@pytest.mark.parametrize("lo, hi, boundary, want", [
    (0.001, 0.5, 0.0, HOLDS), (0.0, 0.5, 0.0, INC), (-0.5, -0.001, 0.0, NOT), (-0.5, 0.0, 0.0, INC),
    # claim 2's boundary at -1% of the twin: an interval wholly above -0.01 holds though it covers 0
    (-0.009, 0.02, -0.01, HOLDS), (-0.01, 0.02, -0.01, INC), (-0.03, -0.011, -0.01, NOT), (-0.03, -0.01, -0.01, INC),
])
def test_an_interval_above_the_claims_boundary_holds_and_one_touching_it_is_inconclusive(lo, hi, boundary, want):
    assert V.decide(lo, hi, boundary) == want


# ---- Evidence: degrees of freedom, other levels, p against the boundary ------------------------
def test_seeds_have_n_minus_one_degrees_of_freedom_and_the_bootstrap_is_normal():
    assert ev(1, 0, 2, "seeds", 4).df == 3
    assert ev(1, 0, 2, "bootstrap", 400).df is None
    assert ev(1, None, None, "none", 2).df is None


def test_an_interval_at_another_level_keeps_each_sides_half_width_ratio():
    e = ev(1.0, 0.5, 2.0, "bootstrap", 100)  # asymmetric: 0.5 below, 1.0 above
    f = quantile(0.99, None) / quantile(0.95, None)
    lo, hi = e.at_level(0.99)
    assert lo == pytest.approx(1.0 - 0.5 * f) and hi == pytest.approx(1.0 + 1.0 * f)
    t = ev(1.0, 0.5, 1.5, "seeds", 3)
    ft = quantile(0.99, 2) / quantile(0.95, 2)
    assert t.at_level(0.99) == pytest.approx((1.0 - 0.5 * ft, 1.0 + 0.5 * ft))
    assert ev(1.0, None, None, "none").at_level(0.99) == (None, None)
    assert ev(1.0, 0.5, None).at_level(0.99) == (None, None)


def test_the_p_value_is_taken_against_the_boundary_from_the_side_facing_it():
    # mean above the boundary: the lower half-width (0.5) sets the standard error
    e = ev(1.0, 0.5, 3.0, "bootstrap", 100)
    se = 0.5 / quantile(0.95, None)
    assert e.p_value(0.0) == pytest.approx(two_sided_p(1.0 / se, None))
    assert e.p_value(-1.0) == pytest.approx(two_sided_p(2.0 / se, None))
    # mean below the boundary: the upper half-width (2.0) sets it
    se_hi = 2.0 / quantile(0.95, None)
    assert e.p_value(2.0) == pytest.approx(two_sided_p(-1.0 / se_hi, None))
    # t on n - 1 degrees of freedom over seeds
    s = ev(1.0, 0.5, 1.5, "seeds", 3)
    assert s.p_value(0.0) == pytest.approx(two_sided_p(1.0 / (0.5 / quantile(0.95, 2)), 2))
    assert 0.0 < s.p_value(0.0) < 0.05


def test_no_interval_or_a_mean_on_the_boundary_has_p_one_and_a_zero_width_interval_p_zero():
    assert ev(1.0, None, None, "none").p_value() == 1.0
    assert ev(1.0, 0.5, None).p_value() == 1.0
    assert ev(1.0, None, 1.5).p_value() == 1.0
    assert ev(-0.01, -0.02, 0.0).p_value(-0.01) == 1.0
    assert ev(0.2, 0.2, 0.2).p_value(0.0) == 0.0
    assert ev(0.2, 0.2, 0.5).p_value(0.0) == 0.0  # the side facing the boundary has no width


# ---- claim 2 under Holm: p against -1%, not 0 ------------------------------------------------
def test_claim_2s_holm_p_values_are_taken_against_its_minus_one_percent_boundary():
    """MoE ~ dense: an advantage of 0 +- 0.004 over 3 seeds, boundary -0.01. Against -0.01 it holds
    (p tiny); against 0 its p would be 1 and Holm would make it inconclusive."""
    v = V.holm_family([verdict(ev(0.0, -0.004, 0.004), boundary=-0.01)])[0]
    assert v.verdict == HOLDS and v.raw_verdict == HOLDS
    assert v.p == pytest.approx(ev(0.0, -0.004, 0.004).p_value(-0.01)) and v.p < 0.05
    # the neighbouring boundary 0: the same interval is inconclusive, with the power it lacks
    w = V.holm_family([verdict(ev(0.0, -0.004, 0.004), boundary=0.0)])[0]
    assert w.verdict == INC and w.p == 1.0 and w.power is not None


def test_two_that_hold_only_before_holm_are_inconclusive_after_and_keep_their_raw_verdicts():
    # p between 0.025 and 0.05: holds at 95%, not at Holm's first step of two (97.5%)
    weak = lambda: verdict(ev(1.0, 0.02, 1.98, "bootstrap", 100))  # noqa: E731
    a, b = weak(), weak()
    assert 0.025 < a.evidence.p_value() < 0.05 and a.verdict == HOLDS
    out = V.holm_family([a, b])
    assert out == [a, b] and [v.family for v in out] == [2, 2]
    for v in (a, b):
        assert v.verdict == INC and v.raw_verdict == HOLDS and v.level == pytest.approx(0.975)
        assert v.adjusted == pytest.approx(v.evidence.at_level(0.975)) and v.adj_lo < 0.0 < v.adj_hi
        assert v.power is not None and v.power.more_docs is not None
    # beside a strong one, the weak one is Holm's second step (at 95%) and holds
    strong, c = verdict(ev(1.0, 0.9, 1.1)), weak()
    V.holm_family([c, strong])
    assert strong.verdict == HOLDS and strong.level == pytest.approx(0.975) and strong.power is None
    assert c.verdict == HOLDS and c.level == pytest.approx(0.95) and c.power is None
    alone = V.holm_family([weak()])[0]
    assert alone.verdict == HOLDS and alone.family == 1 and alone.level == pytest.approx(0.95)


def test_holm_judges_a_verdict_that_holds_below_zero_as_does_not_hold():
    v = V.holm_family([verdict(ev(-1.0, -1.1, -0.9))])[0]
    assert v.verdict == NOT and v.power is None


def test_a_comparison_without_an_interval_stays_inconclusive_under_holm():
    v = V.holm_family([verdict(ev(1.0, None, None, "none", 1, why_none="no samples"))])[0]
    assert v.verdict == INC and v.p == 1.0 and v.power.note == "no samples"


# ---- a trained run with one untrained variant --------------------------------------------------
def test_a_trained_run_holding_one_untrained_variant_still_judges_its_trained_comparisons():
    trained = verdict(ev(1.0, 0.9, 1.1), variants=("moe#s1", "dense#s1", "moe#s2", "dense#s2"))
    reads_untrained = verdict(ev(1.0, 0.9, 1.1), variants=("moe#s1", "rand"))
    assert V.judged([trained, reads_untrained], {"rand"}) == [trained]
    assert V.judged([trained, reads_untrained], set()) == [trained, reads_untrained]
    assert V.judged([reads_untrained], {"rand", "other"}) == []


def test_untrained_variants_are_config_builds_never_trained():
    run = run_of({"rand": {"build": {"config": {}}}, "ckpt": {"build": {"checkpoint": "/c"}},
                  "cfg-trained": {"build": {"config": {}, "trained": "x"}},
                  "cfg-with-train": {"build": {"config": {}}}},
                 [{"key": "k", "kind": "train", "variant": "cfg-with-train", "status": "ok", "train": {"tokens": 5}}])
    assert V.untrained_variants(run) == ["rand"]


# ---- evidence: seeds, else the bootstrap, else none; oriented ----------------------------------
PAIR = ModelPair("active", "moe", "dense", 1.0, [("moe#s1", "dense#s1"), ("moe#s2", "dense#s2"),
                                                 ("moe#s3", "dense#s3")])


def row(per_seed=(), diff="no per-document samples", moe=2.0, dense=3.0, seed_variants=()):
    return PairRow(PAIR, "t", "bits_per_byte", moe, dense, diff, None, len(per_seed) or 1, tuple(per_seed),
                   None, tuple(seed_variants))


def test_evidence_over_seeds_is_the_t_interval_of_the_oriented_per_seed_differences():
    e = V.evidence(row((-1.0, -2.0, -3.0)), -1.0)
    assert e.source == "seeds" and e.n == 3 and e.per_seed == (1.0, 2.0, 3.0) and e.seeds == ("1", "2", "3")
    assert e.mean == pytest.approx(2.0) and e.sd == pytest.approx(1.0)
    assert e.lo < 2.0 < e.hi and e.hi - 2.0 == pytest.approx(quantile(0.95, 2) / math.sqrt(3))
    # the seeds' labels come from the variants behind each difference when the row names them
    assert V.evidence(row((1.0, 2.0), seed_variants=("moe#s2", "moe#s3")), 1.0).seeds == ("2", "3")


def test_evidence_from_one_seed_is_the_bootstrap_interval_oriented_and_sorted():
    e = V.evidence(row((0.5,), diff=Diff(0.5, 0.2, 0.9, 60)), -1.0)
    assert (e.source, e.mean, e.lo, e.hi, e.n) == ("bootstrap", -0.5, -0.9, -0.2, 60)
    assert e.seeds == ("1",) and e.sd is None
    e = V.evidence(row((0.5,), diff=Diff(0.5, 0.2, 0.9, 60)), 1.0)
    assert (e.mean, e.lo, e.hi) == (0.5, 0.2, 0.9)


def test_evidence_without_samples_has_no_interval_and_says_why():
    e = V.evidence(row((0.5,), diff="no per-document samples", moe=2.0, dense=3.0), -1.0)
    assert (e.source, e.mean, e.lo, e.hi, e.n) == ("none", 1.0, None, None, 1)
    assert e.why_none == "no per-document samples"
    assert V.evidence(row((), diff=None), 1.0).why_none == "no interval"


# ---- power -------------------------------------------------------------------------------------
def test_power_over_seeds_counts_the_seeds_still_needed_from_the_boundary():
    from harness.report.stats import mde_seeds, seeds_needed
    e = ev(0.1, -0.05, 0.25, "seeds", 3, sd=0.2)
    p = V.power(e, -0.01)
    assert p.effect == pytest.approx(0.11) and p.mde == pytest.approx(mde_seeds(0.2, 3))
    assert p.more_seeds == seeds_needed(0.11, 0.2) - 3 and p.more_docs is None
    assert V.power(ev(0.1, -0.05, 0.25, "seeds", 30, sd=0.01)).more_seeds == 0  # already enough
    assert V.power(ev(0.0, -0.05, 0.05, "seeds", 3, sd=0.2)).more_seeds is None  # zero effect: never
    assert V.power(ev(0.1, -0.05, 0.25, "seeds", 3)).mde == mde_seeds(0.0, 3)
    # no sd recorded: read as 0, which two seeds detect (three are already enough)
    assert V.power(ev(0.1, -0.05, 0.25, "seeds", 3)).more_seeds == 0 == max(0, seeds_needed(0.1, 0.0) - 3)


def test_power_from_one_seed_counts_the_documents_still_needed():
    from harness.report.stats import docs_needed, mde_bootstrap
    e = ev(0.1, -0.1, 0.3, "bootstrap", 50)
    p = V.power(e)
    assert p.mde == pytest.approx(mde_bootstrap(-0.1, 0.3)) and p.more_seeds is None
    assert p.more_docs == docs_needed(0.1, 50, -0.1, 0.3) - 50 > 0 and "one seed" in p.note
    assert V.power(ev(0.1, 0.05, 0.15, "bootstrap", 5000)).more_docs == 0
    assert V.power(ev(0.0, -0.1, 0.1, "bootstrap", 50)).more_docs is None


def test_no_interval_has_no_detectable_difference_and_says_why():
    p = V.power(ev(0.3, None, None, "none", 1, why_none="no samples"), -0.1)
    assert (p.mde, p.effect, p.more_seeds, p.more_docs, p.note) == (None, pytest.approx(0.4), None, None, "no samples")


# ---- seeds against the mean -------------------------------------------------------------------
def test_the_seeds_against_the_means_sign_are_named_and_a_zero_seed_is_not():
    e = ev(1.0, 0, 2, per_seed=(2.0, -0.5, 0.0, 1.5), seeds=("1", "2", "3", "4"))
    assert V._disagree(e) == [("2", -0.5)]
    neg = ev(-1.0, -2, 0, per_seed=(-2.0, 0.5, -1.5), seeds=("1", "2", "3"))
    assert V._disagree(neg) == [("2", 0.5)]
    assert V._disagree(ev(0.0, -1, 1, per_seed=(1.0, -1.0), seeds=("1", "2"))) == []
    assert V._disagree(ev(-1.0, None, None, per_seed=(-1.0,), seeds=("1",))) == []


# ---- the claims' own figures ------------------------------------------------------------------
def test_the_cost_per_token_is_training_flops_else_six_times_active_params():
    recs = [{"key": "a", "kind": "train", "variant": "m", "status": "ok", "train": {"flops_per_token": 1200}},
            {"key": "b", "kind": "describe", "variant": "m", "status": "ok", "params": {"active": 100}},
            {"key": "c", "kind": "train", "variant": "z", "status": "ok", "train": {"flops_per_token": 0}},
            {"key": "d", "kind": "describe", "variant": "z", "status": "ok", "params": {"active": 100}},
            {"key": "e", "kind": "describe", "variant": "n", "status": "ok", "params": {"active": 0}}]
    run = run_of({"m": {}, "z": {}, "n": {}}, recs)
    assert V.flops_per_token(run, "m") == (1200.0, "training FLOPs per token")
    assert V.flops_per_token(run, "z") == (600.0, "6 × active params")
    assert V.flops_per_token(run, "n") == (None, "")


def test_claim_5s_roles_random_pruned_and_top_k_at_exactly_half_k():
    def role(routing, k=4):
        run = run_of({"alt": {"routing": routing}, "nat": {"build": {"config": {"num_experts_per_tok": k}}}})
        return V.strategy_role(run, "alt", "nat")
    assert role({"name": "random"}) == "random"
    assert role({"name": "prune", "params": {"keep": 2}}) == "pruned"
    assert role({"name": "topk", "params": {"k": 2}}) == "top-k at half k"
    assert role({"name": "topk", "params": {"k": 3}}) == "topk(k=3)"
    assert role({"name": "topk", "params": {"k": 1}}, k=3) == "top-k at half k"  # 3 // 2
    assert role({"name": "topk", "params": {"k": 1}}, k=1) == "top-k at half k"  # never below 1
    assert role({"name": "topp", "params": {"p": 0.5}}) == "topp(p=0.5)"


def test_held_out_seen_tasks_come_before_unseen_each_in_run_order():
    recs = [{"key": "e", "kind": "evaluate", "variant": "m", "status": "ok",
             "metrics": {t: {"bits_per_byte": 1.0} for t in ("b_heldout_unseen", "a_heldout_seen", "other",
                                                             "c_heldout_seen", "x_heldout_seenish")}}]
    assert V.heldout_tasks(run_of({"m": {}}, recs)) == ["a_heldout_seen", "c_heldout_seen", "b_heldout_unseen"]


def test_a_claims_word_over_its_verdicts_is_the_common_one_else_mixed():
    h, n = verdict(ev(1, 0.5, 1.5)), verdict(ev(-1, -1.5, -0.5))
    assert V.overall([]) is None and V.overall([h, h]) == HOLDS and V.overall([h, n]) == "mixed"
    assert V.short_name("3t").startswith("at equal total") and V.short_name("1") == "equal active"
    assert V.comparisons("2") is V.claim2 and V.comparisons("3t") is V.claim3_total


def test_holm_takes_the_familys_alpha():
    """p ~ 0.07: inconclusive at the default 5%, holds in a family judged at 10%."""
    e = ev(1.0, -0.1, 2.1, "bootstrap", 100)
    assert 0.05 < e.p_value() < 0.1
    assert V.holm_family([verdict(e)])[0].verdict == INC
    assert V.holm_family([verdict(e)], alpha=0.1)[0].verdict == HOLDS


def test_a_verdict_without_a_raw_verdict_keeps_its_own_as_raw_under_holm():
    x = verdict(ev(1.0, 0.9, 1.1))
    x.raw_verdict = ""
    assert V.holm_family([x])[0].raw_verdict == HOLDS


def test_a_task_without_metrics_has_no_metric_and_the_preferred_one_wins_over_the_first():
    recs = [{"key": "e", "kind": "evaluate", "variant": "m", "status": "ok",
             "metrics": {"t": {"acc": 0.5, "bits_per_byte": 1.0}}}]
    run = run_of({"m": {}}, recs)
    assert V._metric(run, "t", "bits_per_byte") == "bits_per_byte"
    assert V._metric(run, "t", "f1") == "acc"
    assert V._metric(run, "none", "acc") is None


# ---- the constructed claims run (tests/data/answers_fixture) -------------------------------------
ANSWERS = Path(__file__).resolve().parent / "data" / "answers_fixture"


def test_every_verdict_carries_its_claim_and_claim_2_and_3_their_figures():
    v = V.all_verdicts(Run.load(ANSWERS))
    assert [c for c in v] == ["1", "2", "3", "3t", "5", "9"]
    assert all(x.claim == c for c, xs in v.items() for x in xs)
    assert all(v[c] for c in ("1", "2", "3", "3t", "5")) and v["9"] == []  # no quantized variant: nothing to judge
    assert {x.extra["cost_from"] for x in v["2"]} == {"training FLOPs per token"}
    assert all(x.extra["margin"] == pytest.approx(0.01 * abs(x.values[0])) for x in v["2"])
    assert all(x.boundary == -x.extra["margin"] for x in v["2"])
    assert all(isinstance(x.extra["acc"], tuple) and len(x.extra["acc"]) == 2 for x in v["3"] + v["3t"])
    assert {x.extra["kind"] for x in v["3"]} == {"active"} and {x.extra["kind"] for x in v["3t"]} == {"total"}


def test_held_out_loss_is_judged_on_bits_per_byte_when_the_task_also_reports_accuracy():
    run = Run.load(ANSWERS)
    for r in run.records:
        for task, values in (r.get("metrics") or {}).items():
            if task.endswith(("_heldout_seen", "_heldout_unseen")):
                values["acc"] = 0.5
    assert run.task_metrics("kg_heldout_seen")[0] == "acc"  # accuracy is listed first
    v = V.all_verdicts(run)
    assert {x.metric for x in v["1"] + v["2"] + v["5"]} == {"bits_per_byte"}


def test_each_verdict_names_what_it_compares_its_sweep_point_and_each_sides_value():
    v = V.all_verdicts(Run.load(ANSWERS))
    own = {c: next(x for x in xs if not x.sweep) for c, xs in v.items() if xs}
    assert own["1"].subject == "moe vs dense-active" and own["3"].subject == "moe vs dense-active"
    assert own["2"].subject == "moe vs dense-total" and own["3t"].subject == "moe vs dense-total"
    assert own["5"].subject == "moe (native) vs top-k at half k"
    assert own["5"].extra == {"role": "top-k at half k", "strategy": "topk(k=1)"}
    swept = next(x for x in v["1"] if x.sweep)
    assert swept.subject == ("moe[train.tokens=16384] vs dense-active[train.tokens=16384] at train.tokens=16384")
    # the claim's side first: claim 1 and 3 the MoE's, claim 2 the dense twin's, claim 3t the twin's, claim 5 native's
    assert own["1"].values == pytest.approx((1.2003333, 1.262)) and own["2"].values == pytest.approx((1.1956667, 1.2003333))
    assert own["3t"].values == pytest.approx((0.6284306, 0.5728580)) and own["5"].values == pytest.approx((1.2003333, 1.2516667))
    two = own["2"].extra
    assert (two["flops_moe"], two["flops_dense"], two["margin_rel"]) == (700032.0, 1584000.0, 0.01)
    assert two["cost_ratio"] == pytest.approx(1584000.0 / 700032.0)
    assert set(own["1"].variants) == {f"{m}#s{s}" for m in ("moe", "dense-active") for s in (1, 2, 3)}


def test_claim_1_names_the_seeds_whose_two_sides_trained_on_unequal_tokens():
    run = Run.load(ANSWERS)
    for r in run.records:
        if r.get("kind") == "train" and r["variant"] == "dense-active#s2":
            r["train"]["tokens"] = 131072
    own = [x for x in V.claim1(run) if not x.sweep]
    assert own and all(x.extra["unequal_tokens"] == [(262144, 131072)] for x in own)
    assert all(x.extra["unequal_tokens"] == [] for x in V.claim1(Run.load(ANSWERS)))


def test_power_after_holm_is_measured_from_the_claims_boundary():
    """Two claim-2 comparisons that hold only before Holm: the effect their power is sized for is
    their distance from -1%, not from 0."""
    vs = [verdict(ev(0.01, -0.0098, 0.0298, "bootstrap", 100), boundary=-0.01) for _ in range(2)]
    assert all(v.verdict == HOLDS for v in vs)
    V.holm_family(vs)
    assert all(v.verdict == INC and v.power.effect == pytest.approx(0.02) for v in vs)


def test_claim_1_from_curves_reads_each_seeds_last_held_out_point():
    """Without held-out tasks claim 1 reads the curves: each seed's point at the most tokens, not the
    second, nor the one before last (a third point is put between the fixture's two)."""
    run = Run.load(ANSWERS)
    run.records = [r for r in run.records if r.get("task") != "kg_heldout"]
    last = {}
    for r in run.records:
        if r.get("kind") == "train" and isinstance(r.get("train"), dict) and r["train"].get("heldout_curve"):
            curve = sorted(r["train"]["heldout_curve"], key=lambda p: p["tokens"])
            mid = (curve[0]["tokens"] + curve[-1]["tokens"]) // 2  # a third point between the two
            r["train"]["heldout_curve"] = [*curve, {"tokens": mid, "seconds": 1.0, "loss": {"seen": 9.0, "unseen": 9.0}}]
            last[r["variant"]] = curve[-1]["loss"]["seen"]
    c1 = next(x for x in V.claim1(run) if not x.sweep and x.task == "train.heldout_curve (seen)")
    moe = [last[f"moe#s{s}"] for s in (1, 2, 3)]
    dense = [last[f"dense-active#s{s}"] for s in (1, 2, 3)]
    assert c1.values == pytest.approx((sum(moe) / 3, sum(dense) / 3)) and c1.metric == "loss"


def test_claim_3_is_judged_on_accuracy_where_the_tail_task_has_no_bits():
    run = Run.load(ANSWERS)
    for r in run.records:
        for task, values in (r.get("metrics") or {}).items():
            if task.endswith("_values_tail"):
                values.pop("bits", None)
    c3 = V.claim3(run)
    assert c3 and {x.metric for x in c3} == {"acc"} and all("acc" not in x.extra for x in c3)
