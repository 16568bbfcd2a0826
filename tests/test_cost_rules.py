"""What a correct answer and a million tokens cost (harness.report.costs): which seconds are charged,
how a job's seconds are shared among its tasks, what counts as a correct answer, which device and
price a row gets, and what the table says when one of them is missing."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.report import costs
from harness.report.run import Run

H100, A100 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"
GPU = {"device": "cuda", "device_name": H100}


def _docs(n: int, right: int) -> list[dict]:
    return [{"doc_id": i, "acc": 1.0 if i < right else 0.0} for i in range(n)]


def _ev(variant="moe", key="e", env=GPU, **rec) -> dict:
    return {"key": key, "kind": "evaluate", "variant": variant, "status": "ok", "env": env, **rec}


def _run(*records, variants=("moe", "dense"), prices=None, suite_prices=None) -> Run:
    suite = {"prices": suite_prices} if suite_prices else {}
    run = Run(Path("."), {"variants": [{"name": v} for v in variants]}, suite, list(records), list(variants))
    run.price_overrides = prices or {}
    return run


def _one(run: Run) -> costs.AnswerCost:
    (c,) = costs.answer_costs(run)
    return c


# ---------------------------------------------------------------- which seconds are charged

def test_cost_is_charged_on_evaluation_time_not_the_jobs_whole_time():
    """eval_s (the evaluation itself) wins over timings.run_s (which includes loading the model):
    60 s of evaluation in a 600 s job is 60 s, 6 s per correct answer, not 60."""
    c = _one(_run(_ev(eval_s=60.0, timings={"run_s": 600.0}, metrics={"mc": {"acc": 0.5}}, samples={"mc": _docs(20, 10)})))
    assert (c.seconds, c.seconds_per_correct) == (60.0, 6.0)


@pytest.mark.parametrize("eval_s", [None, True, "60", [60]])
def test_without_a_numeric_eval_s_the_jobs_run_time_is_charged(eval_s):
    """An older result without eval_s (or a malformed one, a bool included) falls back to run_s."""
    c = _one(_run(_ev(eval_s=eval_s, timings={"run_s": 50.0}, metrics={"mc": {"acc": 0.5}}, samples={"mc": _docs(10, 5)})))
    assert c.seconds == 50.0


@pytest.mark.parametrize("rec", [{"timings": {"run_s": "50"}}, {"timings": None}, {"eval_s": False}, {}])
def test_a_job_without_any_measured_time_gives_no_row(rec):
    assert costs.answer_costs(_run(_ev(**rec, metrics={"mc": {"acc": 0.5}}, samples={"mc": _docs(10, 5)}))) == []


def test_a_jobs_seconds_are_shared_among_its_tasks_by_document_count():
    """120 s over tasks of 10 and 30 documents: 30 s and 90 s; a task without acc takes no share."""
    rows = costs.answer_costs(_run(_ev(eval_s=120.0, metrics={"a": {"acc": 0.4}, "b": {"acc": 0.5}, "p": {"ppl": 3.0}},
                                       samples={"a": _docs(10, 4), "b": _docs(30, 15), "p": _docs(60, 0)})))
    got = {c.task: (c.docs, c.correct, c.seconds) for c in rows}
    assert got == {"a": (10, 4.0, 30.0), "b": (30, 15.0, 90.0)}


def test_two_jobs_of_one_variant_and_task_add_up():
    """Documents, correct answers and seconds of both jobs: 10 + 30 documents, 4 + 6 right, 20 + 40 s."""
    c = _one(_run(_ev(key="e1", eval_s=20.0, metrics={"mc": {"acc": 0.4}}, samples={"mc": _docs(10, 4)}),
                  _ev(key="e2", eval_s=40.0, metrics={"mc": {"acc": 0.2}}, samples={"mc": _docs(30, 6)})))
    assert (c.docs, c.correct, c.seconds, c.seconds_per_correct) == (40, 10.0, 60.0, 6.0)
    assert c.accuracy == 0.25


@pytest.mark.parametrize("metrics, samples", [
    ({"mc": {"acc": 0.5}}, {"mc": []}), ({"mc": {"acc": 0.5}}, {}), ({"mc": {"acc": True}}, {"mc": _docs(4, 2)}),
    ({"mc": {"acc": "0.5"}}, {"mc": _docs(4, 2)}), ({"mc": 0.5}, {"mc": _docs(4, 2)}), ({}, {"mc": _docs(4, 2)}),
    (None, {"mc": _docs(4, 2)})])
def test_a_job_without_multiple_choice_documents_gives_no_row(metrics, samples):
    """No documents, an acc that is not a number, or no acc at all: no cost to compute."""
    assert costs.answer_costs(_run(_ev(eval_s=10.0, metrics=metrics, samples=samples))) == []


def test_a_failed_job_is_not_charged():
    assert costs.answer_costs(_run(_ev(status="failed", eval_s=10.0, metrics={"mc": {"acc": 1.0}},
                                       samples={"mc": _docs(4, 4)}))) == []


# ---------------------------------------------------------------- correct answers

def test_correct_answers_are_the_documents_scored_correct():
    """The documents' own acc values, summed (0.75 + 1 + 0 = 1.75), not the metric times documents."""
    docs = [{"acc": 0.75}, {"acc": 1}, {"acc": 0.0}]
    c = _one(_run(_ev(eval_s=7.0, metrics={"mc": {"acc": 0.9}}, samples={"mc": docs})))
    assert c.correct == 1.75 and c.seconds_per_correct == 4.0


