"""report.md / report.html / lm-eval export from the synthetic run fixture, and their failure paths."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from harness.report import write_report
from harness.report.run import ReportError, Run

FIXTURE = Path(__file__).resolve().parent / "data" / "run_fixture"
SECTIONS = ["variants", "pairs-active", "pairs-total", "long-tail", "probes", "routing", "training", "provenance"]


def _rows(md: str, heading: str) -> list[list[str]]:
    """The table rows under a '## heading' in report.md."""
    part = md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in part.splitlines()
            if line.startswith("| ") and not line.startswith("| variant") and not line.startswith("| MoE variant")]


def test_markdown_has_every_table_with_the_fixture_numbers(report_fixture_run):
    md = (report_fixture_run / "report.md").read_text()
    variants = {r[0]: r for r in _rows(md, "Variants")}
    assert list(variants) == ["moe-a@topk(k=2)", "moe-a@topp(p=0.6)", "dense-s", "dense-l"]
    assert variants["moe-a@topk(k=2)"][3:5] == ["1.2M", "422k"]
    assert variants["moe-a@topp(p=0.6)"][4] == "373k (eff.)" and "1.62 (measured)" in variants["moe-a@topp(p=0.6)"]
    assert variants["dense-s"][9] == "0.4667 ± 0.03227"  # arith acc: 4 significant digits (numbers.py)
    active = _rows(md, "Equal-active pairs")
    assert [r[:2] for r in active][:1] == [["moe-a@topk(k=2)", "dense-s"]]
    arith = next(r for r in active if r[0] == "moe-a@topk(k=2)" and r[3] == "arith")
    assert arith[7] == "+0.1625" and arith[-1] == "* MoE better"
    total = _rows(md, "Equal-total pairs")
    assert {r[1] for r in total} == {"dense-l"}
    assert any(r[-1] == "* dense better" for r in total) and any(r[-1] == "" for r in total)
    prose = next(r for r in total if r[0] == "moe-a@topk(k=2)" and r[4] == "bits_per_byte (bits/byte)")
    assert prose[8].startswith("[") and prose[9] == "40"  # perplexity-type metrics get a paired CI too
    for heading in ("### Latency", "### Throughput", "### MoE decode cost between its dense twins", "### Memory",
                    "### Experts touched", "### Accuracy per bucket", "### Pairs per bucket"):
        assert heading in md, heading
    assert "dense-s, dense-l: device cpu (float32), roofline peaks 8 GB/s, 0.280 TFLOP/s (measured)" in md
    assert "How obtained, KV cache: measured: StaticCache tensor bytes." in md
    assert "FAILED | probe dense-l memory: -32001 out of memory" in md
    assert "0123456789abcdef" in md  # git sha recorded by the workers, in provenance
    assert "| devices | Fixture CPU (cpu) |" in md and "| time: total |" in md
    assert "2 merged from shards" in md


def test_html_is_self_contained_with_every_section_and_plot(report_fixture_run):
    html = (report_fixture_run / "report.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", html) and "http://" not in html and "https://" not in html
    for s in SECTIONS:
        assert f'data-section="{s}" data-has-data="true"' in html, s
    srcs = re.findall(r'<img alt="[^"]*" src="([^"]+)"', html)
    # params×3 tasks, accuracy vs decode cost, buckets, decode vs batch, experts touched, 2 heatmaps, loss curves
    assert len(srcs) == 10 and all(s.startswith("data:image/png;base64,iVBOR") for s in srcs)
    alts = re.findall(r'<img alt="([^"]*)"', html)
    assert any(a.startswith("Decode throughput vs batch size") for a in alts)
    assert "Experts touched per decode step vs batch size (routing probe)" in alts


def test_sections_without_data_say_so(tmp_path):
    """A dense-only run with evaluations and nothing else: the other sections print one line each."""
    run = tmp_path / "dense-only"
    shutil.copytree(FIXTURE, run)
    recs = [json.loads(l) for l in (run / "results.jsonl").read_text().splitlines()]
    keep = [r for r in recs if r["variant"] == "dense-s" and r["kind"] in ("describe", "evaluate")]
    for r in keep:
        for s in r.get("samples", {}).values():
            for row in s:
                row.pop("bucket", None)
        for m in r.get("metrics", {}).values():
            for b in ("head", "torso", "tail"):
                m.pop(f"acc_{b}", None)
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in keep))
    plan = json.loads((run / "plan.json").read_text())
    plan["variants"] = [v for v in plan["variants"] if v["name"] == "dense-s"]
    plan["pairs"] = []
    (run / "plan.json").write_text(json.dumps(plan))
    paths = write_report(run)
    html, md = paths["html"].read_text(), paths["md"].read_text()
    for s in ["pairs-active", "pairs-total", "long-tail", "probes", "routing", "training"]:
        assert f'data-section="{s}" data-has-data="false"' in html, s
    assert "_No probe results in this run._" in md
    assert "_No MoE variant has a dense twin at equal active parameters in this run._" in md
    assert "_No training results in this run._" in md
    assert list(paths["lm_eval"]) == ["dense-s"]


def test_lm_eval_export_is_read_by_lm_evals_own_table(report_fixture_run):
    from lm_eval.utils import make_table

    path = report_fixture_run / "lm_eval" / "moe-a@topp(p=0.6)" / "results.json"
    data = json.loads(path.read_text())
    for key in ("results", "configs", "versions", "n-shot", "higher_is_better", "n-samples", "config"):
        assert key in data, key
    assert data["results"]["arith"]["acc,none"] == pytest.approx(0.6125)
    assert data["n-samples"]["arith"] == {"original": 240, "effective": 240}
    table = make_table(data)
    assert re.search(r"\|arith\s*\|.*\|acc\s*\|.*0\.6125", table), table
    samples = (path.parent / "samples_facts.jsonl").read_text().splitlines()
    assert len(samples) == 180 and json.loads(samples[0])["bucket"] == "head"


def test_probe_rows_of_any_shape_render_known_columns_first(tmp_path):
    run = tmp_path / "r"
    shutil.copytree(FIXTURE, run)
    rec = {"key": "x1", "kind": "probe", "variant": "dense-s", "status": "ok",
           "probe": {"name": "custom", "rows": [{"weird_col": 7, "phase": "decode", "batch_size": 2, "peak_mb": 12.5}]}}
    rec2 = {"key": "x2", "kind": "probe", "variant": "dense-l", "status": "ok",
            "probe": {"name": "custom", "rows": [], "peak_mb": 99.0, "device": "cpu"}}  # no rows at all
    with open(run / "results.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n" + json.dumps(rec2) + "\n")
    from harness.report.probes import plain_probe_tables

    table = next(t for t in plain_probe_tables(Run.load(run)) if t.title == "Probe: custom")
    assert table.columns == ["variant", "batch_size", "phase", "weird_col", "peak_mb"]
    assert table.rows == [["dense-s", "2", "decode", "7", "12.50"]]
    assert table.notes == ["dense-l: peak_mb = 99.00, device = cpu"]


def test_pairs_come_from_the_matcher_when_there_is_one(monkeypatch):
    """harness.pairs.match_pairs gets the described params and is_moe; its pairs are used."""
    import types

    seen = {}

    def match_pairs(params, is_moe, tolerance):
        seen.update(params=params, is_moe=is_moe, tolerance=tolerance)
        return [types.SimpleNamespace(kind="total", moe="moe-a@topk(k=2)", dense="dense-s", ratio=0.35)]

    monkeypatch.setitem(sys.modules, "harness.pairs", types.SimpleNamespace(match_pairs=match_pairs))
    pairs = Run.load(FIXTURE).pairs()
    assert [(p.kind, p.moe, p.dense, p.ratio) for p in pairs] == [("total", "moe-a@topk(k=2)", "dense-s", 0.35)]
    assert seen["is_moe"] == {"moe-a@topk(k=2)": True, "moe-a@topp(p=0.6)": True, "dense-s": False, "dense-l": False}
    assert seen["params"]["dense-l"]["total"] == 1_212_416 and seen["tolerance"] == 0.15


def test_unreadable_run_folders_are_named(tmp_path):
    with pytest.raises(ReportError, match="no such run folder"):
        Run.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportError, match="is this a run folder"):
        Run.load(tmp_path / "empty")
    bad = tmp_path / "bad"
    shutil.copytree(FIXTURE, bad)
    with open(bad / "results.jsonl", "a") as f:
        f.write("{not json\n")
    with pytest.raises(ReportError, match=r"results\.jsonl:33: not valid JSON"):
        write_report(bad)


def test_latency_and_throughput_tables_carry_the_sparsity_aware_utilisation(tmp_path):
    """S-MBU / S-MFU (MoE-CAP) stand beside each probe's measured figures, as the probe computed them."""
    run = tmp_path / "r"
    shutil.copytree(FIXTURE, run)
    row = {"phase": "decode", "batch_size": 1, "context": 64, "ms_p50": 2.0, "tokens_per_s": 500.0,
           "s_mbu": 0.4125, "s_mfu": 0.0031}
    recs = [{"key": f"u{i}", "kind": "probe", "variant": "moe-8x2", "status": "ok",
             "probe": {"name": name, "rows": [row]}} for i, name in enumerate(("latency", "throughput"))]
    with open(run / "results.jsonl", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in recs))
    from harness.report.probes import latency_table, throughput_table

    for table in (latency_table(Run.load(run)), throughput_table(Run.load(run))):
        mbu, mfu = table.columns.index("S-MBU (fraction)"), table.columns.index("S-MFU (fraction)")
        mine = [r for r in table.rows if r[mbu] != "-"]
        assert [(r[mbu], r[mfu]) for r in mine] == [("0.412", "0.00310")], table.title


