"""The report's answers (issue 19): verdict logic on constructed results, the statistics under it
against hand-computed values, token-efficiency interpolation, and the rendered claims report
(tests/data/answers_fixture, made by tests/data/make_answers_fixture.py)."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.report import write_report
from harness.report.numbers import fmt
from harness.report.bootstrap import Diff, paired_bootstrap
from harness.report.curves import Reach, pair_efficiency, reach
from harness.report.pairdiff import PairRow
from harness.report.run import Run
from harness.report.seeds import ModelPair, model_pairs
from harness.report.stats import (docs_needed, mde_bootstrap, mde_seeds, seeds_needed, t_interval, t_ppf)
from harness.report.verdicts import (DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, all_verdicts, decide, judge)

ANSWERS = Path(__file__).resolve().parent / "data" / "answers_fixture"
EMPTY = Run(Path("."), {}, {}, [])  # no records: metric direction by name, no regime


def _row(per_seed, task="kg_heldout_seen", metric="bits_per_byte", diff=None, dense=1.0) -> PairRow:
    """A pair row MoE − dense with the given per-seed differences (or one seed and a bootstrap Diff)."""
    seeds = [(f"moe#s{i + 1}", f"dense#s{i + 1}") for i in range(len(per_seed))]
    pair = ModelPair("active", "moe", "dense", 1.0, seeds)
    mean = sum(per_seed) / len(per_seed)
    return PairRow(pair, task, metric, dense + mean, dense, diff if diff is not None else "no per-document samples",
                   None, len(per_seed), tuple(per_seed), t_interval(per_seed))


# ---- statistics, against hand-computed values --------------------------------------------------
def test_t_quantiles_and_interval_width_on_known_data():
    assert t_ppf(0.975, 1) == pytest.approx(12.706205, abs=1e-5)
    assert t_ppf(0.975, 2) == pytest.approx(4.302653, abs=1e-6)
    assert t_ppf(0.8, 2) == pytest.approx(1.060660, abs=1e-6)
    assert t_ppf(0.975, 3) == pytest.approx(3.182446, abs=1e-6)
    assert t_ppf(0.025, 3) == pytest.approx(-3.182446, abs=1e-6)
    # [1, 2, 3]: mean 2, sd 1: half-width t(.975, 2) / sqrt(3) = 2.484138
    ci = t_interval([1.0, 2.0, 3.0])
    assert (ci.mean, ci.sd, ci.n) == (2.0, 1.0, 3)
    assert ci.hi - ci.mean == pytest.approx(2.484138, abs=1e-6) and ci.mean - ci.lo == pytest.approx(2.484138, abs=1e-6)
    # [-1, 1, -1, 1]: sd sqrt(4/3); half-width 3.182446 × 1.154701 / 2 = 1.837384
    assert t_interval([-1.0, 1.0, -1.0, 1.0]).hi == pytest.approx(1.837384, abs=1e-5)
    assert t_interval([0.3]) is None
    # the paired bootstrap on N(0, 1) differences over 400 documents: width ≈ 2 × 1.96 / sqrt(400) = 0.196
    rng = np.random.default_rng(5)
    d = paired_bootstrap(rng.normal(0.0, 1.0, 400), np.zeros(400))
    assert 0.196 * 0.9 < d.hi - d.lo < 0.196 * 1.1


def test_detectable_difference_and_needed_seeds_and_documents():
    # 3 seeds, sd 0.015: (4.302653 + 1.060660) × 0.015 / sqrt(3) = 0.046448
    assert mde_seeds(0.015, 3) == pytest.approx(0.046448, abs=1e-6)
    assert mde_seeds(0.015, 1) == math.inf
    # effect 0.02, sd 0.015: n = 6 detects 0.021372 (> 0.02), n = 7 detects 0.019008: seven seeds
    assert mde_seeds(0.015, 6) == pytest.approx(0.021372, abs=1e-6)
    assert mde_seeds(0.015, 7) == pytest.approx(0.019008, abs=1e-6)
    assert seeds_needed(0.02, 0.015) == 7 and seeds_needed(-0.02, 0.015) == 7
    assert seeds_needed(0.1, 0.0) == 2 and seeds_needed(0.0, 0.01) is None
    assert seeds_needed(1e-9, 1.0) is None  # beyond the search limit
    # bootstrap CI [-0.1, 0.1]: se = 0.2 / (2 × 1.959964) = 0.051021; MDE = 2.801585 × se = 0.142941
    assert mde_bootstrap(-0.1, 0.1) == pytest.approx(0.142941, abs=1e-6)
    # documents to detect 0.05 from 100: ceil(100 × (0.142941 / 0.05)^2) = ceil(817.28) = 818
    assert docs_needed(0.05, 100, -0.1, 0.1) == 818
    assert docs_needed(0.5, 100, -0.1, 0.1) == 100  # already detectable: no more needed


# ---- verdict logic ----------------------------------------------------------------------------
def test_decide_and_an_interval_touching_the_boundary_is_inconclusive():
    assert decide(0.01, 0.05) == HOLDS
    assert decide(-0.05, -0.01) == DOES_NOT_HOLD
    assert decide(-0.01, 0.05) == INCONCLUSIVE
    assert decide(0.0, 0.05) == INCONCLUSIVE and decide(-0.05, 0.0) == INCONCLUSIVE
    assert decide(-0.009, 0.02, boundary=-0.01) == HOLDS and decide(-0.03, -0.011, boundary=-0.01) == DOES_NOT_HOLD


def test_claim1_holds_does_not_hold_and_inconclusive_over_seeds():
    held = judge("1", _row([-0.05, -0.06, -0.055]), True, 0.0, "moe vs dense", EMPTY)
    assert held.verdict == HOLDS and held.evidence.source == "seeds" and held.evidence.mean == pytest.approx(0.055)
    assert held.power is None and held.disagree == []
    worse = judge("1", _row([0.04, 0.05, 0.045]), True, 0.0, "moe vs dense", EMPTY)
    assert worse.verdict == DOES_NOT_HOLD and worse.evidence.hi < 0
    mixed = judge("1", _row([-0.05, 0.01, -0.04]), True, 0.0, "moe vs dense", EMPTY)
    assert mixed.verdict == INCONCLUSIVE
    assert mixed.disagree == [("2", pytest.approx(-0.01))]  # seed 2: the MoE was worse, against the mean
    sd = float(np.std([0.05, -0.01, 0.04], ddof=1))
    assert mixed.power.mde == pytest.approx(mde_seeds(sd, 3)) and mixed.power.effect == pytest.approx(0.08 / 3)
    assert mixed.power.more_seeds == seeds_needed(0.08 / 3, sd) - 3


def test_within_seed_bootstrap_touching_zero_is_inconclusive_with_documents_needed():
    # one seed: MoE − dense = −0.02 [−0.04, 0.00] over 50 documents → advantage [0.00, 0.04], touching zero
    row = _row([-0.02], diff=Diff(-0.02, -0.04, 0.0, 50))
    v = judge("1", row, True, 0.0, "moe vs dense", EMPTY)
    assert v.evidence.source == "bootstrap" and (v.evidence.lo, v.evidence.hi) == (0.0, pytest.approx(0.04))
    assert v.verdict == INCONCLUSIVE
    # se = 0.04 / 3.919928 = 0.010204; MDE = 2.801585 × se = 0.028588; docs: ceil(50 × (0.028588 / 0.02)^2) = 103
    assert v.power.mde == pytest.approx(0.028588, abs=1e-6)
    assert v.power.more_docs == 53 and v.power.more_seeds is None
    # no interval at all (one seed, no per-document samples): never a verdict the numbers do not carry
    bare = judge("1", _row([-0.3]), True, 0.0, "moe vs dense", EMPTY)
    assert bare.verdict == INCONCLUSIVE and bare.evidence.source == "none" and bare.power.mde is None


def test_claim2_equivalence_margin_and_higher_is_better_metrics():
    # the MoE ahead by 0.004 loss (within a 0.01 margin) in every seed: dense "as good" holds
    v = judge("2", _row([-0.004, -0.005, -0.003]), False, -0.01, "moe vs dense-total", EMPTY)
    assert v.evidence.mean == pytest.approx(-0.004) and v.verdict == HOLDS
    far = judge("2", _row([-0.05, -0.06, -0.055]), False, -0.01, "moe vs dense-total", EMPTY)
    assert far.verdict == DOES_NOT_HOLD
    # bits (higher is better): MoE − dense > 0 favours claim 3
    bits = judge("3", _row([0.2, 0.25, 0.22], task="kg_values_tail", metric="bits"), True, 0.0, "moe vs d", EMPTY)
    assert bits.verdict == HOLDS and bits.values == (pytest.approx(1.2233, abs=1e-4), 1.0)


# ---- token efficiency ------------------------------------------------------------------------
def test_reach_interpolates_in_log_tokens():
    curve = [(1000.0, 4.0), (10000.0, 2.0), (100000.0, 1.0)]
    assert reach(curve, 3.0).x == pytest.approx(math.sqrt(1000 * 10000))  # halfway in log tokens
    assert reach(curve, 1.5).x == pytest.approx(math.sqrt(10000 * 100000))
    assert reach(curve, 2.0) == Reach(10000.0)  # exactly an evaluation point
    assert reach(curve, 0.5) == Reach(None) and not reach(curve, 0.5).reached
    assert reach(curve, 5.0) == Reach(1000.0, bound=True)  # already below at the first evaluation
    assert reach([(0.0, 4.0), (10.0, 2.0)], 3.0).x == pytest.approx(5.0)  # from x = 0: linear


def test_token_efficiency_of_the_fixture_pair():
    run = Run.load(ANSWERS)
    pairs = [p for p in model_pairs(run, native_only=True) if p.kind == "active" and not p.sweep]
    effs = {e.kind: e for e in pair_efficiency(run, pairs)}
    seen = effs["seen"]
    assert [s.moe for s in seen.seeds] == ["moe#s1", "moe#s2", "moe#s3"]
    s1 = seen.seeds[0]
    curve = run.training("moe#s1")["heldout_curve"]
    # the twin's final loss falls between the MoE's last two evaluations: log-linear by hand
    (t0, l0), (t1, l1) = [(p["tokens"], p["loss"]["seen"]) for p in curve[-2:]]
    f = (l0 - s1.target) / (l0 - l1)
    assert s1.tokens.x == pytest.approx(math.exp(math.log(t0) + f * math.log(t1 / t0)))
    assert s1.token_fraction == pytest.approx(s1.tokens.x / 262144)
    ci = seen.token_ci()
    assert ci.n == 3 and ci.lo < ci.mean < ci.hi < 1.0
    assert seen.devices == ["Fixture CPU (cpu)"]
    # a sweep point where the MoE never reaches its twin: no fraction, no interval
    early = [p for p in model_pairs(run, native_only=True) if p.sweep == {"train.tokens": 16384} and p.kind == "active"]
    e = pair_efficiency(run, early)[0]
    assert e.not_reached == 2 and e.token_ci() is None and e.mean("token_fraction") is None


# ---- the constructed claims run ---------------------------------------------------------------
@pytest.fixture(scope="module")
def answers_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("report_answers") / "fixture-claims"
    shutil.copytree(ANSWERS, run)
    write_report(run)
    return run


def test_fixture_verdicts_are_the_designed_ones():
    run = Run.load(ANSWERS)
    v = {c: [x for x in vs if not x.sweep] for c, vs in all_verdicts(run).items()}
    assert [(x.task, x.raw_verdict) for x in v["1"]] == [("kg_heldout_seen", HOLDS), ("kg_heldout_unseen", HOLDS)]
    assert all(x.evidence.source == "seeds" and x.evidence.n == 3 for x in v["1"])
    assert [x.raw_verdict for x in v["2"]] == [HOLDS, HOLDS] and v["2"][0].extra["cost_ratio"] == pytest.approx(
        264_000 / 116_672)
    tail = {x.extra["kind"]: x for x in v["3"]}
    assert tail["active"].raw_verdict == INCONCLUSIVE and [s for s, _ in tail["active"].disagree] == ["2"]
    assert tail["active"].metric == "bits" and tail["active"].power.more_seeds > 0
    roles = {x.extra["role"]: x.raw_verdict for x in v["5"]}
    assert roles == {"top-k at half k": HOLDS, "random": HOLDS, "pruned": INCONCLUSIVE}
    reg = v["1"][0].regimes[0]
    assert reg.tokens_per_param == pytest.approx(262144 / 264_128) and reg.facts_exceed is False
    # pairs never cross sweep points or seeds
    for p in model_pairs(run):
        assert all(run.spec(a).get("sweep") == run.spec(b).get("sweep") and a[-3:] == b[-3:] for a, b in p.seeds)


def test_rendered_report_leads_with_verdicts_and_has_plots_and_regime(answers_run):
    md = (answers_run / "report.md").read_text()
    assert md.split("\n## ", 2)[1].startswith("The answer")  # the first section
    verdicts = md.split("## The answer", 1)[1].split("\n## ", 1)[0]
    # raw 95% CI excludes 0; within claim 1's family of 8 Holm's adjusted one does not
    assert ("Claim 1 (equal active) **INCONCLUSIVE AT THIS SIZE** for moe vs dense-active: the MoE is better by "
            "0.06167 bits/byte") in verdicts
    assert "95% CI over 3 seeds (t-interval of the per-seed differences) [+0.03581, +0.08752]" in verdicts
    assert "Holm-adjusted (99.38%, family of 8) [-0.0140, +0.1373], raw verdict holds" in verdicts
    assert "Claim 3 (long-tail knowledge) **INCONCLUSIVE AT THIS SIZE** for moe vs dense-active" in verdicts
    assert "Seed 2 disagrees in sign" in verdicts
    assert re.search(r"smallest difference this run could detect \(α=0\.05 two-sided, power 0\.8\) is 0\.\d{4,5}; "
                     r"detecting the observed 0\.\d{4,5} would take \d+ more seed", verdicts)
    assert "Claim 2 (equal total) **HOLDS**" in verdicts
    assert "equivalence margin 0.01196 bits/byte (1% of the twin's value)" in verdicts
    assert "Cost: the dense twin takes 2.26× the MoE's FLOPs per token" in verdicts
    assert "Claim 5 (router) **HOLDS** for moe (native) vs random" in verdicts
    assert "Regime R1: tokens per (total) parameter: moe#s1 0.992, dense-active#s1 2.24; exposures per fact: head 157" in verdicts
    assert verdicts.count("Regime R1:") == 1 and verdicts.count("(Regime R1.)") >= 2  # stated once, named after
    assert "less than the smaller build's ~233,600-bit capacity at 2 bits/param" in verdicts
    assert "### Token efficiency" in md and "not reached in 2 of 2 seeds" in md and "OLMoE ~0.33 tokens" in md
    sweeps = md.split("## Sweeps", 1)[1].split("\n## ", 1)[0]
    assert sweeps.count("sign changes from 16384") == 2  # seen and unseen
    assert "## Over seeds" in md and "### Trained MoE under each routing" in md
    html = (answers_run / "report.html").read_text()
    assert html.index('data-section="verdicts"') < html.index('data-section="variants"')
    alts = re.findall(r'<img alt="([^"]*)"', html)
    for want in ("Held-out loss vs training tokens", "Held-out loss vs training seconds",
                 "Sweep: kg_heldout_seen bits_per_byte difference vs train.tokens"):
        assert want in alts, want
    assert '<ul class="verdicts">' in html and "<strong>DOES NOT HOLD</strong>" not in html
    assert "(equal total) <strong>HOLDS</strong> for moe vs dense-total" in html


def test_knowledge_bits_follow_the_stated_formula(answers_run):
    md = (answers_run / "report.md").read_text()
    part = md.split("### Knowledge stored (exact tasks)\n", 1)[1].split("\n#", 1)[0]
    rows = {r[0]: r for r in ([c.strip() for c in l.strip("|").split(" | ")] for l in part.splitlines()
                               if l.startswith("| ")) if r[0] != "model"}
    run = Run.load(ANSWERS)
    tail = [run.metrics(f"moe#s{s}")["kg_values_tail"]["bits"] for s in (1, 2, 3)]
    # bits stored in the tail = mean bits per doc × 120 tail entities × 5 attributes, mean over seeds
    want = float(np.mean(tail)) * 120 * 5
    assert rows["moe"][8] == f"{fmt(want)} ± {fmt(np.std(tail, ddof=1) * 600)} (3 seeds)"
    bits = [sum(run.metrics(f"moe#s{s}")[f"kg_values_{b}"]["bits"] * n * 5 for b, n in
                (("head", 20), ("torso", 60), ("tail", 120))) for s in (1, 2, 3)]
    assert rows["moe"][11].startswith(f"{fmt(np.mean(bits) / 264_128)} ± ")  # bits per total parameter
    assert rows["moe"][12] == "2 bits/param" and rows["moe"][14] == f"{np.mean([1/100, 1/36, 1/24, 1/12, 1/16]):.4f}"


def test_one_seed_uses_the_within_seed_bootstrap_and_curves_stand_in_for_tasks(tmp_path):
    recs = [json.loads(l) for l in (ANSWERS / "results.jsonl").read_text().splitlines()]
    one = tmp_path / "one-seed"
    shutil.copytree(ANSWERS, one)
    (one / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs if r["variant"].endswith("#s1")))
    v = all_verdicts(Run.load(one))["1"][0]
    assert v.evidence.source == "bootstrap" and v.evidence.n == 60 and v.raw_verdict == HOLDS
    # without held-out tasks, claim 1 reads the final held-out curve points (seeds only)
    curves = tmp_path / "curves-only"
    shutil.copytree(ANSWERS, curves)
    (curves / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs
                                                  if r.get("task") != "kg_heldout"))
    c1 = [x for x in all_verdicts(Run.load(curves))["1"] if not x.sweep]
    assert [x.task for x in c1] == ["train.heldout_curve (seen)", "train.heldout_curve (unseen)"]
    assert c1[0].evidence.source == "seeds" and c1[0].raw_verdict == HOLDS and c1[0].metric == "loss"


def test_a_run_without_answers_says_so_in_one_line_each(report_fixture_run):
    md = (report_fixture_run / "report.md").read_text()
    assert md.split("\n## ", 2)[1].startswith("The answer")
    assert "Claim 1 (equal active): no verdict: no equal-active pair with held-out loss" in md
    assert "_No train result carries train.heldout_curve: no held-out curves and no token efficiency._" in md
    assert "_No variant carries a sweep point: no sweep in this run._" in md


def test_malformed_or_partial_curves_never_crash(tmp_path):
    """A curve that is not a list, points without loss, a curve with only the seen kind: the report is
    written and token efficiency covers what there is."""
    recs = [json.loads(l) for l in (ANSWERS / "results.jsonl").read_text().splitlines()]
    for r in recs:
        curve = (r.get("train") or {}).get("heldout_curve")
        if curve is None:
            continue
        if r["variant"] == "dense-total#s1":
            r["train"]["heldout_curve"] = "not a curve"
        elif r["variant"].startswith("moe[") or r["variant"].startswith("dense-active["):
            r["train"]["heldout_curve"] = [{"tokens": p["tokens"]} for p in curve] + [7]
        else:
            for p in curve:
                p["loss"].pop("unseen")
    run_dir = tmp_path / "partial"
    shutil.copytree(ANSWERS, run_dir)
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    from harness.report.markdown import render_markdown
    from harness.report.sections.efficiency import heldout_curves
    from harness.report.sections import build_sections

    run = Run.load(run_dir)
    md = render_markdown(run.name, build_sections(run, with_figures=False))
    assert "### Token efficiency" in md
    effs = pair_efficiency(run, [p for p in model_pairs(run, native_only=True) if p.kind == "active"])
    assert [(e.pair.moe, e.kind) for e in effs] == [("moe", "seen")]
    assert [f.title for f in heldout_curves(run)] == ["Held-out loss vs training tokens",
                                                      "Held-out loss vs training seconds"]


def test_sign_changes_skip_zero_points_and_the_seed_table_shows_both_intervals():
    from harness.report.answers import seed_pairs_table
    from harness.report.sweeps import Series, SweepPoint

    s = Series("active", "moe", "dense", "train.tokens", "t", "m")
    for value, d in zip((1, 2, 3, 4, 5), (0.02, 0.0, -0.01, -0.02, 0.01)):
        row = _row([d])
        s.points.append(SweepPoint(value, row.pair, row))
    assert [p.mean for p in s.points] == pytest.approx([0.02, 0.0, -0.01, -0.02, 0.01])
    assert s.sign_changes() == [(0, 2), (3, 4)]
    table = seed_pairs_table(Run.load(ANSWERS))
    rows = [r for r in table.rows if r[:5] == ["moe", "dense-active", "active", "kg_values_tail", "bits"]]
    assert [r[5] for r in rows] == ["1", "2", "3", "mean of 3"]
    assert [r[8] for r in rows] == ["90 docs (bootstrap)"] * 3 + ["3 seeds (t)"]
    lo, hi = (float(x) for x in rows[1][7].strip("[]").split(", "))
    assert hi < 0  # seed 2 alone: the MoE significantly behind, within that seed's documents


def test_claim5_without_held_out_tasks_reads_the_runs_own_tasks(tmp_path):
    """An untrained checkpoint under its native routing and top-p (tests/data/run_fixture with its top-2
    variant marked native): claim 5 is judged on each task's first metric, within the one seed."""
    run_dir = tmp_path / "routing"
    shutil.copytree(Path(__file__).resolve().parent / "data" / "run_fixture", run_dir)
    plan = json.loads((run_dir / "plan.json").read_text())
    for v in plan["variants"]:
        if v["name"] == "moe-a@topk(k=2)":
            v["routing"] = {"name": "native", "params": {}}
        v["build"] = {"checkpoint": f"/ckpt/{v['model']}"}  # a checkpoint: judged (a config build is not)
    (run_dir / "plan.json").write_text(json.dumps(plan))
    c5 = all_verdicts(Run.load(run_dir))["5"]
    assert [(v.task, v.metric) for v in c5] == [("arith", "acc"), ("facts", "acc"), ("prose", "bits_per_byte")]
    assert all(v.evidence.source == "bootstrap" and v.extra["strategy"] == "topp(p=0.6)" for v in c5)
    arith = c5[0]
    # native − top-p accuracy: the advantage of the native router, from the same bootstrap as the pairs table
    a, b = arith.values
    assert arith.evidence.mean == pytest.approx(a - b)


