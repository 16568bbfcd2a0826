"""Engine parity's decisions from both sides (harness/report/parity.py): which variants are compared
and against which reference, each dtype's tolerance at its edge, one bad request among many documents,
NaN and infinity, answers, generations, routing layers, a metric beyond claim 2's margin, and the
sentences that open the report. In-memory runs of a few documents: milliseconds each (mutation
testing runs them for every mutant). The whole report around them: tests/test_report_parity.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.report import parity as P
from harness.report.bootstrap import Diff
from harness.report.run import Run

BUILD = {"config": {"model_type": "qwen3_moe"}, "trained": "t"}
TF, VL = {"name": "transformers", "version": "5.19"}, {"name": "vllm", "version": "0.32.0"}


def spec(name, engine=None, dtype="float32", routing=None, build=BUILD):
    out = {"name": name, "model": "moe", "build": build, "routing": routing, "dtype": dtype}
    if engine:
        out["engine"] = {"name": engine}
    return out


def ev(variant, task, lls=None, responses=None, engine=TF, metric="acc", value=0.5, routing=None, extra=None):
    samples = []
    for d in range(len(lls if lls is not None else responses)):
        s = {"doc_id": d}
        if lls is not None:
            s["loglikelihoods"] = list(lls[d])
        if responses is not None:
            s["responses"] = [responses[d]]
        samples.append(s)
    rec = {"key": f"{variant}-{task}", "kind": "evaluate", "variant": variant, "task": task, "status": "ok",
           "metrics": {task: {metric: value}}, "samples": {task: samples}, "routing": routing, "engine": engine}
    rec.update(extra or {})
    return rec


def run_of(specs, records) -> Run:
    return Run(Path("mem"), {"variants": specs}, {}, records, variant_order=[s["name"] for s in specs])


def two(ref_lls, other_lls, dtype="float32", task="mc", **kw) -> P.Parity:
    """One build on transformers (``ref_lls``) and vLLM (``other_lls``): the parity row of ``task``."""
    run = run_of([spec("m", dtype=dtype), spec("m[v]", "vllm", dtype=dtype)],
                 [ev("m", task, ref_lls, **kw), ev("m[v]", task, other_lls, engine=VL, **kw)])
    return P.Parity(run, "m", "m[v]", task)


DOCS = [[-1.0, -2.0, -3.0, -4.0] for _ in range(12)]


def shifted(doc, choice, by, docs=DOCS):
    out = [list(x) for x in docs]
    out[doc][choice] += by
    return out


# ---- which variants are compared --------------------------------------------------------------
def test_the_reference_is_the_transformers_variant_whatever_the_order():
    run = run_of([spec("m[v]", "vllm"), spec("m"), spec("m[x]", "other")],
                 [ev("m[v]", "t", DOCS, engine=VL), ev("m", "t", DOCS), ev("m[x]", "t", DOCS, engine={"name": "other"})])
    assert P.groups(run) == [("m", ["m[v]", "m[x]"])]


def test_a_build_on_one_engine_or_without_an_evaluation_is_not_compared():
    other_build = {"config": {"model_type": "olmoe"}, "trained": "t"}
    run = run_of([spec("m"), spec("m[v]", "vllm", dtype="bfloat16"), spec("n"), spec("n2", build=other_build),
                  spec("q"), spec("q[v]", "vllm")],
                 [ev("m", "t", DOCS), ev("m[v]", "t", DOCS, engine=VL), ev("n", "t", DOCS), ev("n2", "t", DOCS),
                  ev("q", "t", DOCS), {"key": "x", "kind": "evaluate", "variant": "q[v]", "status": "failed"}])
    assert P.groups(run) == []  # another dtype is another build; a failed evaluation is none


def test_without_a_transformers_variant_the_first_is_the_reference_and_its_engine_twin_left_out():
    run = run_of([spec("a", "vllm"), spec("b", "sglang"), spec("c", "vllm")],
                 [ev("a", "t", DOCS, engine=VL), ev("b", "t", DOCS, engine={"name": "sglang"}),
                  ev("c", "t", DOCS, engine=VL)])
    assert P.groups(run) == [("a", ["b"])]


def test_the_engine_comes_from_the_spec_else_the_results_else_transformers():
    run = run_of([{"name": "a", "engine": {"name": "vllm"}}, {"name": "b"}, {"name": "c", "engine": "vllm"},
                  {"name": "d"}],
                 [ev("a", "t", DOCS, engine={"name": "sglang"}), ev("b", "t", DOCS, engine={"name": "sglang", "version": 7}),
                  ev("c", "t", DOCS, engine={"version": "1"}), ev("d", "t", DOCS, engine={"name": 3})])
    assert [P.engine_of(run, v) for v in "abcd"] == ["vllm", "sglang", "transformers", "transformers"]
    assert P.engine_version(run, "b") == "7" and P.engine_version(run, "d") == ""
    assert P._engine_label(run, "b") == "sglang 7" and P._engine_label(run, "d") == "transformers"
    assert P.engines_in(run) == ["vllm", "sglang", "transformers"]


# ---- tolerance per dtype, at its edge ------------------------------------------------------------
def _last_passing(allowed: float) -> float:
    """The other engine's value for a reference of -4 whose computed |difference| is the largest at
    most ``allowed`` (the next float down is beyond it)."""
    v = -4.0 - allowed
    while abs(v + 4.0) > allowed:
        v = math.nextafter(v, 0.0)
    while abs(math.nextafter(v, -math.inf) + 4.0) <= allowed:
        v = math.nextafter(v, -math.inf)
    return v


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int8"])
def test_a_request_at_atol_plus_rtol_passes_and_the_next_float_past_it_is_flagged(dtype):
    """The last choice (|loglikelihood| 4) of the last of 12 documents; a dtype without a tolerance of
    its own (int8) gets bfloat16's."""
    atol, rtol = P.TOLERANCE.get(dtype, P.TOLERANCE["bfloat16"])
    edge = _last_passing(atol + rtol * 4.0)
    at = two(DOCS, [*DOCS[:11], [-1.0, -2.0, -3.0, edge]], dtype=dtype)
    assert at.beyond == 0 and at.reasons == [] and not at.loglikelihood_flag and at.worst <= 1.0
    above = two(DOCS, [*DOCS[:11], [-1.0, -2.0, -3.0, math.nextafter(edge, -math.inf)]], dtype=dtype)
    assert above.beyond == 1 and above.loglikelihood_flag and above.reasons == ["BEYOND TOLERANCE"]
    assert above.worst > 1.0 and (at.atol, at.rtol, at.dtype) == (atol, rtol, dtype)
    # atol alone would not pass it: rtol scales with the reference's loglikelihood
    assert abs(edge + 4.0) > atol


