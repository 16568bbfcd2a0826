"""The report's engine-parity section on constructed runs: one build evaluated on transformers and on
vLLM, its per-document loglikelihoods apart by 1e-6 (within float32's tolerance) or by 2e-3 (beyond it,
flagged on the answer card, the report's first screen); every changed answer flagged in every dtype (a
request beyond tolerance in a late document, a NaN, a multiple-choice answer flip, one differing
generation, a metric shifted beyond claim 2's margin), a long rolling document given room by rtol, the
tolerance's boundary to the last float; routing telemetry compared; the probe tables carry an engine
column. No vLLM needed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.report.html import render_html
from harness.report.markdown import render_markdown
from harness.report.parity import MARGIN, TOLERANCE, _routing_cell, parity_lines, parity_rows, parity_table
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


def task_value(samples, metric):
    """The task's metric as lm-eval aggregates it from these samples: a perplexity from its
    [loglikelihood, words] pairs, else the mean."""
    values = [s[metric] for s in samples if metric in s]
    if not values:
        return 0.5  # no per-document values: any task value
    if metric.endswith("perplexity"):
        return math.exp(-sum(v[0] for v in values) / sum(v[1] for v in values))
    return sum(values) / len(values)


def evaluate(variant, task, samples, metric, routing=None, engine=("transformers", "5.19")):
    return {"key": f"{variant}-{task}", "kind": "evaluate", "variant": variant, "model": "moe", "task": task,
            "status": "ok", "error": None, "attempts": 1, "worker": "w", "spec": {"kind": "evaluate"},
            "params": {"total": 100, "active": 50}, "metrics": {task: {metric: task_value(samples, metric)}},
            "timings": {},
            "samples": {task: samples}, "routing": routing, "engine": {"name": engine[0], "version": engine[1]}}


def edit(path, task, change, variant="moe[vllm]"):
    """Rewrite one variant's samples of ``task`` in a written run (``change(samples)`` edits them in
    place), its metric recomputed from them as lm-eval would."""
    recs = [json.loads(x) for x in (path / "results.jsonl").read_text().splitlines()]
    for r in recs:
        if r["variant"] == variant and r.get("task") == task:
            change(r["samples"][task])
            metric = next(iter(r["metrics"][task]))
            r["metrics"][task][metric] = task_value(r["samples"][task], metric)
    (path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    return path


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
                "responses": [f"answer {d}" + ("!" if engine[0] == "vllm" and d in differ_at else "")]}
               for d in docs]
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
    assert not mc.flagged and mc.routing == (2, 2) and (mc.flips, mc.choice_docs) == (0, 20)
    assert (rows["gen"].identical, rows["gen"].generations) == (20, 20) and not rows["gen"].flagged
    md, _ = report(run)
    answer, first = md.split("\n## ", 3)[1:3]
    assert answer.startswith("The answer") and first.startswith("Engine parity")  # right after the answer
    assert "Engines agree on 3 build × task comparison(s): largest loglikelihood |Δ| 1.00e-06, at most 0.1% of " \
           "what a request may differ by (tolerance float32 0.001 + 0.0001·|ll| nats); the same answer chosen on " \
           "20 of 20 multiple-choice documents; generations identical on 20 of 20 documents; no metric differs " \
           "beyond 1% of the reference's value." in first
    assert "lm-evaluation-harness tests/models/test_onnxruntime_parity.py" in first  # where float32's numbers come from
    assert "BEYOND TOLERANCE" not in md and "ENGINES DISAGREE" not in md


def test_a_2e_3_difference_is_flagged_at_the_top(tmp_path):
    run = Run.load(write_run(tmp_path / "run", 2e-3, differ_at=(3, 7)))
    rows = {p.task: p for p in parity_rows(run)}
    assert rows["mc"].flagged and rows["mc"].beyond == 20
    assert not rows["ppl"].flagged  # 2e-3 on a -500 nat document is within 1e-3 + 1e-4 × 500
    assert rows["gen"].generation_flag and rows["gen"].identical == 18
    md, html = report(run)
    answer, first = md.split("\n## ", 3)[1:3]
    assert answer.startswith("The answer") and first.startswith("Engine parity")
    # said on the first screen too: under the answer card
    card = answer.split("### ")[0]
    assert "ENGINES DISAGREE: moe[vllm] against moe, mc: loglikelihood max |Δ| 0.00200" in card
    assert "ENGINES DISAGREE: moe[vllm] against moe, gen: greedy generations differ on 2 of 20" in card
    assert html.index("ENGINES DISAGREE") < html.index('data-section="engine-parity"')
    assert "- ENGINES DISAGREE: moe[vllm] against moe, mc: loglikelihood max |Δ| 0.00200 is beyond the float32 " \
           "tolerance of 0.001 + 0.0001·|ll| nats (20 of 20 documents)." in first
    assert "- ENGINES DISAGREE: moe[vllm] against moe, gen: greedy generations differ on 2 of 20 documents " \
           "(they must be identical, in every dtype)." in first
    row = next(line for line in first.splitlines() if line.startswith("| moe[vllm] | moe |") and "| mc |" in line)
    assert "vllm 0.32.0 vs transformers 5.19" in row and row.rstrip(" |").endswith("BEYOND TOLERANCE")
    assert html.index('data-section="verdicts"') < html.index('data-section="engine-parity"')


def test_one_request_of_a_late_document_beyond_tolerance_is_flagged(tmp_path):
    """Every other request agrees to 1e-6; the third choice of the last of 20 documents is 5e-3 off."""
    def late(samples):
        samples[19]["loglikelihoods"][2] += 5e-3
    mc = next(p for p in parity_rows(Run.load(edit(write_run(tmp_path / "run", 1e-6), "mc", late)))
              if p.task == "mc")
    assert mc.flagged and mc.beyond == 1 and mc.max_abs == pytest.approx(5e-3, rel=1e-3)
    assert mc.reasons == ["BEYOND TOLERANCE"]


@pytest.mark.parametrize("variant, value", [("moe[vllm]", float("nan")), ("moe", float("-inf"))])
def test_a_nan_or_infinite_loglikelihood_in_a_late_document_is_flagged_and_printed(tmp_path, variant, value):
    """A NaN (other engine) or -inf (reference) in the last request of the last document: a disagreement,
    and max |Δ| prints it (Python's max would skip a NaN that does not come first; -inf against a finite
    value leaves |Δ| = inf, which an rtol × inf tolerance would pass)."""
    def bad(samples):
        samples[19]["loglikelihoods"][3] = value
    run = Run.load(edit(write_run(tmp_path / "run", 1e-6), "mc", bad, variant=variant))
    rows = [p for p in parity_rows(run) if p.task == "mc"]
    mc = rows[0]
    assert mc.nonfinite == 1 and mc.flagged and "NaN/INFINITE" in mc.reasons
    shown = "nan" if math.isnan(value) else "inf"
    assert (math.isnan(mc.max_abs) if shown == "nan" else mc.max_abs == math.inf)
    lines = parity_lines(run, rows)
    assert f"ENGINES DISAGREE: moe[vllm] against moe, mc: a NaN or infinite loglikelihood on 1 of 20 documents " \
           f"(on either engine; max |Δ| {shown})." in lines
    assert parity_table(run, rows).rows[0][9] == shown


@pytest.mark.parametrize("choice, flipped", [(1, True), (0, False)])
def test_a_bfloat16_answer_flip_within_the_tolerance_is_flagged(tmp_path, choice, flipped):
    """bfloat16 allows 0.5 nats a request; raising one choice of the last document by 0.02 nats on the
    other engine changes its chosen answer (choice 1 passes choice 0) or keeps it (choice 0 itself)."""
    def nudge(samples):
        samples[19]["loglikelihoods"][choice] += 0.02
    run = Run.load(edit(write_run(tmp_path / "run", 0.0, dtype="bfloat16"), "mc", nudge))
    mc = next(p for p in parity_rows(run) if p.task == "mc")
    assert mc.beyond == 0 and mc.max_abs == pytest.approx(0.02)
    assert (mc.flips, mc.choice_docs, mc.flagged) == (1 if flipped else 0, 20, flipped)
    line = "ENGINES DISAGREE: moe[vllm] against moe, mc: the chosen answer (argmax over the choices' " \
           "loglikelihoods) differs on 1 of 20 documents."
    assert (line in parity_lines(run, [mc])) == flipped


def test_one_differing_generation_is_flagged_and_counted_in_every_dtype(tmp_path):
    run = Run.load(write_run(tmp_path / "run", 0.0, differ_at=(17,), dtype="bfloat16"))
    rows = [p for p in parity_rows(run) if p.task == "gen"]
    assert rows[0].flagged and (rows[0].generations - rows[0].identical) == 1
    assert parity_lines(run, rows) == ["ENGINES DISAGREE: moe[vllm] against moe, gen: greedy generations differ on "
                                       "1 of 20 documents (they must be identical, in every dtype)."]


def test_a_long_rolling_document_with_per_token_noise_under_rtol_passes(tmp_path):
    """Five 2,000-token documents at about -3 nats a token, the other engine off by up to 2e-6 nats a
    token: 2e-3 nats a document, beyond float32's atol of 1e-3 but well within 1e-3 + 1e-4 × 6,000."""
    rng = np.random.default_rng(0)
    noise = [float(np.sum(rng.uniform(0, 2e-6, 2000))) for _ in range(5)]

    def long(samples, shift):
        samples[:] = [{"doc_id": d, "word_perplexity": [-6000.0 - d + shift[d], 1500],
                       "loglikelihoods": [-6000.0 - d + shift[d]]} for d in range(5)]
    path = write_run(tmp_path / "run", 0.0)
    edit(path, "ppl", lambda s: long(s, [0.0] * 5), variant="moe")
    edit(path, "ppl", lambda s: long(s, noise))
    ppl = next(p for p in parity_rows(Run.load(path)) if p.task == "ppl")
    assert min(noise) > TOLERANCE["float32"][0]  # a fixed atol alone would flag every document
    assert ppl.max_abs == pytest.approx(max(noise)) and ppl.beyond == 0 and not ppl.flagged