def test_a_seed_without_a_value_drops_out_and_the_others_keep_their_labels(tmp_path):
    recs = [json.loads(l) for l in (ANSWERS / "results.jsonl").read_text().splitlines()]
    run_dir = tmp_path / "failed-seed"
    shutil.copytree(ANSWERS, run_dir)
    (run_dir / "results.jsonl").write_text("".join(
        json.dumps(r) + "\n" for r in recs if not (r["variant"] == "dense-active#s1" and r.get("task") == "kg_values")))
    tail = next(v for v in all_verdicts(Run.load(run_dir))["3"] if v.extra["kind"] == "active")
    assert tail.evidence.seeds == ("2", "3") and tail.evidence.n == 2
    assert [s for s, _ in tail.disagree] == ["2"]  # seed 2 still named, not shifted onto seed 1


def test_power_wording_for_zero_spread_both_zero_and_a_margin():
    from harness.report.answers import power_text, sentence

    zero = judge("3", _row([0.0, 0.0], task="kg_values_tail", metric="bits", dense=0.0), True, 0.0, "m vs d", EMPTY)
    assert zero.verdict == INCONCLUSIVE and "Both sides score exactly 0" in power_text(zero)
    same = judge("1", _row([0.0, 0.0]), True, 0.0, "m vs d", EMPTY)
    assert "spread 0" in power_text(same)
    near = judge("2", _row([-0.009, -0.012, -0.006]), False, -0.01, "m vs d", EMPTY)
    assert near.verdict == INCONCLUSIVE and "from the margin (0.001000 away)" in power_text(near)
    assert "One seed" not in sentence(near) and "Regime: not recorded" in sentence(near)