def test_the_tolerance_reads_atol_plus_rtol_and_a_dtype_without_one_gets_bfloat16s():
    assert two(DOCS, DOCS).tolerance == "0.001 + 0.0001·|ll|"
    p = two(DOCS, DOCS, dtype="float8")
    assert (p.atol, p.rtol) == P.TOLERANCE["bfloat16"] and p.dtype == "float8"
    p.rtol = 0.0
    assert p.tolerance == "0.5"


def test_one_request_of_the_last_of_many_documents_is_flagged_and_counted_once():
    p = two(DOCS, shifted(11, 2, 5e-3))
    assert (p.docs, p.requests, p.beyond, p.nonfinite, p.flips) == (12, 48, 1, 0, 0)
    assert p.max_abs == pytest.approx(5e-3) and p.flagged and p.compared
    assert p.diff is not None and p.diff.mean == pytest.approx(5e-3 / 4 / 12)
    ok = two(DOCS, DOCS)
    assert (ok.beyond, ok.max_abs, ok.flagged) == (0, 0.0, False) and ok.reasons == []


@pytest.mark.parametrize("where", ["ref", "other"])
@pytest.mark.parametrize("value", [math.nan, -math.inf])
def test_a_nan_or_infinite_loglikelihood_on_either_engine_is_flagged_without_an_interval(where, value):
    bad = shifted(11, 3, 0.0)
    bad[11][3] = value
    p = two(bad, DOCS) if where == "ref" else two(DOCS, bad)
    # -inf on the reference leaves |Δ| = inf against an rtol × inf allowance: only the NaN/inf check sees it
    beyond = 0 if (where, value) == ("ref", -math.inf) else 1
    assert p.nonfinite == 1 and p.beyond == beyond and p.diff is None and p.loglikelihood_flag
    assert p.reasons[0] == "NaN/INFINITE" and ("BEYOND TOLERANCE" in p.reasons) == bool(beyond)
    assert math.isnan(p.max_abs) if math.isnan(value) else p.max_abs == math.inf


def test_documents_that_do_not_pair_up_are_not_compared():
    ref = DOCS[:3] + [[-1.0, -2.0]]
    p = two(ref, DOCS[:4])  # the 4th document has 2 choices on one engine, 4 on the other
    assert (p.docs, p.requests) == (3, 12)
    empty = two([[]] * 3, [[]] * 3)
    assert (empty.docs, empty.max_abs, empty.diff, empty.loglikelihood_flag) == (0, None, None, False)
    assert not empty.compared


# ---- answers, generations, routing ------------------------------------------------------------
def test_a_changed_choice_is_an_answer_flip_and_a_single_request_document_never_is():
    flip = two(DOCS, shifted(5, 1, 1.5), dtype="bfloat16")  # choice 1 (-0.5) passes choice 0 (-1)
    assert (flip.flips, flip.choice_docs, flip.beyond) == (1, 12, 1) and flip.answer_flag
    assert "ANSWERS DIFFER" in flip.reasons
    kept = two(DOCS, shifted(5, 1, 0.5), dtype="bfloat16")  # -1.5: still below choice 0
    assert (kept.flips, kept.beyond, kept.flagged) == (0, 0, False)
    single = two([[-1.0]] * 4, [[-1.2]] * 4, dtype="bfloat16")
    assert (single.choice_docs, single.flips) == (0, 0)