@pytest.mark.parametrize("ll", [0.0, -1000.0])
@pytest.mark.parametrize("above", [False, True])
def test_a_difference_at_atol_plus_rtol_ll_passes_and_the_next_float_up_is_flagged(tmp_path, ll, above):
    """The reference's loglikelihood ``ll``; the other engine's the float whose difference from it is
    the largest at or under 1e-3 + 1e-4 × |ll| (exactly the bound at ll = 0), or the next float up."""
    atol, rtol = TOLERANCE["float32"]
    bound = atol + rtol * abs(ll)
    other = ll + bound
    while other - ll > bound:
        other = np.nextafter(other, -np.inf)
    while np.nextafter(other, np.inf) - ll <= bound:
        other = np.nextafter(other, np.inf)
    if ll == 0.0:
        assert other - ll == bound
    if above:
        other = np.nextafter(other, np.inf)

    def one(samples, value):
        samples[:] = [{"doc_id": 0, "word_perplexity": [value, 100], "loglikelihoods": [value]}]
    path = write_run(tmp_path / "run", 0.0)
    edit(path, "ppl", lambda s: one(s, ll), variant="moe")
    edit(path, "ppl", lambda s: one(s, float(other)))
    ppl = next(p for p in parity_rows(Run.load(path)) if p.task == "ppl")
    assert (ppl.beyond, ppl.flagged) == ((1, True) if above else (0, False))


