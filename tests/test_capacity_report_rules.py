"""Knowledge capacity's decisions from both sides (harness/report/capacity.py): P (one embedding table,
from the build's config or its description), "bounded by the corpus" against "capacity", the
equal-total twin within 2%, the best dense build within 10% of the MoE's exposures, the ratios'
guards against a build that stored nothing. In-memory points and runs: milliseconds each. The section
on a whole constructed run: tests/test_capacity_report.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.report import capacity as C
from harness.report.run import Run


def pt(variant="d", moe=False, exposures=1000.0, total=1000.0, bits=500.0, max_bits=4000.0, paper=None, **kw):
    stored = {"bits": bits, "max_bits": max_bits, "fact_bits": 3000.0, "value_bits": bits, "name_bits": None}
    return C.Point(variant, moe, exposures, "word", total, None, stored, paper, **kw)


# ---- a point's figures --------------------------------------------------------------------------
def test_r_divides_by_the_papers_count_where_known_else_the_builds_total():
    p = pt(total=1000.0, bits=500.0, max_bits=4000.0)
    assert (p.p, p.r, p.r_max) == (1000.0, 0.5, 4.0)
    q = pt(total=1000.0, paper=800.0, bits=400.0, max_bits=1600.0)
    assert (q.p, q.r, q.r_max) == (800.0, 0.5, 2.0)


def test_a_sweep_points_label_is_split_from_its_build():
    assert (pt("moe[t=2]").base, pt("moe[t=2]").point) == ("moe", "[t=2]")
    assert (pt("moe").base, pt("moe").point) == ("moe", "")


@pytest.mark.parametrize("r_max, reading", [(2.0 * 1.5, "capacity"), (2.0 * 1.5 - 1e-9, "bounded by the corpus")])
def test_the_corpus_bounds_a_build_whose_r_max_is_under_one_and_a_half_times_the_peak(r_max, reading):
    p = pt(exposures=1000.0, total=1.0, max_bits=r_max)
    assert C._reading(p) == reading and p.expected["expected"] == min(r_max, 2.0)


def test_away_from_100_or_1000_exposures_there_is_no_paper_figure():
    assert C._reading(pt(exposures=10.0)) == "no paper figure at this exposure count"
    assert C._reading(pt(exposures=None)) == "no paper figure at this exposure count"


def test_a_non_gated_build_at_100_exposures_is_not_lowered():
    assert pt(exposures=100.0, gated=True).expected["peak"] == pytest.approx(1 / 1.3)
    assert pt(exposures=100.0, gated=False).expected["peak"] == 1.0


def test_exposures_are_the_mean_over_buckets_skipping_what_is_not_a_number():
    reg = lambda e: {"corpus": {"regime": {"exposures_per_fact": e}}}  # noqa: E731
    assert C._exposures(reg({"head": {"exposures_mean": 100}, "tail": {"exposures_mean": 50.0}})) == 75.0
    assert C._exposures(reg({"head": {"exposures_mean": 100}, "tail": {"exposures_mean": "x"}, "b": 3})) == 100.0
    assert C._exposures(reg({})) is None and C._exposures({}) is None and C._exposures({"corpus": None}) is None


def test_f_prints_three_significant_digits_or_a_dash():
    assert C._f(None) == "-" and C._f(0.123456) == "0.123" and C._f(1234.5, 4) == "1234" and C._f(0) == "0"


# ---- the twins ----------------------------------------------------------------------------------
def test_the_equal_total_twin_is_within_two_percent_at_the_same_sweep_point_and_the_nearest():
    m = pt("moe[t=1]", moe=True, total=1000.0)
    near, edge, far = pt("a[t=1]", total=1010.0), pt("b[t=1]", total=1019.9), pt("c[t=1]", total=1020.1)
    assert C.equal_total_twin(m, [edge, near, far]) is near
    assert C.equal_total_twin(m, [edge, far]) is edge
    assert C.equal_total_twin(m, [far]) is None
    # exactly at the tolerance is in (1.25 - 1 is exact in binary)
    assert C.equal_total_twin(m, [pt("x[t=1]", total=1250.0)], tolerance=0.25) is not None
    assert C.equal_total_twin(m, [pt("x[t=1]", total=1250.1)], tolerance=0.25) is None
    assert C.equal_total_twin(m, [pt("a[t=2]", total=1000.0)]) is None  # another sweep point
    assert C.equal_total_twin(m, [pt("m2[t=1]", moe=True, total=1000.0)]) is None  # an MoE is no twin
    assert C.equal_total_twin(m, [pt("lo[t=1]", total=980.1)]) is not None


def test_the_best_dense_is_the_highest_r_within_ten_percent_of_the_moes_exposures():
    m = pt("moe", moe=True, exposures=1000.0)
    lo, hi = pt("lo", exposures=1099.9, bits=100.0), pt("hi", exposures=900.1, bits=300.0)
    out = pt("out", exposures=1100.1, bits=900.0)
    assert C.best_dense(m, [lo, hi, out]) is hi
    assert C.best_dense(m, [lo, out]) is lo
    assert C.best_dense(m, [out]) is None
    assert C.best_dense(m, [pt("m2", moe=True, bits=900.0), lo]) is lo
    assert C.best_dense(m, [pt("none", exposures=None)]) is None
    assert C.best_dense(pt("moe", moe=True, exposures=None), [lo]) is None
    assert C.best_dense(pt("moe", moe=True, exposures=0.0), [lo]) is None


# ---- the tables on an in-memory run -------------------------------------------------------------
def cap(bits_known=0.5):
    """A capacity scoring of 10 persons, 4 values of one attribute, names from 1,000."""
    import math
    n = 10
    return {"persons": n, "tokenizer": "word", "value_counts": {"a": 4},
            "loss_nats": {"a": (1 - bits_known) * n * math.log(4), "name": n * math.log(n)}, "name_space": 1000}


def rec(variant, moe, total, exposures=1000, capacity=None, build=None, config=None, status="ok"):
    spec = {"name": variant, "is_moe": moe}
    if config is not None:
        spec["build"] = {"config": config}
    return {"key": variant, "kind": "train", "variant": variant, "status": status, "params": {"total": total},
            "capacity": cap() if capacity is None else capacity, "build": build or {"moe": moe},
            "spec": {"variant": spec},
            "corpus": {"regime": {"exposures_per_fact": {"tail": {"exposures_mean": exposures}}}}}


def run_of(*records) -> Run:
    names = list(dict.fromkeys(r["variant"] for r in records))
    return Run(Path("mem"), {"variants": [{"name": n} for n in names]}, {}, list(records), variant_order=names)


def test_p_of_an_untied_build_described_without_a_config_leaves_out_one_table():
    untied = rec("u", False, 10_000, build={"tie_word_embeddings": False, "vocab_size": 100, "hidden_size": 8,
                                            "family": "llama"})
    tied = rec("t", False, 10_000, build={"tie_word_embeddings": True, "vocab_size": 100, "hidden_size": 8,
                                          "family": "other"})
    unknown = rec("x", False, 10_000, build={"vocab_size": 100, "hidden_size": 8})
    by = {p.variant: p for p in C.points(run_of(untied, tied, unknown))}
    assert (by["u"].paper_params, by["u"].tied, by["u"].p) == (9_200, False, 9_200)
    assert (by["t"].paper_params, by["t"].tied) == (10_000, True)
    assert (by["x"].paper_params, by["x"].p) == (None, 10_000.0)
    assert by["u"].gated and not by["t"].gated  # llama's MLP is gated; an unknown family is not
    rows = {r[0]: r for r in C.capacity_table(run_of(untied, tied, unknown)).rows}
    assert rows["u"][4] == "9.2k (tied-equivalent)" and rows["u"][5] == "10k (untied)"
    assert rows["t"][4] == "10k" and rows["t"][5] == "10k (tied)" and rows["x"][4] == "10k" and rows["x"][5] == "10k"


def test_an_moe_described_without_a_config_keeps_its_experts_and_top_k():
    m = rec("m", True, 10_000, build={"moe": True, "num_experts": 32, "top_k": 1, "hidden_size": 8})
    p = C.points(run_of(m))[0]
    assert p.geometry == {"num_experts": 32, "top_k": 1, "hidden": 8, "expert_width": None} and p.moe
    assert C.points(run_of(rec("d", False, 10_000, build={"hidden_size": 8})))[0].geometry is None


def test_only_the_first_scored_train_result_of_a_build_counts():
    a = rec("a", False, 1000, capacity=cap(0.2))
    b = {**rec("a", False, 1000, capacity=cap(0.9)), "key": "a2"}
    skipped = [{**rec("n", False, 1000), "capacity": None}, {**rec("z", False, 0)},
               {**rec("f", False, 1000), "status": "failed"}]
    pts = C.points(run_of(a, b, *skipped))
    assert [p.variant for p in pts] == ["a"] and pts[0].stored["bits"] == pytest.approx(C.points(run_of(a))[0].stored["bits"])


def test_the_moe_table_skips_an_moe_with_neither_a_best_dense_nor_a_twin_and_guards_zero_bits():
    zero = cap(0.0)
    zero["loss_nats"] = {"a": 10 * 1.3862943611198906, "name": 10 * 6.907755278982137}  # nothing known: 0 bits
    m = rec("m", True, 1000, exposures=1000, capacity=zero)
    d = rec("d", False, 1000, exposures=1000)
    t = C.moe_factor_table(run_of(m, d))
    assert len(t.rows) == 1 and t.rows[0][0] == "m"
    assert t.rows[0][4] == "-" and t.rows[0][7] == "-"  # no ratio over an MoE that stored nothing (or less)
    alone = C.moe_factor_table(run_of(rec("m", True, 1000, exposures=1000), rec("d", False, 5000, exposures=5000)))
    assert alone.rows == [] and alone.notes == []


def test_the_moe_table_names_the_best_dense_and_the_equal_total_twin_with_their_ratios():
    m = rec("m", True, 1000, exposures=1000, capacity=cap(0.25))
    best = rec("best", False, 500, exposures=1000, capacity=cap(0.5))
    twin = rec("twin", False, 1000, exposures=5000, capacity=cap(0.75))
    t = C.moe_factor_table(run_of(m, best, twin))
    by = {p.variant: p for p in C.points(run_of(m, best, twin))}
    row = t.rows[0]
    assert row[3].startswith(f"{C._f(by['best'].r)} (best") and row[6] == "twin"
    assert row[4] == C._f(by["best"].r / by["m"].r)
    assert row[7] == C._f(by["twin"].stored["bits"] / by["m"].stored["bits"])
    assert row[3].endswith(", bounded by the corpus)") == by["best"].expected["bounded"]
    assert t.notes


def test_the_gated_note_appears_only_at_100_exposures():
    t = C.capacity_table(run_of(rec("a", False, 1000, exposures=100, build={"family": "llama"}),
                                rec("b", False, 1000, exposures=1000, build={"family": "llama"}),
                                rec("c", False, 1000, exposures=100, build={"family": "other"})))
    rows = {r[0]: r[14] for r in t.rows}
    assert "gated MLP, 100 exposures" in rows["a"] and "gated" not in rows["b"] and "gated" not in rows["c"]
    assert [r[0] for r in t.rows] == ["a", "c", "b"]  # by exposures, then size


def test_the_config_comes_from_the_train_jobs_spec_else_the_plans_variant():
    cfg = {"model_type": "llama", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 100, "tie_word_embeddings": False}
    r = rec("a", False, 10_000)
    r["spec"] = {"variant": {"name": "a"}}  # the train job's spec names no config
    run = Run(Path("mem"), {"variants": [{"name": "a", "build": {"config": cfg}}]}, {}, [r], variant_order=["a"])
    p = C.points(run)[0]
    assert p.tied is False and p.paper_params == 10_000 - 100 * 8 and p.gated
    own = rec("b", False, 10_000, config={**cfg, "tie_word_embeddings": True})
    run = Run(Path("mem"), {"variants": [{"name": "b", "build": {"config": cfg}}]}, {}, [own], variant_order=["b"])
    assert C.points(run)[0].tied is True  # the job's own config wins over the plan's


def test_each_row_states_kind_parameters_without_embeddings_and_bits_per_parameter_as_built():
    m = rec("m", True, 10_000)
    m["params"] = {"total": 10_000, "total_no_embed": 6_000}
    d = rec("d", False, 10_000)
    t = C.capacity_table(run_of(m, d))
    by = {r[0]: dict(zip(t.columns, r)) for r in t.rows}
    p = {x.variant: x for x in C.points(run_of(m, d))}
    assert by["m"]["kind"] == "MoE" and by["d"]["kind"] == "dense"
    assert by["m"]["params (no embeddings)"] == "6k" and by["d"]["params (no embeddings)"] == "-"
    assert p["m"].no_embed == 6000.0
    assert by["m"]["bits / param as built"] == C._f(p["m"].stored["bits"] / 10_000) != "-"
    assert by["m"]["bits / param (no emb.)"] == C._f(p["m"].stored["bits"] / 6_000) != "-"


def test_the_capacity_tables_notes_state_the_measure_p_the_ceiling_and_the_corpus_bound():
    notes = " ".join(C.capacity_table(run_of(rec("d", False, 1000))).notes)
    for said in ("bits stored = N log2((N0 - N) / e^p1) + N log2(S0 / e^p2), the paper's measure for bioS "
                 "(Definition 4.3): name bits + value bits, p1 and p2 the model's cross-entropy of the name and of "
                 "the value tokens, over every person; nothing floored.",
                 "P counts one embedding table, as the paper does (it ties input and output embeddings): an untied "
                 "build's P is its total less one vocab x hidden table (tied-equivalent); 'bits / param as built' "
                 "divides by the build's own total, '(no emb.)' leaves every embedding out.",
                 "most the bound gives = value facts + N log2((N0 - N) / N): a model reads the first name before "
                 "anything says whose biography it is, so at best it is uniform over the N names it saw (name loss "
                 "N ln N). R_max = that / P is the most R can be.",
                 "paper expects = min(R_max, peak): the law's peak over model sizes is ~2 bits/param at 1000 "
                 "exposures and ~1 at 100, where gated MLPs (SwiGLU, every family here) are 1.3x lower (0.77). "
                 "Where R_max < 1.5 x the peak the corpus, not the build, bounds R: 'bounded by the corpus'. "
                 "Builds storing <= 0 bits are left out of the log-log figure."):
        assert said in notes
    moe = " ".join(C.moe_factor_table(run_of(rec("m", True, 1000), rec("d", False, 1000))).notes)
    assert moe.startswith("The paper's MoE factor (1.3x below the dense law at 1000 exposures, 1.5x at 100) was "
                          "measured with 32 experts, each as wide as the model (d -> d -> d), top-1, against the "
                          "law's peak; it is quoted only for that geometry. Here the MoE is compared with the best "
                          "dense R this run measured at its exposure count; the equal-total twin's ratio is shown apart.")


def test_a_config_the_counter_rejects_or_a_malformed_job_spec_falls_back_to_the_build_description():
    desc = {"tie_word_embeddings": False, "vocab_size": 100, "hidden_size": 8, "family": "llama"}
    bad = rec("a", False, 10_000, config={"model_type": "mystery"}, build=desc)
    p = C.points(run_of(bad))[0]
    assert (p.paper_params, p.tied, p.gated, p.geometry) == (9_200, False, True, None)
    odd = rec("b", False, 10_000, build=desc)
    odd["spec"] = {"variant": "not a map"}
    assert C.points(run_of(odd))[0].paper_params == 9_200


def test_a_dense_config_has_no_moe_geometry_and_an_moe_config_has_its_experts_width():
    dense = {"model_type": "llama", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
             "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 100, "tie_word_embeddings": True}
    moe = {"model_type": "olmoe", "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 1,
           "num_attention_heads": 2, "num_key_value_heads": 2, "vocab_size": 100, "tie_word_embeddings": True,
           "num_experts": 4, "num_experts_per_tok": 1}
    by = {p.variant: p for p in C.points(run_of(rec("d", False, 10_000, config=dense), rec("m", True, 10_000, config=moe)))}
    assert by["d"].geometry is None
    assert by["m"].geometry == {"num_experts": 4, "top_k": 1, "hidden": 8, "expert_width": 8}


def test_the_capacity_tables_title_columns_and_empty_message():
    t = C.capacity_table(run_of())
    assert t.title == "Knowledge capacity (Allen-Zhu & Li's bound, whole population)"
    assert t.columns == ["build", "kind", "exposures / person", "tokenizer", "P (one embedding table)",
                         "params as built", "params (no embeddings)", "value facts (bits)", "most the bound gives",
                         "bits stored", "value bits", "name bits", "R = bits / P", "R_max", "paper expects",
                         "reading", "bits / param as built", "bits / param (no emb.)"]
    assert t.empty == "No train result carries a capacity scoring (only bios corpora are scored)."
    m = C.moe_factor_table(run_of())
    assert m.title == "MoE capacity per parameter against dense" and m.rows == []
    assert m.columns == ["MoE", "exposures / person", "MoE R", "best dense R (build)", "best dense / MoE", "paper",
                         "equal-total twin", "vs its equal-total twin (dense / MoE bits)"]
    assert m.empty == "No MoE with a scored dense build at its exposure count."


def test_a_row_without_a_paper_figure_tokenizer_or_name_bits_shows_dashes_and_exposures_keep_four_digits():
    no_names = cap()
    del no_names["name_space"]
    r = rec("a", False, 1000, exposures=12345.6, capacity={**no_names, "tokenizer": None})
    row = dict(zip(C.capacity_table(run_of(r)).columns, C.capacity_table(run_of(r)).rows[0]))
    assert row["paper expects"] == "-" and row["reading"] == "no paper figure at this exposure count"
    assert row["tokenizer"] == "-" and row["name bits"] == "-" and row["exposures / person"] == "1.235e+04"
    named = dict(zip(C.capacity_table(run_of(rec("b", False, 1000))).columns,
                     C.capacity_table(run_of(rec("b", False, 1000))).rows[0]))
    bits = C.points(run_of(rec("b", False, 1000)))[0].stored["name_bits"]
    assert named["name bits"] == f"{bits:,.0f}" != "-" and named["tokenizer"] == "word"


def test_rows_run_by_exposures_with_unknown_exposures_first_then_size():
    unknown = rec("u", False, 1000, capacity=cap())
    unknown["corpus"] = {}
    rows = C.capacity_table(run_of(rec("half", False, 1000, exposures=0.5), unknown,
                                   rec("big", False, 2000, exposures=0.5))).rows
    assert [r[0] for r in rows] == ["u", "half", "big"]


def test_the_equal_total_twin_is_the_nearest_below_or_above():
    m = pt("m", moe=True, total=1000.0)
    below, above = pt("below", total=990.0), pt("above", total=1005.0)
    assert C.equal_total_twin(m, [below, above]) is above
    assert C.equal_total_twin(m, [pt("b2", total=995.0), pt("a2", total=1010.0)]).variant == "b2"


def cap_bits(value_bits: float) -> dict:
    """A scoring of 10 persons and one 4-valued attribute storing ``value_bits`` (no name term)."""
    import math
    return {"persons": 10, "tokenizer": "word", "value_counts": {"a": 4},
            "loss_nats": {"a": (20.0 - value_bits) * math.log(2)}}


def test_the_moe_table_shows_only_the_twin_when_no_dense_build_shares_its_exposures():
    m = rec("m", True, 1000, exposures=12345.6, capacity=cap_bits(8.0))
    twin = rec("twin", False, 1000, exposures=100, capacity=cap_bits(10.0))
    row = C.moe_factor_table(run_of(m, twin)).rows[0]
    p = C.points(run_of(m))[0]
    assert row[:4] == ["m", "1.235e+04", C._f(p.r), "-"] and row[4] == "-"
    assert row[6:] == ["twin", C._f(10.0 / 8.0)]


def test_a_best_dense_the_corpus_does_not_bound_has_no_bounded_note_and_a_missing_twin_a_dash():
    m = rec("m", True, 1000, exposures=1000, capacity=cap_bits(8.0))
    small = rec("small", False, 5, exposures=1000, capacity=cap_bits(16.0))  # R_max = 20 / 5: above 1.5 x 2
    row = C.moe_factor_table(run_of(m, small)).rows[0]
    assert C.points(run_of(small))[0].expected["bounded"] is False
    assert row[3] == f"{C._f(3.2)} (small)" and row[4] == C._f(3.2 / 0.008) and row[6:] == ["-", "-"]


@pytest.mark.parametrize("bits, shown", [(0.0, False), (0.5, True)])
def test_ratios_over_an_moe_that_stored_nothing_are_not_computed(bits, shown):
    m = rec("m", True, 1000, exposures=1000, capacity=cap_bits(bits))
    d = rec("d", False, 1000, exposures=1000, capacity=cap_bits(10.0))
    row = C.moe_factor_table(run_of(m, d)).rows[0]
    assert (row[4] != "-") == shown and (row[7] != "-") == shown
    if shown:
        assert row[7] == C._f(10.0 / 0.5, 3)


def test_an_moe_without_a_comparison_is_skipped_and_the_next_one_shown():
    rows = C.moe_factor_table(run_of(rec("m1", True, 1000, exposures=5000), rec("m2", True, 1000, exposures=1000),
                                     rec("d", False, 500, exposures=1000))).rows
    assert [r[0] for r in rows] == ["m2"]


def test_a_builds_point_reads_its_first_train_result_with_a_scoring_and_that_results_own_params():
    unscored = {**rec("a", False, 1000), "capacity": None, "key": "a0"}
    scored = rec("a", False, 2000)
    evaluate = {**rec("e", False, 3000), "kind": "evaluate"}  # only train results are scored
    describe = {"key": "d", "kind": "describe", "variant": "a", "status": "ok", "params": {"total": 9999}}
    pts = C.points(run_of(unscored, scored, evaluate, describe))
    assert [(p.variant, p.total) for p in pts] == [("a", 2000.0)]
    bare = {**rec("b", False, 0), "params": None}
    other = {"key": "o", "kind": "describe", "variant": "a", "status": "ok", "params": {"total": 7777}}
    own = {"key": "d2", "kind": "describe", "variant": "b", "status": "ok", "params": {"total": 4444}}
    by = {p.variant: p for p in C.points(run_of(other, bare, own))}
    assert by["b"].total == 4444.0  # without params of its own: the variant's describe result's