def test_one_differing_generation_among_many_is_flagged():
    run = run_of([spec("m"), spec("m[v]", "vllm")],
                 [ev("m", "g", responses=["a"] * 9), ev("m[v]", "g", responses=["a"] * 8 + ["b"], engine=VL)])
    p = P.Parity(run, "m", "m[v]", "g")
    assert (p.generations, p.identical, p.generation_flag, p.reasons) == (9, 8, True, ["GENERATIONS DIFFER"])
    assert p.compared and p.docs == 0
    line = "ENGINES DISAGREE: m[v] against m, g: greedy generations differ on 1 of 9 documents"
    assert P.parity_lines(run, [p])[0].startswith(line)
    same = run_of([spec("m"), spec("m[v]", "vllm")],
                  [ev("m", "g", responses=["a"] * 9), ev("m[v]", "g", responses=["a"] * 9, engine=VL)])
    q = P.Parity(same, "m", "m[v]", "g")
    assert (q.identical, q.generation_flag) == (9, False)
    assert P.parity_lines(same, [q]) == ["Engines agree on 1 build × task comparison(s); generations identical on "
                                         "9 of 9 documents."]


def tele(*layers, tokens=None):
    return {"layers": [{"tokens_per_expert": list(c)} for c in layers],
            "summary": {"tokens": tokens if tokens is not None else sum(layers[0])}}


def test_routing_layers_are_equal_only_with_equal_counts_and_a_layer_count_mismatch_is_none_equal():
    a = tele([3, 1], [2, 2])
    assert P._layers_equal(a, tele([3, 1], [2, 2])) == (2, 2)
    assert P._layers_equal(a, tele([3, 1], [1, 3])) == (1, 2)
    assert P._layers_equal(a, tele([3, 1])) == (0, 2)
    assert P._layers_equal(tele([3, 1]), a) == (0, 2)
    assert P._layers_equal(None, a) is None and P._layers_equal(a, {"layers": []}) is None


def test_the_routing_cell_shows_both_totals_only_where_layers_and_totals_differ():
    p = two(DOCS, DOCS)
    p.routing, p.routed_tokens, p.preemptions = None, (None, None), 0
    assert P._routing_cell(p) == "-"
    p.routing, p.routed_tokens = (2, 2), (10, 12)
    assert P._routing_cell(p) == "2 / 2"
    p.routing = (1, 2)
    assert P._routing_cell(p) == "1 / 2 (10 vs 12 tokens counted)"
    p.preemptions = 3
    assert P._routing_cell(p) == ("1 / 2 (10 vs 12 tokens counted; vLLM preempted and recomputed 3 request(s), "
                                  "counted again)")
    p.routed_tokens = (12, 12)
    assert P._routing_cell(p) == "1 / 2"
    p.routed_tokens = (None, 12)
    assert P._routing_cell(p) == "1 / 2"


def test_routing_tokens_and_preemptions_are_read_per_engine():
    run = run_of([spec("m"), spec("m[v]", "vllm")],
                 [ev("m", "t", DOCS, routing=tele([3, 1], tokens=4)),
                  ev("m[v]", "t", DOCS, engine=VL, routing=tele([2, 1], tokens=3), extra={"eval": {"preemptions": 2}})])
    p = P.Parity(run, "m", "m[v]", "t")
    assert p.routing == (0, 1) and p.routed_tokens == (3, 4) and p.preemptions == 2
    assert P._tokens({"summary": {"tokens": "4"}}) is None and P._tokens(None) is None
    assert P._preemptions(run, "m", "t") == 0


# ---- a metric beyond claim 2's margin ----------------------------------------------------------
def test_a_metric_is_shifted_only_when_its_interval_lies_wholly_beyond_the_margin():
    p = two(DOCS, DOCS)
    p.metric_diffs = [("acc", Diff(0.02, 0.011, 0.03, 12), 0.01), ("f1", Diff(0.0, -0.005, 0.01, 12), 0.01),
                      ("x", Diff(-0.02, -0.03, -0.011, 12), 0.01), ("edge", Diff(0.02, 0.01, 0.03, 12), 0.01),
                      ("edge2", Diff(-0.02, -0.03, -0.01, 12), 0.01)]
    assert [m for m, _, _ in p.shifted] == ["acc", "x"] and p.reasons == ["METRIC BEYOND MARGIN"]
    assert P.MARGIN == 0.01
    lines = P.parity_lines(Run(Path("m"), {}, {}, []), [p])
    assert lines[0] == ("ENGINES DISAGREE: m[v] against m, mc: acc differs by +0.02 [+0.011, +0.03] (95% CI over "
                        "12 documents), wholly beyond ±0.01, the 1% of the reference's value that claim 2 judges by.")


def test_the_margin_is_one_percent_of_the_references_value_and_a_stderr_or_nan_value_is_skipped():
    mc = [{"doc_id": d, "acc": float(d % 2), "loglikelihoods": [-1.0, -2.0]} for d in range(10)]
    run = run_of([spec("m"), spec("m[v]", "vllm")],
                 [{"key": "a", "kind": "evaluate", "variant": "m", "status": "ok", "samples": {"t": mc},
                   "metrics": {"t": {"acc": 0.5, "acc_stderr": 0.1, "f1": math.nan, "acc_norm": 0.4}}},
                  {"key": "b", "kind": "evaluate", "variant": "m[v]", "status": "ok", "samples": {"t": mc},
                   "metrics": {"t": {"acc": 0.5, "acc_norm": 0.5}}, "engine": VL}])
    p = P.Parity(run, "m", "m[v]", "t")
    assert [(m, bound) for m, _, bound in p.metric_diffs] == [("acc", pytest.approx(0.005))]
    assert p.metric == "acc" and p.values == (0.5, 0.5)


