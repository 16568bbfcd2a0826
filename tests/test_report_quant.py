"""Quantization in the report, on constructed runs (no llama.cpp needed): an MoE and its dense twins on
transformers and on llama.cpp at f32, q8_0 and q4_0. Inexact settings leave engine parity; each build's
quality lost against its own f32 is measured per document; claim 9 (an MoE loses no more to quantization
than its twins) flips at its boundary of −1% of the twin's f32 value; a NaN, a twin without its f32 and
the transformers variants are each handled and said; the section shows only where a build ran at two
settings."""

from __future__ import annotations

import json
import math

import pytest

from harness.report.card import build_card
from harness.report.claims import claims
from harness.report.markdown import render_markdown
from harness.report.parity import groups as parity_groups, parity_rows
from harness.report.quant import QUANT_MARGIN, comparisons, exact, losses, missing_reference_notes, quant_tasks, references
from harness.report.run import Run
from harness.report.sections import build_sections
from harness.report.verdicts import DOES_NOT_HOLD, EQUIVALENCE_MARGIN, HOLDS, INCONCLUSIVE, all_verdicts
from moe_schema.engines import label

DOCS = 16  # a power of two: the mean of equal per-document values is exact
PARAMS = {"moe": {"total": 100, "active": 50, "num_experts": 8}, "dense-active": {"total": 50, "active": 50},
          "dense-total": {"total": 100, "active": 100}}
BITS = {"f32": 32.0, "q8_0": 8.5, "q4_0": 4.5}


def llama(quant="f32", kv_cache="f32"):
    return {"name": "llamacpp", "params": {"quant": quant, "kv_cache": kv_cache, "threads": None, "n_ctx": None}}


def vname(model, engine=None):
    return model + (label(engine) if engine else "")


def spec(model, engine=None):
    out = {"name": vname(model, engine), "model": model, "build": {"checkpoint": f"ckpt/{model}"}, "routing": None,
           "dtype": "float32", "trust_remote_code": False, "experts_implementation": None, "sweep": {},
           "is_moe": model == "moe"}
    if engine:
        out["engine"] = engine
    return out