@pytest.mark.parametrize("shift, flagged", [(2.0, True), (0.5, False)])
def test_a_metric_shifted_beyond_claim_2s_margin_is_flagged_with_every_request_within_tolerance(
        tmp_path, shift, flagged):
    """bfloat16: every perplexity document (about -500 nats over 100 words) ``shift`` nats lower on the
    other engine, within its 0.5 + 0.01 × 500 nats: word perplexity rises by about ``shift`` %, beyond
    claim 2's 1% margin at 2 nats and within it at 0.5."""
    def lower(samples):
        for s in samples:
            s["loglikelihoods"][0] -= shift
            s["word_perplexity"][0] -= shift
    run = Run.load(edit(write_run(tmp_path / "run", 0.0, dtype="bfloat16"), "ppl", lower))
    ppl = next(p for p in parity_rows(run) if p.task == "ppl")
    assert ppl.beyond == 0 and ppl.reasons == (["METRIC BEYOND MARGIN"] if flagged else [])
    [(metric, diff, bound)] = ppl.metric_diffs
    ref = run.metrics("moe")["ppl"]["word_perplexity"]
    assert metric == "word_perplexity" and bound == pytest.approx(MARGIN * ref) and MARGIN == 0.01
    assert diff.mean == pytest.approx(ref * (math.exp(shift / 100) - 1), rel=1e-9)
    lines = parity_lines(run, [ppl])
    assert any(x.startswith("ENGINES DISAGREE: moe[vllm] against moe, ppl: word_perplexity differs by +")
               and "(95% CI over 20 documents), wholly beyond ±" in x for x in lines) == flagged


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


def test_probe_tables_carry_the_engine_and_a_run_on_the_default_engine_alone_is_unchanged(tmp_path):
    """The engine column shows whenever a variant runs on another engine than the default, alone too."""
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
    path = tmp_path / "vllm-only"
    path.mkdir()
    (path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in recs if r["variant"] == "moe[vllm]") + "\n")
    (path / "plan.json").write_text(json.dumps({"suite": "one", "variants": [spec("moe[vllm]", VLLM)]}))
    alone = latency_table(Run.load(path))
    assert alone.columns[1] == "engine" and [r[:2] for r in alone.rows] == [["moe[vllm]", "vllm"]]


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