# ---- the sentences that open the report --------------------------------------------------------
def test_the_agreement_sentence_gives_the_largest_difference_and_its_share_of_the_tolerance():
    p = two(DOCS, shifted(3, 0, 5e-4))
    lines = P.parity_lines(Run(Path("m"), {}, {}, []), [p])
    assert lines == ["Engines agree on 1 build × task comparison(s): largest loglikelihood |Δ| 0.000500, at most "
                     "45.5% of what a request may differ by (tolerance float32 0.001 + 0.0001·|ll| nats); the same "
                     "answer chosen on 12 of 12 multiple-choice documents."]
    assert P.parity_flags(Run(Path("m"), {}, {}, []), [p]) == []
    assert P.parity_lines(Run(Path("m"), {}, {}, []), []) == []


def test_each_disagreement_opens_its_own_line_and_the_card_gets_only_those():
    bad = shifted(11, 3, 0.0)
    bad[11][3] = math.nan
    p = two(DOCS, bad)
    lines = P.parity_lines(Run(Path("m"), {}, {}, []), [p])
    assert lines == ["ENGINES DISAGREE: m[v] against m, mc: a NaN or infinite loglikelihood on 1 of 12 documents "
                     "(on either engine; max |Δ| nan).",
                     "ENGINES DISAGREE: m[v] against m, mc: loglikelihood max |Δ| nan is beyond the float32 "
                     "tolerance of 0.001 + 0.0001·|ll| nats (1 of 12 documents).",
                     # argmax takes the NaN as the chosen answer: a changed answer too
                     "ENGINES DISAGREE: m[v] against m, mc: the chosen answer (argmax over the choices' "
                     "loglikelihoods) differs on 1 of 12 documents."]
    assert P.parity_flags(Run(Path("m"), {}, {}, []), [p, two(DOCS, DOCS)]) == lines


def test_parity_rows_pair_each_other_engine_with_the_reference_per_task():
    run = run_of([spec("m"), spec("m[v]", "vllm")],
                 [ev("m", "a", DOCS), ev("m[v]", "a", DOCS, engine=VL),
                  {**ev("m", "b", DOCS), "key": "m-b"}, {**ev("m[v]", "b", shifted(0, 0, 1.0), engine=VL), "key": "v-b"}])
    rows = P.parity_rows(run)
    assert [(p.ref, p.other, p.task, p.flagged) for p in rows] == [("m", "m[v]", "a", False), ("m", "m[v]", "b", True)]


# ---- routing strategies across engines ----------------------------------------------------------
def test_a_routing_strategys_native_twin_is_the_same_build_on_the_same_engine():
    topk = {"name": "topk", "params": {"k": 1}}
    run = run_of([spec("n"), spec("k", routing=topk), spec("nv", "vllm", routing={"name": "native"}),
                  spec("kv", "vllm", routing=topk), spec("np", routing={"name": "native", "params": {"x": 1}})], [])
    assert P._native_of(run, "k") == "n" and P._native_of(run, "kv") == "nv"
    assert P._native_of(run, "n") is None and P._native_of(run, "nv") is None
    assert P._native_of(run, "np") == "n"  # native with parameters is a strategy of its own
    first = run_of([spec("np", routing={"name": "native", "params": {"x": 1}}), spec("n"), spec("k", routing=topk)], [])
    assert P._native_of(first, "k") == "n"
    alone = run_of([spec("k", routing=topk)], [])
    assert P._native_of(alone, "k") is None


@pytest.mark.parametrize("gap, same", [(0.0, "yes"), (0.0019, "yes"), (0.0025, "yes"), (0.00285, "yes"),
                                       (0.0035, "NO")])
def test_a_routing_change_is_the_same_on_both_engines_within_twice_the_tolerance(gap, same):
    """float32: each request may differ by 2 × (1e-3 + 1e-4 × |the reference's loglikelihood|), here
    |-4.5| (the top-k run's): 0.0029; 0.0035 is beyond it."""
    topk = {"name": "topk", "params": {"k": 1}}
    change = shifted(2, 3, -0.5)
    other_change = shifted(2, 3, -0.5 + gap)
    run = run_of([spec("n"), spec("k", routing=topk), spec("nv", "vllm"), spec("kv", "vllm", routing=topk)],
                 [ev("k", "t", change), ev("kv", "t", other_change, engine=VL), ev("n", "t", DOCS),
                  ev("nv", "t", DOCS, engine=VL)])
    rows = [r for r in P.parity_rows(run) if r.ref == "k"]
    table = P.routing_effect_table(run, rows)
    assert [r[:3] for r in table.rows] == [["kv", "k", "t"]]
    assert table.rows[0][6] == "yes" and table.rows[0][7] == same
    assert table.rows[0][5] == f"{gap:.2e}" and table.notes


