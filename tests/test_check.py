"""`harness check`: a baseline written from a run passes; a degraded copy of the run fails (exit 1)."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.report import check

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "data" / "run_fixture"


def _check(run, baseline, update=False) -> int:
    p = argparse.ArgumentParser()
    check.add_arguments(p)
    return check.main(p.parse_args([str(run), "--baseline", str(baseline)] + (["--update"] if update else [])))


def _degrade(src: Path, dst: Path, metric_drop: float = 0.0, latency_factor: float = 1.0, drop_variant=None) -> Path:
    shutil.copytree(src, dst)
    recs = [json.loads(l) for l in (dst / "results.jsonl").read_text().splitlines()]
    recs = [r for r in recs if r.get("variant") != drop_variant]
    for r in recs:
        for values in (r.get("metrics") or {}).values():
            if "acc" in values:
                values["acc"] -= metric_drop
        for row in (r.get("probe") or {}).get("rows", []) if isinstance(r.get("probe"), dict) else []:
            if "ms_p50" in row:
                row["ms_p50"] *= latency_factor
    (dst / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return dst


def test_committed_fixture_baseline_passes_and_degraded_run_fails(tmp_path, capsys):
    baseline = REPO / "baselines" / "fixture.yaml"
    assert _check(FIXTURE, baseline) == 0
    out = capsys.readouterr().out
    assert "52 checked: 52 passed, 0 regressed or missing." in out
    worse = _degrade(FIXTURE, tmp_path / "worse", metric_drop=0.08)
    assert _check(worse, baseline) == 1
    out = capsys.readouterr().out
    assert re.search(r"REGRESSED\s+moe-a@topk\(k=2\)\s+arith acc\s+0.6292\s+0.5492\s+-0.0800", out)
    assert "8 regressed or missing" in out


def test_within_tolerance_passes_and_improvement_is_reported(tmp_path, capsys):
    baseline = REPO / "baselines" / "fixture.yaml"
    assert _check(_degrade(FIXTURE, tmp_path / "a", metric_drop=0.04), baseline) == 0
    assert _check(_degrade(FIXTURE, tmp_path / "b", metric_drop=-0.1), baseline) == 0
    assert "improved" in capsys.readouterr().out


def test_slower_latency_and_missing_variant_fail(tmp_path, capsys):
    base = tmp_path / "base.json"
    assert _check(FIXTURE, base, update=True) == 0
    data = json.loads(base.read_text())
    assert data["latency"]["dense-s"]["latency/bs1/ctx64/decode"] == {"ms_p50": 1.856}
    assert _check(_degrade(FIXTURE, tmp_path / "slow", latency_factor=3.0), base) == 1
    assert re.search(r"REGRESSED\s+dense-l\s+latency/bs16/ctx64/decode ms_p50", capsys.readouterr().out)
    assert _check(_degrade(FIXTURE, tmp_path / "gone", drop_variant="dense-s"), base) == 1
    out = capsys.readouterr().out
    assert re.search(r"MISSING\s+dense-s\s+arith acc", out)


def test_update_keeps_defaults_and_per_entry_tolerance_and_lower_is_better(tmp_path, capsys):
    base = tmp_path / "b.yaml"
    base.write_text("defaults: {metric_tolerance: 0.2}\n")
    assert _check(FIXTURE, base, update=True) == 0
    data = yaml.safe_load(base.read_text())
    assert data["defaults"]["metric_tolerance"] == 0.2
    assert data["metrics"]["dense-l"]["facts"] == {"acc": 0.666667}
    # a lower-is-better metric regresses when it rises; a tight per-entry tolerance bites
    data["metrics"] = {"dense-l": {"facts": {"acc": {"value": 0.70, "tolerance": 0.01}}}}
    data["latency"] = {}
    base.write_text(yaml.safe_dump(data))
    assert _check(FIXTURE, base) == 1
    run = check.Run.load(FIXTURE)
    table = check.check(run, {"defaults": check.DEFAULTS,
                              "metrics": {"dense-l": {"facts": {"perplexity": 10.0}}}})
    assert table.rows[0][0] == "MISSING"


@pytest.mark.parametrize("text,msg", [
    ("metrics: {v: {t: {acc: high}}}", "metrics.v.t.acc: expected a number or {value, tolerance}"),
    ("defaults: {metric_tol: 1}", "defaults.metric_tol: unknown setting"),
    ("[1, 2]", "expected a mapping"),
    ("thresholds: {}", "unknown top-level key"),
    ("metrics: {v: {t: {acc: [}}}", "not valid YAML"),
])
def test_bad_baseline_files_are_named(tmp_path, capsys, text, msg):
    base = tmp_path / "bad.yaml"
    base.write_text(text)
    assert _check(FIXTURE, base) == 2
    err = capsys.readouterr().err
    assert str(base) in err and msg in err


def test_cli_exit_codes_through_harness_command(tmp_path):
    baseline = REPO / "baselines" / "fixture.yaml"
    worse = _degrade(FIXTURE, tmp_path / "worse", metric_drop=0.3)
    cmd = [sys.executable, "-m", "harness.cli", "check"]
    ok = subprocess.run(cmd + [str(FIXTURE), "--baseline", str(baseline)], cwd=REPO, capture_output=True, text=True)
    bad = subprocess.run(cmd + [str(worse), "--baseline", str(baseline)], cwd=REPO, capture_output=True, text=True)
    missing = subprocess.run(cmd + [str(FIXTURE), "--baseline", str(tmp_path / "none.yaml")], cwd=REPO,
                             capture_output=True, text=True)
    assert (ok.returncode, bad.returncode, missing.returncode) == (0, 1, 2), (ok.stderr, bad.stderr)
    assert "no such baseline file" in missing.stderr


def _with_metric(dst: Path, value) -> Path:
    """A copy of the fixture run whose moe-a@topk(k=2) arith acc is ``value`` (NaN: a diverged model)."""
    shutil.copytree(FIXTURE, dst)
    recs = [json.loads(l) for l in (dst / "results.jsonl").read_text().splitlines()]
    for r in recs:
        if r.get("variant") == "moe-a@topk(k=2)" and "arith" in (r.get("metrics") or {}):
            r["metrics"]["arith"]["acc"] = value
    (dst / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return dst


def _harness_check(run: Path, baseline: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", "check", str(run), "--baseline", str(baseline), *extra],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def test_a_nan_metric_is_a_regression_never_a_pass(tmp_path):
    """NaN compares false both ways, so it used to read "ok": a run holding one now exits 1 with the
    row REGRESSED; the same run with the baseline's own value passes; a NaN baseline entry or a
    baseline written from a NaN run is refused (exit 2, one line)."""
    baseline = REPO / "baselines" / "fixture.yaml"
    nan = _harness_check(_with_metric(tmp_path / "nan", float("nan")), baseline)
    assert nan.returncode == 1, nan.stderr
    assert re.search(r"REGRESSED\s+moe-a@topk\(k=2\)\s+arith acc\s+0.6292\s+nan", nan.stdout), nan.stdout
    assert "51 passed, 1 regressed or missing" in nan.stdout
    same = _harness_check(_with_metric(tmp_path / "same", 0.6292), baseline)
    assert same.returncode == 0, same.stdout + same.stderr
    bad_base = tmp_path / "nan.yaml"
    bad_base.write_text("metrics: {dense-s: {arith: {acc: .nan}}}\n")
    refused = _harness_check(FIXTURE, bad_base)
    assert refused.returncode == 2 and len(refused.stderr.splitlines()) == 1
    assert "metrics.dense-s.arith.acc: expected a number" in refused.stderr
    update = _harness_check(tmp_path / "nan", tmp_path / "new.yaml", "--update")
    assert update.returncode == 2 and len(update.stderr.splitlines()) == 1, update.stderr
    assert "moe-a@topk(k=2) arith acc is nan" in update.stderr and not (tmp_path / "new.yaml").exists()


def test_bad_input_exits_2_in_one_line_and_only_a_regression_exits_1(tmp_path):
    """A malformed record is skipped with one warning naming the file and line (the check goes on and
    passes); a run folder the check cannot read at all (plan.json a list) exits 2 in one line, not 1."""
    baseline = REPO / "baselines" / "fixture.yaml"
    run = tmp_path / "odd"
    shutil.copytree(FIXTURE, run)
    with open(run / "results.jsonl", "a") as f:
        f.write(json.dumps({"key": "k1", "kind": "evaluate", "status": "ok", "variant": "dense-s", "metrics": [1]}) + "\n")
    lines = len((run / "results.jsonl").read_text().splitlines())
    odd = _harness_check(run, baseline)
    assert odd.returncode == 0, odd.stderr
    assert odd.stderr.splitlines() == [f"warning: {run / 'results.jsonl'}:{lines}: skipped a malformed record: "
                                       "record: missing 'samples': every evaluate result carries it"]
    (run / "plan.json").write_text("[]")
    broken = _harness_check(run, baseline)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert broken.stderr.splitlines()[-1] == f"harness check: error: {run / 'plan.json'}: expected a JSON object, got list"
    assert "exit codes:" in subprocess.run([sys.executable, "-m", "harness.cli", "check", "--help"], cwd=REPO,
                                           capture_output=True, text=True).stdout
