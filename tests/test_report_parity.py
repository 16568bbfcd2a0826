"""The report's engine-parity section on constructed runs: one build evaluated on transformers and on
vLLM, its per-document loglikelihoods apart by 1e-6 (within float32's tolerance) or by 1e-3 (beyond it,
flagged on the answer card, the report's first screen); generations and routing telemetry compared; the probe tables
carry an engine column. No vLLM needed."""

from __future__ import annotations

import json

import pytest

from harness.report.html import render_html
from harness.report.markdown import render_markdown
from harness.report.parity import TOLERANCE, _routing_cell, parity_rows
from harness.report.run import Run
from harness.report.sections import build_sections


def report(run: Run) -> tuple[str, str]:
    """report.md and report.html as write_report makes them, without figures (seconds saved)."""
    sections = build_sections(run, with_figures=False)
    return render_markdown(run.name, sections), render_html(run.name, sections)

VLLM = {"name": "vllm", "params": {"tensor_parallel_size": 1, "kv_cache_bytes": None, "max_model_len": None}}
BUILD = {"config": {"model_type": "qwen3_moe", "hidden_size": 64}, "seed": 0}


def spec(name, engine=None, dtype="float32", routing=None):
    out = {"name": name, "model": "moe", "build": BUILD, "routing": routing, "dtype": dtype,
           "trust_remote_code": False, "experts_implementation": None, "sweep": {}}
    if engine:
        out["engine"] = engine
    return out


def evaluate(variant, task, samples, metric, routing=None, engine=("transformers", "5.19")):
    return {"key": f"{variant}-{task}", "kind": "evaluate", "variant": variant, "model": "moe", "task": task,
            "status": "ok", "error": None, "attempts": 1, "worker": "w", "spec": {"kind": "evaluate"},
            "params": {"total": 100, "active": 50}, "metrics": {task: {metric: 0.5}}, "timings": {},
            "samples": {task: samples}, "routing": routing, "engine": {"name": engine[0], "version": engine[1]}}


def telemetry(counts):
    return {"layers": [{"tokens_per_expert": c} for c in counts], "summary": {"tokens": sum(counts[0])}}