def test_a_routing_change_within_atol_does_not_change_outputs():
    topk = {"name": "topk", "params": {"k": 1}}
    run = run_of([spec("n"), spec("k", routing=topk), spec("nv", "vllm"), spec("kv", "vllm", routing=topk)],
                 [ev("n", "t", DOCS), ev("k", "t", shifted(2, 3, -5e-4)), ev("nv", "t", DOCS, engine=VL),
                  ev("kv", "t", shifted(2, 3, -5e-4), engine=VL)])
    table = P.routing_effect_table(run, [r for r in P.parity_rows(run) if r.ref == "k"])
    assert table.rows[0][6:] == ["no", "yes"]
    assert P.routing_effect_table(run, [r for r in P.parity_rows(run) if r.ref == "n"]).rows == []


# ---- the tables ----------------------------------------------------------------------------------
def test_the_parity_table_names_both_engines_with_versions_and_its_columns():
    # the other engine's results come first: the reference's label must be read from its own
    run = run_of([spec("m"), spec("m[v]", "vllm")],
                 [ev("m[v]", "t", shifted(0, 0, 5e-4), engine=VL), ev("m", "t", DOCS)])
    rows = P.parity_rows(run)
    table = P.parity_table(run, rows)
    assert table.columns == ["variant", "against", "engines", "task", "dtype", "docs", "requests", "mean Δ loglik",
                             "95% CI", "max |Δ|", "tolerance", "answers differ", "generations identical",
                             "routing layers equal", "metric", "flag"]
    row = table.rows[0]
    assert row[:7] == ["m[v]", "m", "vllm 0.32.0 vs transformers 5.19", "t", "float32", "12", "48"]
    p = rows[0]
    assert row[7] == f"{p.diff.mean:+.2e}" and row[8] == f"[{p.diff.lo:+.2e}, {p.diff.hi:+.2e}]" != "-"
    assert row[9] == "5.00e-04" and row[10] == "0.001 + 0.0001·|ll|" and row[11] == "0 / 12" and row[15] == ""
    assert row[14] == "acc 0.5000 vs 0.5000"
    assert table.notes and "float32 0.001 + 0.0001, float16 0.0625 + 0.008, bfloat16 0.5 + 0.01" in table.notes[0]
    assert P.parity_table(run, []).rows == [] and P.parity_table(run, []).notes == []


def test_the_parity_bootstrap_is_seeded_so_the_interval_is_the_same_each_report():
    from harness.report.bootstrap import paired_bootstrap
    other = [[x + 1e-4 * (d % 3) for x in doc] for d, doc in enumerate(DOCS)]
    p = two(DOCS, other)
    order = sorted(range(12), key=str)  # documents by id as text, as parity pairs them
    want = paired_bootstrap([sum(other[d]) / 4 for d in order], [sum(DOCS[d]) / 4 for d in order], seed=0)
    assert (p.diff.lo, p.diff.hi) == pytest.approx((want.lo, want.hi), rel=1e-12)


def test_a_reference_without_the_tasks_metric_is_compared_on_its_requests_alone():
    """The reference's evaluation recorded samples of ``t`` but no metric for it: the rows still
    compare loglikelihoods; the metric reads None on that side and no margin is checked."""
    run = run_of([spec("m"), spec("m[v]", "vllm")],
                 [{**ev("m", "t", DOCS), "metrics": {}}, ev("m[v]", "t", DOCS, engine=VL)])
    p = P.Parity(run, "m", "m[v]", "t")
    assert p.metric == "acc" and p.values == (0.5, None) and p.metric_diffs == [] and p.docs == 12
    assert P.parity_table(run, [p]).rows[0][14] == "-"


def test_the_routing_effect_tables_columns():
    topk = {"name": "topk", "params": {"k": 1}}
    run = run_of([spec("n"), spec("k", routing=topk), spec("nv", "vllm"), spec("kv", "vllm", routing=topk)],
                 [ev("kv", "t", shifted(2, 3, -0.5), engine=VL), ev("n", "t", DOCS), ev("k", "t", shifted(2, 3, -0.5)),
                  ev("nv", "t", DOCS, engine=VL)])
    table = P.routing_effect_table(run, [r for r in P.parity_rows(run) if r.ref == "k"])
    assert table.title == "Routing changes the outputs the same way on both engines"
    assert table.columns == ["variant", "against", "task", "change vs native (reference)", "change vs native (other)",
                             "max |difference of changes|", "changes outputs", "same change"]
    assert table.rows[0][3:5] == [f"{-0.5 / 4 / 12:+.3e}"] * 2