#: text columns (names, labels, words): every other column header states its unit in parentheses
LABEL_COLUMNS = {"variant", "model", "task", "metric", "phase", "routing", "family", "claim", "comparison",
                 "verdict (Holm)", "raw verdict", "CI from", "group", "MoE", "dense twin", "MoE variant", "MoE model",
                 "equal", "held-out", "seed", "seeds", "device", "from", "setting", "value", "role", "variants (model)",
                 "item", "sig.", "bound", "telemetry from", "facts exceed it", "ceiling", "MoE (or routing)",
                 "twin (or native)", "equal-active twin", "seeds against (advantage)", "more to detect (seeds or docs)",
                 "bucket", "p (two-sided)", "status", "what", "sign change", "#", "regime"}


@pytest.mark.parametrize("which", ["smoke", "claims"])
def test_every_numeric_column_header_states_its_unit(which, report_fixture_run, answers_run):
    md = ((report_fixture_run if which == "smoke" else answers_run) / "report.md").read_text()
    lines = md.splitlines()
    headers = [lines[i] for i in range(len(lines) - 1) if lines[i].startswith("| ") and lines[i + 1].startswith("|---")]
    assert len(headers) >= 8
    missing = [(h.split(" | ")[0], c) for h in headers for c in (x.strip() for x in h.strip("|").split(" | "))
               if c not in LABEL_COLUMNS and not re.search(r"\([^)]*\)$", c)]
    assert not missing, missing