@pytest.mark.parametrize("bad", [{"doc_id": 2}, {"acc": None}, {"acc": True}, "x"])
def test_when_a_document_lacks_its_score_the_metric_times_documents_is_used(bad):
    """One document without a numeric acc: acc 0.5 x 4 documents = 2 correct, the job's own figure."""
    docs = [{"acc": 1.0}, {"acc": 1.0}, {"acc": 1.0}, bad]
    assert _one(_run(_ev(eval_s=8.0, metrics={"mc": {"acc": 0.5}}, samples={"mc": docs}))).correct == 2.0


def test_no_correct_answer_has_no_time_or_cost_per_correct_answer():
    """Zero right: "no correct answer" and "-", not a division by zero; accuracy of no documents is NaN."""
    c = _one(_run(_ev(eval_s=8.0, metrics={"mc": {"acc": 0.0}}, samples={"mc": _docs(4, 0)})))
    assert c.seconds_per_correct is None and c.usd_per_correct is None and c.accuracy == 0.0
    row = costs.cost_per_answer_table(_run(), [c]).rows[0]
    assert row[6] == "no correct answer" and row[9:] == ["-", "-"]
    assert math.isnan(costs.AnswerCost("v", "t", 0, 0.0, 1.0, "cpu", "cpu", 0.1).accuracy)
    tiny = costs.AnswerCost("v", "t", 10, 1e-9, 1.0, "cpu", "cpu", 0.1)
    assert tiny.seconds_per_correct == pytest.approx(1e9) and tiny.usd_per_correct == pytest.approx(1e9 * 0.1 / 3600)


# ---------------------------------------------------------------- device and price

def test_each_row_is_priced_on_the_device_of_its_first_job():
    """The H100 at its default $3/h: 6 s per correct answer is $0.005; a CPU job at $0.10/h; an
    unknown accelerator has no price and says so."""
    run = _run(_ev(eval_s=60.0, metrics={"mc": {"acc": 0.5}}, samples={"mc": _docs(20, 10)}),
               _ev(variant="dense", eval_s=36.0, env={"device": "cpu", "device_name": "AMD EPYC"},
                   metrics={"mc": {"acc": 1.0}}, samples={"mc": _docs(10, 10)}))
    got = {c.variant: c for c in costs.answer_costs(run)}
    assert (got["moe"].device, got["moe"].key, got["moe"].usd_per_hour) == (H100, "h100", 3.0)
    assert got["moe"].usd_per_correct == pytest.approx(6.0 * 3.0 / 3600)
    assert (got["dense"].key, got["dense"].usd_per_hour) == ("cpu", 0.1)
    assert got["dense"].usd_per_correct == pytest.approx(3.6 * 0.1 / 3600)
    odd = _one(_run(_ev(env={"device": "cuda", "device_name": "Mystery X1"}, eval_s=5.0, metrics={"mc": {"acc": 1.0}},
                        samples={"mc": _docs(5, 5)})))
    assert (odd.device, odd.key, odd.usd_per_hour, odd.usd_per_correct) == ("Mystery X1", None, None, None)
    row = costs.cost_per_answer_table(_run(), [odd]).rows[0]
    assert row[7:] == ["Mystery X1", "no price", "-", "-"]


@pytest.mark.parametrize("env, device", [({"device": "cpu"}, "cpu"), (None, "?"), ("cuda", "?"), ({}, "?")])
def test_a_row_names_its_device_or_a_question_mark(env, device):
    c = _one(_run(_ev(env=env, eval_s=5.0, metrics={"mc": {"acc": 1.0}}, samples={"mc": _docs(5, 5)})))
    assert c.device == device


def test_the_suites_price_then_the_command_lines():
    rec = _ev(eval_s=60.0, metrics={"mc": {"acc": 0.5}}, samples={"mc": _docs(20, 10)})
    assert _one(_run(rec, suite_prices={"h100": 2.0})).usd_per_hour == 2.0
    assert _one(_run(rec, suite_prices={"h100": 2.0}, prices={"h100": 2.5})).usd_per_hour == 2.5
    assert _one(_run(rec, suite_prices={"a100": 2.0})).usd_per_hour == 3.0