def test_the_parity_tables_note_states_the_difference_the_tolerances_their_source_and_the_decision_checks():
    run = run_of([spec("m"), spec("m[v]", "vllm")], [ev("m", "t", DOCS), ev("m[v]", "t", DOCS, engine=VL)])
    note = P.parity_table(run, P.parity_rows(run)).notes[0]
    for said in ("Δ: the other engine's loglikelihood minus the reference's, per document (mean over its requests), "
                 "95% CI by the paired bootstrap over documents; max |Δ| over every request (nan where any is). "
                 "A request may differ by atol + rtol × |the reference's loglikelihood| nats: ",
                 "float32's atol 1e-3 and rtol 1e-4 are those of lm-eval's own parity test of two engines "
                 "(lm-evaluation-harness tests/models/test_onnxruntime_parity.py: atol 1e-3 on summed "
                 "continuation log-probs, rtol 1e-4 on rolling perplexity)",
                 "; bfloat16's atol catches a broken engine, not rounding (its kernels round differently at every "
                 "layer: 0.36 nats measured on tiny builds), float16's is 8 times finer (3 more mantissa bits), "
                 "and their rtol is at most 1%. In every dtype a NaN or infinite loglikelihood, a multiple-choice "
                 "document whose chosen answer (argmax over its choices) differs, a greedy generation that "
                 "differs, and a task metric whose paired difference over documents has its 95% CI wholly beyond "
                 "1% of the reference's value (the smallest margin a claim judges by: claim 2's) are flagged. "
                 "Routing: MoE layers whose tokens-per-expert counts are equal on both engines. Both count every "
                 "token each request feeds the model, as if it ran alone: a loglikelihood request its context and "
                 "continuation but the last token (a context shared by n requests n times), a generation its "
                 "prompt and its generated tokens but the one it stopped at. Where the engines counted different "
                 "totals (a generation that stopped at another step, a request cut to another window, a request "
                 "vLLM preempted and computed again), both are shown."):
        assert said in note
    topk = {"name": "topk", "params": {"k": 1}}
    run = run_of([spec("n"), spec("k", routing=topk), spec("nv", "vllm"), spec("kv", "vllm", routing=topk)],
                 [ev("n", "t", DOCS), ev("k", "t", DOCS), ev("nv", "t", DOCS, engine=VL), ev("kv", "t", DOCS, engine=VL)])
    table = P.routing_effect_table(run, [r for r in P.parity_rows(run) if r.ref == "k"])
    assert table.empty == "No routing strategy other than native ran on two engines."
    assert table.notes == ["change vs native: the mean per-document loglikelihood change from the same build's "
                           "native routing on the same engine; the same change: on every request the two engines' "
                           "changes differ by at most twice the dtype's tolerance (each change is a difference of "
                           "two loglikelihoods)."]


def test_a_routing_change_is_measured_on_the_documents_both_runs_share():
    """The reference engine's native run lacks the last document: the change is taken over the 11
    documents both engines' changes have."""
    topk = {"name": "topk", "params": {"k": 1}}
    run = run_of([spec("n"), spec("k", routing=topk), spec("nv", "vllm"), spec("kv", "vllm", routing=topk)],
                 [ev("n", "t", DOCS[:11]), ev("k", "t", shifted(11, 3, -0.5)), ev("nv", "t", DOCS, engine=VL),
                  ev("kv", "t", shifted(11, 3, -0.5), engine=VL)])
    table = P.routing_effect_table(run, [r for r in P.parity_rows(run) if r.ref == "k"])
    assert table.rows[0][3:] == ["+0.000e+00", "+0.000e+00", "0.00e+00", "no", "yes"]


def test_the_parity_table_shows_dashes_where_a_row_has_no_interval_no_choices_or_no_generations():
    bad = shifted(11, 3, 0.0)
    bad[11][3] = math.nan
    run = run_of([spec("m"), spec("m[v]", "vllm")],
                 [ev("m", "mc", DOCS, value=0.4), ev("m[v]", "mc", bad, engine=VL, value=0.5),
                  ev("m", "g", responses=["a"] * 3), ev("m[v]", "g", responses=["a", "b", "a"], engine=VL)])
    table = P.parity_table(run, P.parity_rows(run))
    assert table.title == "Engine parity" and table.empty == "No build was evaluated on two engines."
    mc, g = table.rows
    assert mc[3] == "mc" and mc[7:10] == ["-", "-", "nan"] and mc[11:13] == ["1 / 12", "-"]
    assert mc[14] == "acc 0.5000 vs 0.4000" and mc[15] == "NaN/INFINITE, BEYOND TOLERANCE, ANSWERS DIFFER"
    assert g[3] == "g" and g[5:10] == ["0", "0", "-", "-", "-"] and g[11:13] == ["-", "2 / 3"]
    assert g[15] == "GENERATIONS DIFFER"


def test_a_routing_change_is_shown_for_every_task_with_shared_documents_after_one_without():
    topk = {"name": "topk", "params": {"k": 1}}
    run = run_of([spec("n"), spec("k", routing=topk), spec("nv", "vllm"), spec("kv", "vllm", routing=topk)],
                 [ev("k", "a", DOCS), ev("kv", "a", DOCS, engine=VL),
                  {**ev("k", "b", DOCS), "key": "k-b"}, {**ev("kv", "b", DOCS, engine=VL), "key": "kv-b"},
                  ev("n", "b", DOCS), ev("nv", "b", DOCS, engine=VL)])
    rows = [r for r in P.parity_rows(run) if r.ref == "k"]
    assert [r.task for r in rows] == ["a", "b"]
    assert [r[2] for r in P.routing_effect_table(run, rows).rows] == ["b"]