def _harness(*args: str) -> "subprocess.CompletedProcess":
    import subprocess

    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=FIXTURE.parent.parent.parent,
                          capture_output=True, text=True, timeout=300)


def test_task_names_holding_dollars_are_drawn_as_written(tmp_path):
    """A task named ``$\\frac{a}$`` (and one with two prices in it) was read as mathtext by matplotlib,
    failed to parse, and no report was written at all; now a real `harness report` writes both pages
    with the names as written."""
    run = tmp_path / "dollar"
    shutil.copytree(FIXTURE, run)
    text = (run / "results.jsonl").read_text()
    (run / "results.jsonl").write_text(text.replace('"arith"', json.dumps("$\\frac{a}$"))
                                       .replace('"facts"', json.dumps("cost $1 to $2")))
    proc = _harness("report", str(run))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    md = (run / "report.md").read_text()
    assert "$\\frac{a}$" in md and "cost $1 to $2" in md
    assert (run / "report.html").read_text().count("<img") > 0


def test_malformed_records_are_skipped_with_one_warning_each_by_report_and_compare(tmp_path):
    """Records that break the record schema (missing keys, wrong types, a list variant) crashed
    `harness report` and `compare` with a traceback; now each is skipped with one warning line naming
    the file and line, and both commands finish. A non-map line still ends in one line, exit 2."""
    run = tmp_path / "odd"
    shutil.copytree(FIXTURE, run)
    first = len((run / "results.jsonl").read_text().splitlines()) + 1
    bad = [{}, {"key": "k1", "kind": "evaluate", "status": "ok", "variant": "dense-s", "metrics": [1], "samples": {}},
           {"key": "k2", "kind": "evaluate", "status": "ok", "variant": ["x"], "metrics": {}, "samples": {}},
           {"key": "k3", "kind": "train", "status": "ok", "variant": "dense-s", "train": "fast"},
           {"key": "k4", "kind": "probe", "status": "ok", "variant": "dense-s", "probe": {"name": "latency", "rows": [[1]]}}]
    with open(run / "results.jsonl", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in bad))
    for args in (("report", str(run)), ("compare", str(FIXTURE), str(run))):
        proc = _harness(*args)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.stderr[-2000:])
        warnings = proc.stderr.splitlines()
        assert [w.split(": skipped a malformed record: ")[0] for w in warnings] == \
            [f"warning: {run / 'results.jsonl'}:{first + i}" for i in range(len(bad))], warnings
        assert "record.metrics: expected a map, got list [1]" in warnings[1]
        assert "record.variant: expected a string, got list" in warnings[2]
    with open(run / "results.jsonl", "a") as f:
        f.write("[1, 2]\n")
    proc = _harness("report", str(run))
    assert proc.returncode == 2 and proc.stderr.splitlines()[-1] == \
        f"harness report: error: {run / 'results.jsonl'}:{first + len(bad)}: expected a JSON object, got list"