def test_the_cost_table_rows_and_notes():
    """Counts with separators, fractional correct answers under the number rule, the price key beside
    the device, the cost per correct answer and per 1,000; the note only under rows."""
    c = costs.AnswerCost("moe", "mc", 2000, 1234.0, 617.0, H100, "h100", 3.0)
    half = costs.AnswerCost("moe", "mc2", 4, 2.5, 5.0, "cpu", None, None)
    table = costs.cost_per_answer_table(_run(), [c, half])
    assert table.rows[0] == ["moe", "mc", "0.6170", "2,000", "1,234", "617.0", "0.5000", f"{H100} (h100)", "3.000",
                             "$0.0004167", "$0.4167"]
    assert table.rows[1][4] == "2.500" and table.rows[1][7] == "cpu"
    assert len(table.notes) == 1 and table.notes[0].startswith("Time: the evaluation job's seconds")
    empty = costs.cost_per_answer_table(_run(), [])
    assert empty.rows == [] and empty.notes == []
    assert costs.cost_per_answer_table(_run(_ev(eval_s=5.0, metrics={"mc": {"acc": 1.0}},
                                                samples={"mc": _docs(5, 5)}))).rows[0][:2] == ["moe", "mc"]


def test_the_prices_table_says_where_each_price_came_from():
    """Only the devices this report priced, sorted, each with its source; no note without a row."""
    run = _run(_ev(eval_s=60.0, metrics={"mc": {"acc": 0.5}}, samples={"mc": _docs(20, 10)}),
               _ev(variant="dense", eval_s=3.0, env={"device": "cpu"}, metrics={"mc": {"acc": 1.0}},
                   samples={"mc": _docs(3, 3)}),
               {"key": "p", "kind": "probe", "variant": "moe", "status": "ok", "env": GPU,
                "probe": {"name": "throughput", "device": {"name": A100}, "rows": []}},
               suite_prices={"cpu": 0.2, "l4": 0.5}, prices={"h100": 2.5})
    table = costs.prices_table(run)
    assert table.rows == [["a100", "1.800", "default (moe_schema/devices.py)"], ["cpu", "0.2000", "suite (prices:)"],
                          ["h100", "2.500", "command line (--price)"]]
    assert len(table.notes) == 1
    none = costs.prices_table(_run())
    assert none.rows == [] and none.notes == []


# ---------------------------------------------------------------- probes: the device a throughput was measured on

def test_a_probes_price_is_its_own_devices_else_its_variants():
    """A probe that names its device is priced on it; one that does not, on its variant's probe record's
    device; neither known: no price."""
    probe_rec = {"key": "p", "kind": "probe", "variant": "moe", "status": "ok", "env": {"device": "cuda", "device_name": A100}}
    run = _run(probe_rec)
    assert costs.probe_price(run, "moe", {"device": {"name": H100}}) == ("h100", 3.0)
    assert costs.probe_price(run, "moe", {"device": H100}) == ("h100", 3.0)
    assert costs.probe_price(run, "moe", {}) == ("a100", 1.8)
    assert costs.probe_price(run, "moe", {"device": {"name": None}}) == ("a100", 1.8)
    assert costs.probe_price(_run(), "moe", {}) == (None, None)
    cpu = _run({**probe_rec, "env": {"device": "cpu"}})
    assert costs.probe_price(cpu, "moe", {}) == ("cpu", 0.1)


def test_a_variants_device_is_its_first_result_that_names_one():
    recs = [{"key": "a", "kind": "probe", "variant": "moe", "status": "ok", "env": {}},
            {"key": "b", "kind": "probe", "variant": "moe", "status": "failed", "env": {"device_name": "X"}},
            {"key": "c", "kind": "probe", "variant": "moe", "status": "ok", "env": {"device_name": A100, "device": "cuda"}},
            {"key": "d", "kind": "probe", "variant": "moe", "status": "ok", "env": {"device_name": H100}}]
    assert costs.variant_device(_run(*recs), "moe", "probe") == (A100, "cuda")
    assert costs.variant_device(_run(*recs), "moe", "evaluate") == (None, None)
    assert costs.variant_device(_run({**recs[0], "env": {"device": "cpu"}}), "moe") == (None, "cpu")


@pytest.mark.parametrize("tps, price, want", [(500.0, 3.0, 3.0 / 3600 / 500 * 1e6), (1, 3.6, 1000.0), (0, 3.0, None),
                                              (-5.0, 3.0, None), (None, 3.0, None), (True, 3.0, None),
                                              ("500", 3.0, None), (500.0, None, None)])