def write_run(path, values, engines, nan_at=None, probes=True, acc_drop=tuple(PARAMS)):
    """``values[model][setting]``: the per-document ``loss`` (lower is better) of each of DOCS documents
    (a number: the same on all) and ``acc``; ``engines``: the settings each model runs at (``None``:
    transformers). ``nan_at``: (variant, doc) whose loss is NaN; ``acc_drop``: the models whose q4_0 variant
    answers every fourth document wrongly (accuracy 1 elsewhere)."""
    plan, records = [], []
    for model, settings in engines.items():
        for setting in settings:
            engine = llama(*setting.split("+")) if setting else None
            v = vname(model, engine)
            plan.append(spec(model, engine))
            loss = values[model][setting]
            per_doc = loss if isinstance(loss, list) else [loss] * DOCS
            heldout = [{"doc_id": d, "loss": (math.nan if nan_at == (v, d) else x), "loglikelihoods": [-x]}
                       for d, x in enumerate(per_doc)]
            quant = setting.split("+")[0] if setting else None
            acc = [{"doc_id": d, "acc": float(not (quant == "q4_0" and d % 4 == 0 and model in acc_drop))}
                   for d in range(DOCS)]
            build = {"gguf": {"quant": quant, "bytes": int(PARAMS[model]["total"] * BITS[quant] / 8),
                              "bits_per_weight": BITS[quant]}} if quant else {}
            eng = {"name": engine["name"] if engine else "transformers", "version": "1"}
            for task, metric, samples in (("heldout", "loss", heldout), ("mc", "acc", acc)):
                vals = [s[metric] for s in samples]
                records.append({"key": f"{v}-{task}", "kind": "evaluate", "variant": v, "model": model, "task": task,
                                "status": "ok", "error": None, "attempts": 1, "worker": "w",
                                "spec": {"kind": "evaluate"},
                                "params": PARAMS[model], "metrics": {task: {metric: sum(vals) / len(vals)}},
                                "timings": {}, "samples": {task: samples}, "engine": eng, "build": build})
            if probes:
                tps = 100.0 * 32.0 / BITS.get(quant, 32.0)
                rows = [{"phase": "decode", "batch_size": 1, "context": 64, "tokens_per_s": tps},
                        {"phase": "prefill", "batch_size": 1, "prompt_length": 64, "tokens_per_s": 10 * tps}]
                for name, rs in (("throughput", rows), ("memory", [{"batch_size": 1, "context": 64,
                                                                      "peak_bytes": 1000 * BITS.get(quant, 32.0)}])):
                    records.append({"key": f"{v}-{name}", "kind": "probe", "variant": v, "model": model,
                                    "status": "ok", "error": None, "attempts": 1, "worker": "w",
                                    "spec": {"kind": "probe"}, "params": None, "metrics": {}, "timings": {},
                                    "engine": eng, "probe": {"name": name, "rows": rs}})
    path.mkdir()
    (path / "plan.json").write_text(json.dumps({"suite": "quant", "variants": plan}))
    (path / "results.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return Run.load(path)


ALL = ["", "f32", "q8_0", "q4_0"]  # transformers, then llama.cpp at three settings


def flat(loss, moe_q=None, twin_q=None):
    """Every variant's per-document loss ``loss``; at q8_0 and q4_0 the MoE's is ``moe_q`` and the twins' ``twin_q``."""
    out = {}
    for model in PARAMS:
        q = moe_q if model == "moe" else twin_q
        out[model] = {s: (q if s in ("q8_0", "q4_0") and q is not None else loss) for s in ALL + ["f32+f16"]}
    return out


# ---- engine parity ----------------------------------------------------------------------------------
def test_parity_holds_only_the_f32_llamacpp_variant_and_leaves_quantized_and_f16_kv_cache_out(tmp_path):
    run = write_run(tmp_path / "run", flat(1.0, moe_q=3.0, twin_q=3.0),
                    {"moe": ["", "f32", "q8_0", "f32+f16"]})
    assert [exact(run, v) for v in run.variants] == [True, True, False, False]
    assert parity_groups(run) == [("moe", ["moe[llamacpp]"])]
    # a q8_0 loss 2 nats off, beyond any tolerance, is not an engine disagreement: it is quantization loss
    assert {p.other for p in parity_rows(run)} == {"moe[llamacpp]"}
    md = render_markdown(run.name, build_sections(run, with_figures=False))
    assert "ENGINES DISAGREE" not in md
    assert references(run) == {"moe[llamacpp,quant=q8_0]": "moe[llamacpp]",
                               "moe[llamacpp,kv_cache=f16]": "moe[llamacpp]"}


# ---- quality lost -----------------------------------------------------------------------------------
def test_quality_lost_is_positive_when_worse_for_a_loss_and_for_accuracy(tmp_path):
    run = write_run(tmp_path / "run", flat(2.0, moe_q=2.5, twin_q=2.0), {"moe": ALL})
    lost = {(x.variant, x.task): x for xs in losses(run).values() for x in xs}
    heldout = lost[("moe[llamacpp,quant=q8_0]", "heldout")]
    assert heldout.reference == "moe[llamacpp]" and heldout.diff.mean == pytest.approx(0.5)  # loss up: lost
    acc = lost[("moe[llamacpp,quant=q4_0]", "mc")]  # accuracy 1 → 0.75: lost 0.25, with a CI over 16 documents
    assert acc.diff.mean == pytest.approx(0.25) and acc.diff.lo < 0.25 < acc.diff.hi and acc.diff.n == DOCS
    assert lost[("moe[llamacpp,quant=q8_0]", "mc")].diff.mean == 0


# ---- claim 9 --------------------------------------------------------------------------------------
@pytest.mark.parametrize("moe_q, want", [
    (101.0, INCONCLUSIVE),    # the MoE loses 1 more than its twins: exactly −1% of their f32 100, touching
    (100.75, HOLDS),          # 0.75 more: within the margin
    (101.25, DOES_NOT_HOLD),  # 1.25 more: wholly below −1
])
def test_claim9_flips_at_minus_one_percent_of_the_twins_f32_value(tmp_path, moe_q, want):
    run = write_run(tmp_path / "run", flat(100.0, moe_q=moe_q, twin_q=100.0), {m: ALL for m in PARAMS}, probes=False)
    vs = [v for v in all_verdicts(run)["9"] if v.task == "heldout"]
    assert sorted((v.extra["kind"], v.extra["setting"]) for v in vs) == [
        ("active", "quant=q4_0"), ("active", "quant=q8_0"), ("total", "quant=q4_0"), ("total", "quant=q8_0")]
    for v in vs:
        assert v.boundary == -1.0 and v.extra["margin_rel"] == QUANT_MARGIN == EQUIVALENCE_MARGIN
        assert v.evidence.mean == pytest.approx(100.0 - moe_q)  # the twin's loss (0) − the MoE's
        assert v.verdict == want and v.raw_verdict == want
        assert {"moe[llamacpp]", f"dense-{v.extra['kind']}[llamacpp]"} <= set(v.variants)  # the f32 sides read too
        setting = v.extra["setting"].split("=")[1]  # and the quantized sides themselves
        assert {f"moe[llamacpp,quant={setting}]", f"dense-{v.extra['kind']}[llamacpp,quant={setting}]"} <= set(v.variants)
        assert v.extra["margin"] == pytest.approx(1.0)  # 1% of the twin's f32 value, which the card prints
        assert v.subject.startswith(f"moe[llamacpp,quant={setting}] vs dense-{v.extra['kind']}[llamacpp,quant={setting}]")


@pytest.mark.parametrize("drop, advantage, raw", [(("moe",), -0.25, DOES_NOT_HOLD),
                                                  (("dense-active", "dense-total"), 0.25, HOLDS)])
def test_claim9_on_accuracy_counts_a_drop_in_accuracy_as_quality_lost(tmp_path, drop, advantage, raw):
    run = write_run(tmp_path / "run", flat(100.0), {m: ALL for m in PARAMS}, probes=False, acc_drop=drop)
    vs = [v for v in all_verdicts(run)["9"] if v.task == "mc" and v.extra["setting"] == "quant=q4_0"]
    assert len(vs) == 2 and all(v.evidence.mean == pytest.approx(advantage) and v.raw_verdict == raw for v in vs)
    assert all(v.boundary == pytest.approx(-0.01) for v in vs)  # 1% of the twin's f32 accuracy, 1.0


def test_claim9_on_a_perplexity_aggregate_is_the_difference_of_the_two_aggregate_changes(tmp_path):
    """The bootstrap of four sample lists as two 'seeds', doubled: the point is exactly the twin's change in
    perplexity minus the MoE's, each an aggregate over documents, not a mean of per-document ratios."""
    lls = {"moe": {"f32": -10.0, "q8_0": -12.0}, "dense-active": {"f32": -11.0, "q8_0": -11.5}}
    run_dir = tmp_path / "run"
    run = write_run(run_dir, flat(1.0), {"moe": ["f32", "q8_0"], "dense-active": ["f32", "q8_0"]}, probes=False)
    recs = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()]
    for r in recs:
        if r.get("task") == "heldout":
            model, quant = r["model"], r["build"]["gguf"]["quant"]
            r["samples"]["heldout"] = [{"doc_id": d, "word_perplexity": [lls[model][quant] - 0.1 * d, 5]}
                                       for d in range(DOCS)]
            total = sum(s["word_perplexity"][0] for s in r["samples"]["heldout"])
            r["metrics"]["heldout"] = {"word_perplexity": math.exp(-total / (5 * DOCS))}
    (run_dir / "results.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    run = Run.load(run_dir)
    ppl = lambda v: run.metrics(v)["heldout"]["word_perplexity"]  # noqa: E731
    c = next(c for c in comparisons(run) if c.row.task == "heldout")
    moe_change = ppl("moe[llamacpp,quant=q8_0]") - ppl("moe[llamacpp]")
    twin_change = ppl("dense-active[llamacpp,quant=q8_0]") - ppl("dense-active[llamacpp]")
    assert c.row.diff.mean == pytest.approx(moe_change - twin_change, rel=1e-9)
    assert c.row.diff.lo < c.row.diff.mean < c.row.diff.hi
    v = next(v for v in all_verdicts(run)["9"] if v.task == "heldout")
    assert v.evidence.mean == pytest.approx(twin_change - moe_change, rel=1e-9)
    assert v.boundary == pytest.approx(-0.01 * ppl("dense-active[llamacpp]"))


def test_a_nan_per_document_value_leaves_claim9_without_an_interval_and_inconclusive(tmp_path):
    run = write_run(tmp_path / "run", flat(100.0, moe_q=100.0, twin_q=103.0), {m: ALL for m in PARAMS},
                    nan_at=("moe[llamacpp,quant=q8_0]", 11), probes=False)
    lost = {x.task: x for x in losses(run)["moe[llamacpp,quant=q8_0]"]}
    assert lost["heldout"].diff is None and lost["heldout"].why == "moe[llamacpp,quant=q8_0]: NaN loss on 1 document(s)"
    q8 = [v for v in all_verdicts(run)["9"] if v.task == "heldout" and v.extra["setting"] == "quant=q8_0"]
    assert q8 and all(v.verdict == INCONCLUSIVE and v.evidence.lo is None for v in q8)
    assert all("NaN loss on 1 document(s)" in v.evidence.why_none for v in q8)
    q4 = [v for v in all_verdicts(run)["9"] if v.task == "heldout" and v.extra["setting"] == "quant=q4_0"]
    assert q4 and all(v.verdict == HOLDS for v in q4)  # the neighbouring setting, without the NaN, is judged


def test_a_twin_without_its_f32_has_no_comparison_and_the_report_says_so(tmp_path):
    run = write_run(tmp_path / "run", flat(100.0, moe_q=100.0, twin_q=103.0),
                    {"moe": ALL, "dense-active": ["", "q8_0", "q4_0"], "dense-total": ALL}, probes=False)
    assert references(run)["dense-active[llamacpp,quant=q8_0]"] is None
    assert {v.extra["kind"] for v in all_verdicts(run)["9"]} == {"total"}  # equal-total only
    notes = missing_reference_notes(run)
    assert notes[0].startswith("dense-active[llamacpp,quant=q8_0]: no exact setting of the same build on llamacpp")
    md = render_markdown(run.name, build_sections(run, with_figures=False))
    quant = md.split("\n## Quantization", 1)[1].split("\n## ", 1)[0]
    assert "dense-active[llamacpp,quant=q8_0]: no exact setting" in quant
    assert "| dense-active[llamacpp,quant=q8_0] |" not in quant and "| dense-total[llamacpp,quant=q8_0] |" in quant


def test_transformers_variants_never_enter_the_quantization_comparison(tmp_path):
    run = write_run(tmp_path / "run", flat(100.0, moe_q=100.0, twin_q=103.0), {m: ALL for m in PARAMS}, probes=False)
    used = {x for c in comparisons(run) for pair in c.row.pair.seeds + c.references for x in pair}
    assert used and all("[llamacpp" in v for v in used)
    assert not {"moe", "dense-active", "dense-total"} & (set(references(run)) | set(references(run).values()))
    # the transformers pairs still answer the other claims' comparisons as before: no quantization there
    assert all(not v.variants or "[llamacpp" in v.variants[0] for v in all_verdicts(run)["9"])


# ---- the card and the section ---------------------------------------------------------------------------
def test_the_card_quotes_claim_9_and_its_verdict(tmp_path):
    run = write_run(tmp_path / "run", flat(100.0, moe_q=100.0, twin_q=103.0), {m: ALL for m in PARAMS}, probes=False)
    line = next(c for c in build_card(run).lines if c.claim == "9")
    assert line.quote == claims()["9"] == "An MoE loses no more to quantization than its dense twins"
    assert line.verdict == HOLDS and "boundary -1" in line.effect


def test_the_section_sets_each_moe_beside_its_twins_at_each_bit_width(tmp_path):
    run = write_run(tmp_path / "run", flat(2.0, moe_q=2.5, twin_q=2.0), {m: ALL for m in PARAMS})
    sections = {s.id: s for s in build_sections(run, with_figures=False)}
    table = sections["quantization"].tables[0]
    col = table.columns.index
    rows = [(r[col("setting")], r[col("role")], r[col("variant")]) for r in table.rows]
    assert rows[:3] == [("quant=f32", "MoE", "moe[llamacpp]"),
                        ("quant=f32", "equal-active twin", "dense-active[llamacpp]"),
                        ("quant=f32", "equal-total twin", "dense-total[llamacpp]")]
    assert [r[0] for r in rows[3::3]] == ["quant=q8_0", "quant=q4_0"] and len(rows) == 9
    q4 = table.rows[6]
    assert (q4[col("bits / weight")], q4[col("decode (tokens/s)")], q4[col("file size")]) == ("4.50", "711.1", "56 B")
    assert q4[col("heldout loss lost vs exact (nats/token; 95% CI)")] == "+0.5000 [+0.5000, +0.5000] (16 docs)"
    assert q4[col("mc acc lost vs exact (fraction correct; 95% CI)")].startswith("+0.2500 [")
    assert table.rows[7][col("heldout loss lost vs exact (nats/token; 95% CI)")] == "+0 [+0, +0] (16 docs)"  # twin
    assert table.rows[0][col("mc acc lost vs exact (fraction correct; 95% CI)")] == "reference"


def test_the_section_is_absent_without_two_settings_of_one_build(tmp_path):
    run = write_run(tmp_path / "run", flat(2.0), {m: ["", "f32"] for m in PARAMS}, probes=False)
    assert "quantization" not in {s.id for s in build_sections(run, with_figures=False)}
    assert all_verdicts(run)["9"] == []


def test_the_quantization_figure_draws_one_line_per_build(tmp_path, monkeypatch):
    """Quality lost against bits per weight: one line per build (the MoE and its twin), its exact setting
    at 0 and each quantized one at its file's bits per weight. One task, so one panel (seconds saved)."""
    from harness.report import figure
    from harness.report.sections.quant import loss_vs_bits

    run = write_run(tmp_path / "run", flat(2.0, moe_q=2.5, twin_q=2.25), {"moe": ALL, "dense-active": ALL},
                    probes=False)
    run.records = [r for r in run.records if r.get("task") != "mc"]
    run._memo.clear()
    seen = []
    monkeypatch.setattr(figure, "FIGURE_HOOK", seen.append)
    figs = loss_vs_bits(run)
    assert len(figs) == 1 and figs[0].png_base64 and "bits per weight" in figs[0].title
    (ax,) = seen[0].axes
    lines = {c.get_label(): sorted(zip(*c.lines[0].get_data())) for c in ax.containers}
    assert lines == {"moe[llamacpp] (MoE)": [(4.5, 0.5), (8.5, 0.5), (32.0, 0.0)],
                     "dense-active[llamacpp] (dense)": [(4.5, 0.25), (8.5, 0.25), (32.0, 0.0)]}


# ---- what the first real run of suites/quant.yaml showed (each a decision the card printed wrong) -------
def test_an_aggregate_task_without_documents_is_not_compared_twice(tmp_path):
    """lm-eval's group row (longtail_heldout over _seen and _unseen) has a value but no documents: it is
    left out of the quantization table and of claim 9, whose members are already judged per document."""
    run = write_run(tmp_path / "run", flat(1.0, moe_q=1.5, twin_q=1.5), {m: ["f32", "q8_0"] for m in PARAMS})
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    extra = [json.loads(x) for x in lines if '"heldout"' in x and '"evaluate"' in x]
    for r in extra:  # the same variants with a group row: a metric, no samples
        r.update(key=r["key"] + "-group", task="heldout_group", metrics={"heldout_group": {"loss": 1.0}}, samples={})
    (tmp_path / "run" / "results.jsonl").write_text("\n".join(lines + [json.dumps(r) for r in extra]) + "\n")
    run = Run.load(tmp_path / "run")
    assert "heldout_group" in run.tasks()
    assert [t for t, _ in quant_tasks(run)] == ["heldout", "mc"]
    assert {c.row.task for c in comparisons(run)} == {"heldout", "mc"}


def test_claim5_pairs_each_router_with_the_native_of_its_own_engine_setting(tmp_path):
    """With one checkpoint on transformers and on llama.cpp at two quantizations, top-1 on each engine
    setting is set against native on that same setting (the card named one setting for all of them)."""
    from harness.report.seeds import routing_pairs

    run = write_run(tmp_path / "run", flat(1.0), {"moe": ["", "f32", "q8_0"]}, probes=False)
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    records = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    for v in list(plan["variants"]):
        top1 = {**v, "name": v["name"].replace("moe", "moe@topk(k=1)", 1),
                "routing": {"name": "topk", "params": {"k": 1}}}
        plan["variants"].append(top1)
        records += [{**r, "key": r["key"] + "-top1", "variant": top1["name"]} for r in records if r["variant"] == v["name"]]
    (tmp_path / "run" / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "run" / "results.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    pairs = {p.moe: p.dense for p in routing_pairs(Run.load(tmp_path / "run"))}
    assert pairs == {"moe@topk(k=1)": "moe", "moe@topk(k=1)[llamacpp]": "moe[llamacpp]",
                     "moe@topk(k=1)[llamacpp,quant=q8_0]": "moe[llamacpp,quant=q8_0]"}


def test_a_variant_built_from_another_variants_training_reads_that_training(tmp_path):
    """The llama.cpp and eval-routing variants of a trained build have no train job of their own: their
    regime is the train job whose train_key their build names, not 'not recorded'."""
    run = write_run(tmp_path / "run", flat(1.0), {"moe": ["", "q8_0"]}, probes=False)
    plan = json.loads((tmp_path / "run" / "plan.json").read_text())
    for v in plan["variants"]:
        v["build"] = {"trained": "k1"}
    (tmp_path / "run" / "plan.json").write_text(json.dumps(plan))
    train = {"key": "job", "kind": "train", "variant": "moe", "model": "moe", "status": "ok", "spec": {"kind": "train"},
             "build": {"train_key": "k1"}, "train": {"tokens": 500}, "params": PARAMS["moe"], "metrics": {}}
    other = {**train, "key": "job2", "build": {"train_key": "k2"}, "train": {"tokens": 9}}
    with open(tmp_path / "run" / "results.jsonl", "a") as f:
        f.write(json.dumps(train) + "\n" + json.dumps(other) + "\n")
    run = Run.load(tmp_path / "run")
    assert run.training("moe[llamacpp,quant=q8_0]") == {"tokens": 500}
    assert run.training("nobody") is None


def test_file_sizes_and_memory_read_as_numbers_never_in_e_notation():
    from harness.report.probes import fmt_bytes

    assert fmt_bytes(1010 * 1024) == "1,010 KiB"  # was 1.01e+03 KiB in the quantization table
    assert fmt_bytes(99.5 * 1024) == "99.5 KiB" and fmt_bytes(5 * 2**20) == "5 MiB" and fmt_bytes(12) == "12 B"
    assert fmt_bytes(float("nan")) == "-"