def test_numbers_from_an_unauthenticated_worker_carry_a_dagger_on_the_card_and_in_the_tables(tmp_path, answers_run):
    """One record from an --insecure worker (dense-total#s2's evaluation, ``authenticated: false``):
    its variant's rows, its model's mean over seeds, the verdict rows and the card line that read it
    are marked † with the legend, in report.md and report.html; what did not read it (claim 1, the
    other seeds) is not, and the same run with every record authenticated has no dagger at all."""
    run_dir = tmp_path / "insecure"
    shutil.copytree(ANSWERS, run_dir)
    recs = [json.loads(l) for l in (ANSWERS / "results.jsonl").read_text().splitlines()]
    target = next(r for r in recs if r["variant"] == "dense-total#s2" and r["kind"] == "evaluate")
    target["authenticated"] = False
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    write_report(run_dir)
    md, html = (run_dir / "report.md").read_text(), (run_dir / "report.html").read_text()
    legend = "† from an unauthenticated worker (--insecure)"
    card = md.split("\n## ", 2)[1]  # the answer section: the card first
    lines = {line.split(" | ")[0].strip("| "): line for line in card.splitlines() if line.startswith("| ")}
    assert lines["2"].endswith("|") and "†" in lines["2"] and "†" not in lines["1"], lines
    assert legend in card
    variants = {l.strip("| ").split(" | ")[0] for l in md.splitlines() if l.startswith("| dense-total#")}
    assert "dense-total#s2 †" in variants and "dense-total#s1" in variants and "dense-total#s1 †" not in variants
    assert re.search(r"^\| dense-total † \|", md, re.M) and re.search(r"^\| moe \| dense-total † \|", md, re.M)
    assert md.count(legend) >= 3 and html.count(legend) >= 3
    assert "dense-total#s2 †</td>" in html and "dense-total#s1 †" not in html
    assert "†" not in (answers_run / "report.md").read_text() and "†" not in (answers_run / "report.html").read_text()