def test_usd_per_million_tokens(tps, price, want):
    """A throughput of 500 tokens/s at $3/h is $1.667 per 1M tokens; no throughput, none or a zero one,
    or no price: no figure."""
    got = costs.usd_per_million(tps, price)
    assert got == (pytest.approx(want) if want is not None else None)


def test_a_variants_device_is_read_from_its_own_results_not_another_variants():
    """The dense variant's result comes first and names another device: the MoE keeps its own; a probe
    is priced on the variant's probe result, not on its evaluation's device."""
    recs = [{"key": "a", "kind": "probe", "variant": "dense", "status": "ok", "env": {"device_name": H100}},
            {"key": "b", "kind": "evaluate", "variant": "moe", "status": "ok", "env": {"device_name": H100}},
            {"key": "c", "kind": "probe", "variant": "moe", "status": "ok", "env": {"device_name": A100, "device": "cuda"}}]
    run = _run(*recs)
    assert costs.variant_device(run, "moe", "probe") == (A100, "cuda")
    assert costs.variant_device(run, "moe") == (H100, None)
    assert costs.probe_price(run, "moe", {}) == ("a100", 1.8)


def test_the_prices_table_has_its_columns_and_no_empty_message():
    table = costs.prices_table(_run())
    assert table.title == "Device prices used" and table.columns == ["device", "price (USD/hour)", "from"]
    assert table.empty == ""


def test_the_cost_table_states_its_title_columns_units_and_method():
    run = _run(_ev(eval_s=60.0, metrics={"mc": {"acc": 0.5}}, samples={"mc": _docs(20, 10)}))
    table = costs.cost_per_answer_table(run)
    assert table.title == "Cost per correct answer"
    assert table.columns == ["variant", "task", "accuracy (fraction correct)", "documents (count)",
                             "correct answers (count)", "evaluation time (s)", "time per correct answer (s)", "device",
                             "price (USD/hour)", "cost per correct answer (USD)", "cost per 1,000 correct answers (USD)"]
    assert table.empty == "No multiple-choice task (an acc metric) with a measured evaluation time in this run."
    assert table.notes == ["Time: the evaluation job's seconds (shared among its tasks by document count); cost: that "
                           "time at the device's price per hour. Correct answers: documents scored correct (acc). "
                           "Compare variants on one device; TokenArena (arXiv 2605.00300) found dollars per correct "
                           "answer varying 6.2x for one model across endpoints."]
    assert table.rows[0][4] == "10"  # a whole count of correct answers, not 10.00
    half = costs.cost_per_answer_table(_run(_ev(eval_s=6.0, metrics={"mc": {"acc": 0.5}},
                                                samples={"mc": [{"doc_id": 0}, {"doc_id": 1}, {"doc_id": 2}]})))
    assert half.rows[0][4] == "1.500"  # from the metric: 0.5 × 3 documents
    priced = _run(_ev(eval_s=6.0, metrics={"mc": {"acc": 0.5}}, samples={"mc": _docs(4, 2)}), prices={"h100": 2.5})
    assert costs.prices_table(priced).notes == [
        "Override with the suite's `prices: {h100: 2.5}` or `--price h100=2.5` (repeatable)."]


def test_only_evaluations_are_charged_and_a_result_without_time_or_answers_does_not_stop_the_next():
    probe = {"key": "p", "kind": "probe", "variant": "moe", "status": "ok", "env": GPU, "eval_s": 1000.0,
             "metrics": {"mc": {"acc": 1.0}}, "samples": {"mc": _docs(10, 10)}}
    untimed = _ev(key="e0", metrics={"mc": {"acc": 1.0}}, samples={"mc": _docs(10, 10)})
    no_mc = _ev(key="e1", eval_s=50.0, metrics={"ppl": {"word_perplexity": 3.0}}, samples={"ppl": _docs(5, 0)})
    timed = _ev(key="e2", eval_s=20.0, metrics={"mc": {"acc": 0.5}}, samples={"mc": _docs(10, 5)})
    c = _one(_run(probe, untimed, no_mc, timed))
    assert (c.docs, c.correct, c.seconds) == (10, 5.0, 20.0)


def test_each_probes_device_is_priced_from_its_own_variant():
    recs = [{"key": "a", "kind": "probe", "variant": "moe", "status": "ok", "env": {"device_name": H100},
             "probe": {"name": "throughput", "rows": []}},
            {"key": "b", "kind": "probe", "variant": "dense", "status": "ok", "env": {"device_name": A100},
             "probe": {"name": "throughput", "rows": []}}]
    assert costs.probe_price_keys(_run(*recs)) == {"h100", "a100"}