# ---- grouping and pairing edge cases -------------------------------------------------------------
def test_a_variant_without_an_evaluation_is_not_grouped_and_the_others_still_are():
    describe = {"key": "d", "kind": "describe", "variant": "m[v]", "status": "ok", "engine": VL}
    run = run_of([spec("m"), spec("m[v]", "vllm")], [ev("m", "t", DOCS), describe])
    assert P.groups(run) == []  # the vLLM variant was only described
    other = {"config": {"model_type": "olmoe"}, "trained": "t"}
    run = run_of([spec("x", build=other), spec("solo", build={"checkpoint": "/s"}), spec("m"), spec("m[v]", "vllm")],
                 [ev("solo", "t", DOCS), ev("m", "t", DOCS), ev("m[v]", "t", DOCS, engine=VL)])
    assert P.groups(run) == [("m", ["m[v]"])]  # after one without an evaluation and one on one engine


def test_a_task_only_the_reference_ran_gives_no_row():
    run = run_of([spec("m"), spec("m[v]", "vllm")], [ev("m", "a", DOCS), ev("m", "b", DOCS),
                                                      ev("m[v]", "a", DOCS, engine=VL)])
    assert [p.task for p in P.parity_rows(run)] == ["a"]


def test_rows_follow_the_references_task_order():
    run = run_of([spec("m"), spec("m[v]", "vllm")],
                 [ev("m[v]", "b", DOCS, engine=VL), ev("m", "a", DOCS), ev("m", "b", DOCS),
                  ev("m[v]", "a", DOCS, engine=VL)])
    assert [p.task for p in P.parity_rows(run)] == ["a", "b"]


def test_a_variant_without_a_dtype_is_held_to_float32s_tolerance():
    no_dtype = {"name": "m", "model": "moe", "build": BUILD}
    run = run_of([no_dtype, {**no_dtype, "name": "m[v]", "engine": {"name": "vllm"}}],
                 [ev("m", "t", DOCS), ev("m[v]", "t", DOCS, engine=VL)])
    p = P.Parity(run, "m", "m[v]", "t")
    assert p.dtype == "float32" and (p.atol, p.rtol) == P.TOLERANCE["float32"]


def test_documents_or_generations_on_one_engine_only_are_left_out():
    p = two(DOCS + [[-1.0, -2.0]], DOCS)  # a 13th document on the reference only
    assert (p.docs, p.requests) == (12, 48)
    run = run_of([spec("m"), spec("m[v]", "vllm")],
                 [ev("m", "g", responses=["a"] * 4), ev("m[v]", "g", responses=["a"] * 3, engine=VL)])
    q = P.Parity(run, "m", "m[v]", "g")
    assert (q.generations, q.identical, q.generation_flag) == (3, 3, False)


def test_a_two_choice_document_is_multiple_choice_and_a_flip_from_any_choice_counts():
    p = two([[-1.0, -2.0]] * 5, [[-1.0, -2.0]] * 4 + [[-2.0, -1.0]], dtype="bfloat16")
    assert (p.choice_docs, p.flips) == (5, 1)
    best_last = [[-3.0, -2.0, -1.0]] * 4
    q = two(best_last, best_last)
    assert (q.choice_docs, q.flips, q.flagged) == (4, 0, False)


def test_the_parity_bootstrap_gives_the_same_interval_every_time_and_at_seed_zero():
    mc = [{"doc_id": d, "acc": ((7 * d) % 11) / 10, "loglikelihoods": [-1.0 - 1e-4 * ((7 * d) % 11), -2.0]}
          for d in range(12)]
    mc_v = [{"doc_id": d, "acc": ((5 * d) % 7) / 10, "loglikelihoods": [-1.0, -2.0]} for d in range(12)]
    run = run_of([spec("m"), spec("m[v]", "vllm")],
                 [{"key": "a", "kind": "evaluate", "variant": "m", "status": "ok", "samples": {"t": mc},
                   "metrics": {"t": {"acc": 0.5}}},
                  {"key": "b", "kind": "evaluate", "variant": "m[v]", "status": "ok", "samples": {"t": mc_v},
                   "metrics": {"t": {"acc": 4 / 12}}, "engine": VL}])
    one, two_ = P.parity_rows(run)[0], P.parity_rows(run)[0]
    seeded = P.Parity(run, "m", "m[v]", "t", seed=0)
    for p in (one, two_):
        assert (p.diff.lo, p.diff.hi) == (seeded.diff.lo, seeded.diff.hi)
        assert [(m, d.lo, d.hi) for m, d, _ in p.metric_diffs] == [(m, d.lo, d.hi) for m, d, _ in seeded.metric_diffs]
    default = P.Parity(run, "m", "m[v]", "t")
    assert (default.diff.lo, default.diff.hi) == (seeded.diff.lo, seeded.diff.hi)
    other_seed = P.Parity(run, "m", "m[v]", "t", seed=1)
    assert seeded.metric_diffs and (other_seed.diff.lo, other_seed.diff.hi) != (seeded.diff.lo, seeded.diff.hi)


