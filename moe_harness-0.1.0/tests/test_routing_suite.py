"""Issue 3, as a user runs it: one MoE build under native, topk with half its k, topp, random and
prune of a quarter of its experts, each a report row with metrics, measured experts per token,
effective active parameters and load balance."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def routing_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("routing") / "run"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(REPO / "suites" / "routing.yaml"),
                           "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_every_strategy_has_measured_routing_and_metrics(routing_run):
    recs = [json.loads(line) for line in (routing_run / "results.jsonl").read_text().splitlines()]
    evals = {r["variant"]: r for r in recs if r["kind"] == "evaluate"}
    moe = [v for v in evals if v.startswith("moe-8x2")]
    assert sorted(moe) == sorted(["moe-8x2", "moe-8x2@topk(k=1)", "moe-8x2@topp(p=0.5,max_k=4)",
                                  "moe-8x2@random", "moe-8x2@prune(fraction=0.25)"])
    for name in moe:
        r = evals[name]
        summary = r["routing"]["summary"]
        assert summary["tokens"] > 0 and 0 < summary["entropy"] <= 1 and summary["max_over_mean"] >= 1
        assert 0 <= r["metrics"]["smoke_mc"]["acc"] <= 1
    ept = {v: evals[v]["routing"]["summary"]["experts_per_token_mean"] for v in moe}
    assert ept["moe-8x2"] == pytest.approx(2) and ept["moe-8x2@topk(k=1)"] == pytest.approx(1)
    assert 1 <= ept["moe-8x2@topp(p=0.5,max_k=4)"] <= 4
    # pruning a quarter of 8 experts: 2 experts never see a token, in every layer
    for layer in evals["moe-8x2@prune(fraction=0.25)"]["routing"]["layers"]:
        assert sum(1 for n in layer["tokens_per_expert"] if n == 0) >= 2
    # effective active parameters follow the strategy: by formula for topk, measured for topp
    active = {v: evals[v]["params"]["active"] for v in moe}
    assert active["moe-8x2@topk(k=1)"] < active["moe-8x2"]
    assert evals["moe-8x2@topp(p=0.5,max_k=4)"]["params"]["active_measured"] is True


def test_report_has_one_row_per_variant_with_measured_experts_per_token(routing_run):
    report = (routing_run / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| moe-8x2")]
    variant_rows = {line.split("|")[1].strip(): line for line in rows}
    for name in ("moe-8x2", "moe-8x2@topk(k=1)", "moe-8x2@topp(p=0.5,max_k=4)", "moe-8x2@random",
                 "moe-8x2@prune(fraction=0.25)"):
        assert name in variant_rows, f"no report row for {name}"
    topp = [c.strip() for c in variant_rows["moe-8x2@topp(p=0.5,max_k=4)"].split("|")]
    assert "-" not in topp[8:10], f"topp row lacks measured experts/token or load: {topp}"