def write_run(path, delta, differ_at=(), dtype="float32", probe_rows=None):
    """A run of one build on two engines: MC (4 choices), perplexity and generation tasks of 20
    documents; the vLLM loglikelihoods are the transformers' plus ``delta``; the generations of
    ``differ_at`` documents differ."""
    docs = range(20)
    ll = {d: [-1.0 - 0.1 * d - 0.01 * c for c in range(4)] for d in docs}
    records = []
    for variant, engine, shift in (("moe", ("transformers", "5.19"), 0.0), ("moe[vllm]", ("vllm", "0.32.0"), delta)):
        mc = [{"doc_id": d, "acc": 1.0, "loglikelihoods": [x + shift for x in ll[d]]} for d in docs]
        ppl = [{"doc_id": d, "word_perplexity": [-500.0 - d + shift, 100], "loglikelihoods": [-500.0 - d + shift]}
               for d in docs]
        gen = [{"doc_id": d, "exact_match": 0.0,
                "responses": [f"answer {d}" + ("!" if shift and d in differ_at else "")]} for d in docs]
        routing = telemetry([[30, 10, 0, 0], [20, 20, 0, 0]])
        records += [evaluate(variant, "mc", mc, "acc", routing, engine),
                    evaluate(variant, "ppl", ppl, "word_perplexity", routing, engine),
                    evaluate(variant, "gen", gen, "exact_match", routing, engine)]
        for name in ("latency", "throughput"):
            row = {"phase": "decode", "batch_size": 1, "context": 64, "ms_p50": 2.0, "tokens_per_s": 500.0}
            if engine[0] == "vllm":
                row.update(ttft_s=0.004, tpot_s=0.002)
            records.append({"key": f"{variant}-{name}", "kind": "probe", "variant": variant, "model": "moe",
                            "status": "ok", "error": None, "attempts": 1, "worker": "w", "spec": {"kind": "probe"},
                            "params": None, "metrics": {}, "timings": {}, "engine": {"name": engine[0], "version": engine[1]},
                            "probe": {"name": name, "rows": [row]}})
    path.mkdir()
    (path / "plan.json").write_text(json.dumps({"suite": "parity", "variants": [
        spec("moe", dtype=dtype), spec("moe[vllm]", VLLM, dtype=dtype)]}))
    (path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def test_a_1e_6_difference_is_within_float32_tolerance(tmp_path):
    run = Run.load(write_run(tmp_path / "run", 1e-6))
    rows = {p.task: p for p in parity_rows(run)}
    assert set(rows) == {"mc", "ppl", "gen"}
    mc = rows["mc"]
    assert (mc.ref, mc.other, mc.docs, mc.requests) == ("moe", "moe[vllm]", 20, 80)
    assert mc.max_abs == pytest.approx(1e-6, rel=1e-3) and mc.diff.mean == pytest.approx(1e-6, rel=1e-3)
    assert mc.diff.lo <= mc.diff.mean <= mc.diff.hi
    assert not mc.flagged and mc.routing == (2, 2)
    assert (rows["gen"].identical, rows["gen"].generations) == (20, 20) and not rows["gen"].flagged
    md, _ = report(run)
    answer, first = md.split("\n## ", 3)[1:3]
    assert answer.startswith("The answer") and first.startswith("Engine parity")  # right after the answer
    assert "Engines agree within tolerance on 3 build × task comparison(s): largest loglikelihood |Δ| 1.00e-06, at " \
           "most 1% of what a request may differ by (tolerance float32 0.0001 nats); generations " \
           "identical on 20 of 20 documents." in first
    assert "BEYOND TOLERANCE" not in md and "ENGINES DISAGREE" not in md


def test_a_1e_3_difference_is_flagged_at_the_top(tmp_path):
    run = Run.load(write_run(tmp_path / "run", 1e-3, differ_at=(3, 7)))
    rows = {p.task: p for p in parity_rows(run)}
    assert rows["mc"].flagged and rows["ppl"].flagged and rows["mc"].beyond == 20
    assert rows["gen"].generation_flag and rows["gen"].identical == 18
    md, html = report(run)
    answer, first = md.split("\n## ", 3)[1:3]
    assert answer.startswith("The answer") and first.startswith("Engine parity")
    # said on the first screen too: under the answer card
    card = answer.split("### ")[0]
    assert "ENGINES DISAGREE: moe[vllm] against moe, mc: loglikelihood max |Δ| 0.00100" in card
    assert "ENGINES DISAGREE: moe[vllm] against moe, gen: greedy generations differ on 2 of 20" in card
    assert html.index("ENGINES DISAGREE") < html.index('data-section="engine-parity"')
    assert "- ENGINES DISAGREE: moe[vllm] against moe, mc: loglikelihood max |Δ| 0.00100 is beyond the float32 " \
           "tolerance of 0.0001 nats (20 of 20 documents)." in first
    assert "- ENGINES DISAGREE: moe[vllm] against moe, gen: greedy generations differ on 2 of 20 documents " \
           "(float32: they must be identical)." in first
    row = next(line for line in first.splitlines() if line.startswith("| moe[vllm] | moe |") and "| mc |" in line)
    assert "vllm 0.32.0 vs transformers 5.19" in row and row.rstrip(" |").endswith("BEYOND TOLERANCE")
    assert html.index('data-section="verdicts"') < html.index('data-section="engine-parity"')


def test_bfloat16_has_a_looser_tolerance_and_sampled_text_is_not_flagged(tmp_path):
    run = Run.load(write_run(tmp_path / "run", 0.3, differ_at=(1,), dtype="bfloat16"))
    rows = {p.task: p for p in parity_rows(run)}
    assert (rows["mc"].atol, rows["mc"].rtol) == TOLERANCE["bfloat16"] == (0.5, 0.0625)
    assert not any(p.flagged for p in rows.values())


def test_routing_telemetry_that_differs_is_counted_per_layer(tmp_path):
    path = write_run(tmp_path / "run", 1e-6)
    lines = (path / "results.jsonl").read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    for r in recs:
        if r["variant"] == "moe[vllm]" and r.get("task") == "mc":
            r["routing"] = telemetry([[30, 10, 0, 0], [21, 19, 0, 0]])
    (path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    mc = next(p for p in parity_rows(Run.load(path)) if p.task == "mc")
    assert mc.routing == (1, 2)
    assert _routing_cell(mc) == "1 / 2"  # the same tokens counted, routed differently: no totals shown


def test_unequal_totals_are_shown_and_a_vllm_preemption_named(tmp_path):
    """Both engines count the same tokens (workers.evaluation.lm), so different totals are shown; a
    request vLLM preempted is computed again and counted again, and the cell says so."""
    path = write_run(tmp_path / "run", 1e-6)
    recs = [json.loads(x) for x in (path / "results.jsonl").read_text().splitlines()]
    for r in recs:
        if r["variant"] == "moe[vllm]" and r.get("task") in ("mc", "gen"):
            r["routing"] = telemetry([[34, 10, 0, 0], [24, 20, 0, 0]])
            if r["task"] == "gen":
                r["eval"] = {"preemptions": 2}
    (path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    rows = {p.task: p for p in parity_rows(Run.load(path))}
    assert _routing_cell(rows["mc"]) == "0 / 2 (44 vs 40 tokens counted)"
    assert _routing_cell(rows["gen"]) == ("0 / 2 (44 vs 40 tokens counted; vLLM preempted and recomputed 2 "
                                          "request(s), counted again)")
    assert _routing_cell(rows["ppl"]) == "2 / 2"


def test_in_float32_a_long_document_gets_no_more_room_than_a_short_request(tmp_path):
    """float32's tolerance is 1e-4 nats whatever the request's length (both engines sum per-token
    log-probs in float64): 1.5e-4 on a -500 nat document is flagged as on a -1 nat request."""
    run = Run.load(write_run(tmp_path / "run", 1.5e-4))
    rows = {p.task: p for p in parity_rows(run)}
    assert rows["ppl"].flagged and rows["mc"].flagged
    assert (rows["ppl"].atol, rows["ppl"].rtol) == (1e-4, 0.0) and rows["ppl"].tolerance == "0.0001"


def test_probe_tables_carry_the_engine_and_a_one_engine_run_is_unchanged(tmp_path):
    from harness.report.probes import latency_table, throughput_table

    run = Run.load(write_run(tmp_path / "run", 1e-6))
    table = latency_table(run)
    assert table.columns[:2] == ["variant", "engine"] and table.columns[-2:] == ["TTFT (ms)", "TPOT (ms)"]
    assert {r[0]: (r[1], r[-2], r[-1]) for r in table.rows} == {"moe": ("transformers", "-", "-"),
                                                                 "moe[vllm]": ("vllm", "4.00", "2.00")}
    assert throughput_table(run).columns[1] == "engine"
    path = tmp_path / "one"
    path.mkdir()
    recs = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    (path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in recs if r["variant"] == "moe") + "\n")
    (path / "plan.json").write_text(json.dumps({"suite": "one", "variants": [spec("moe")]}))
    one = Run.load(path)
    assert "engine" not in latency_table(one).columns and parity_rows(one) == []


@pytest.mark.parametrize("vllm_change, same", [(-0.01, "yes"), (-0.02, "NO")])
def test_a_routing_change_is_compared_across_engines(tmp_path, vllm_change, same):
    """top-1 lowers every loglikelihood by 0.01 on transformers and by ``vllm_change`` on vLLM: the
    same change, or one the report says differs."""
    topk = {"name": "topk", "params": {"k": 1}}
    variants = [("moe", None, None, 0.0), ("moe[vllm]", VLLM, None, 0.0),
                ("moe@topk(k=1)", None, topk, -0.01), ("moe@topk(k=1)[vllm]", VLLM, topk, vllm_change)]
    records = [evaluate(name, "mc", [{"doc_id": d, "loglikelihoods": [-1.0 - d + shift, -2.0 + shift]}
                                     for d in range(10)], "acc", engine=("vllm", "0.32") if eng else ("transformers", "5"))
               for name, eng, _, shift in variants]
    path = tmp_path / "run"
    path.mkdir()
    (path / "plan.json").write_text(json.dumps({"suite": "r", "variants": [spec(n, e, routing=r) for n, e, r, _ in variants]}))
    (path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    run = Run.load(path)
    from harness.report.parity import routing_effect_table

    table = routing_effect_table(run, parity_rows(run))
    assert [row[:3] + row[-2:] for row in table.rows] == [["moe@topk(k=1)[vllm]", "moe@topk(k=1)", "mc", "yes", same]]
    assert table.rows[0][3] == "-1.000e-02"