def test_a_metric_after_one_that_cannot_be_compared_is_still_compared():
    mc = [{"doc_id": d, "acc": float(d % 2), "f1": float(d % 2), "loglikelihoods": [-1.0, -2.0]} for d in range(10)]
    run = run_of([spec("m"), spec("m[v]", "vllm")],
                 [{"key": "a", "kind": "evaluate", "variant": "m", "status": "ok", "samples": {"t": mc},
                   "metrics": {"t": {"acc": math.nan, "f1": 0.5}}},
                  {"key": "b", "kind": "evaluate", "variant": "m[v]", "status": "ok", "samples": {"t": mc},
                   "metrics": {"t": {"acc": 0.5, "f1": 0.5}}, "engine": VL}])
    assert [m for m, _, _ in P.Parity(run, "m", "m[v]", "t").metric_diffs] == ["f1"]


def test_a_task_without_any_metric_has_no_metric_column():
    run = run_of([spec("m"), spec("m[v]", "vllm")],
                 [{**ev("m", "t", DOCS), "metrics": {}}, {**ev("m[v]", "t", DOCS, engine=VL), "metrics": {}}])
    p = P.Parity(run, "m", "m[v]", "t")
    assert p.metric is None and p.values == (None, None) and p.metric_diffs == []


def test_routing_and_preemptions_are_each_engines_own_whatever_the_record_order():
    run = run_of([spec("m"), spec("m[v]", "vllm")],
                 [ev("m[v]", "t", DOCS, engine=VL, routing=tele([2, 1], tokens=3), extra={"eval": {"preemptions": 2}}),
                  ev("m", "t", DOCS, routing=tele([3, 1], tokens=4), extra={"eval": {"preemptions": 1}})])
    p = P.Parity(run, "m", "m[v]", "t")
    assert p.routing == (0, 1) and p.routed_tokens == (3, 4) and p.preemptions == 3


def test_the_agreement_sentence_lists_each_dtypes_tolerance():
    lines = P.parity_lines(Run(Path("m"), {}, {}, []), [two(DOCS, DOCS), two(DOCS, DOCS, dtype="bfloat16")])
    assert "(tolerance bfloat16 0.5 + 0.01·|ll|, float32 0.001 + 0.0001·|ll| nats)" in lines[0]
    assert lines[0].startswith("Engines agree on 2 build × task comparison(s): largest loglikelihood |Δ| 0, at most 0.0%")


def test_a_routing_change_needs_a_native_twin_on_both_engines():
    topk = {"name": "topk", "params": {"k": 1}}
    run = run_of([spec("n"), spec("k", routing=topk), spec("kv", "vllm", routing=topk)],
                 [ev("n", "t", DOCS), ev("k", "t", shifted(2, 3, -0.5)), ev("kv", "t", shifted(2, 3, -0.5), engine=VL)])
    assert P.routing_effect_table(run, [r for r in P.parity_rows(run) if r.ref == "k"]).rows == []


@pytest.mark.parametrize("other_change, same", [(-48.0, "yes"), (math.nextafter(-48.0, 0.0), "NO")])
def test_changes_exactly_twice_the_tolerance_apart_are_the_same(other_change, same):
    """bfloat16 at a loglikelihood of -50: each request may differ by 0.5 + 0.01 × 50 = 1, so two
    changes (-50 and -48) exactly 2 apart are the same change; a hair further apart they are not."""
    topk = {"name": "topk", "params": {"k": 1}}
    bf = lambda name, engine=None, routing=None: spec(name, engine, dtype="bfloat16", routing=routing)  # noqa: E731
    zero = [[0.0]] * 3
    run = run_of([bf("n"), bf("k", routing=topk), bf("nv", "vllm"), bf("kv", "vllm", routing=topk)],
                 [ev("n", "t", zero), ev("k", "t", [[-50.0]] * 3), ev("nv", "t", zero, engine=VL),
                  ev("kv", "t", [[-50.0], [-50.0], [other_change]], engine=VL)])
    table = P.routing_effect_table(run, [r for r in P.parity_rows(run) if r.ref == "k"])
    assert table.rows[0][7] == same


@pytest.mark.parametrize("change, shown", [(-0.5, "no"), (math.nextafter(-0.5, -1.0), "yes")])
def test_a_routing_change_of_exactly_atol_does_not_change_outputs(change, shown):
    """bfloat16's atol is 0.5: a change of exactly 0.5 nats is within what the engines' rounding
    allows; the next float beyond it changes outputs."""
    topk = {"name": "topk", "params": {"k": 1}}
    bf = lambda name, engine=None, routing=None: spec(name, engine, dtype="bfloat16", routing=routing)  # noqa: E731
    zero = [[0.0]] * 3
    run = run_of([bf("n"), bf("k", routing=topk), bf("nv", "vllm"), bf("kv", "vllm", routing=topk)],
                 [ev("n", "t", zero), ev("k", "t", [[change]] * 3), ev("nv", "t", zero, engine=VL),
                  ev("kv", "t", [[change]] * 3, engine=VL)])
    table = P.routing_effect_table(run, [r for r in P.parity_rows(run) if r.ref == "k"])
    assert table.rows[0][6] == shown
