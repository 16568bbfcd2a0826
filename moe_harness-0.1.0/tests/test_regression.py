"""`harness check` against the committed smoke baseline: the smoke run passes, and a run in which
one build is deliberately degraded fails, naming what regressed. (`tox -e regression` runs the
same check from the command line.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / "baselines" / "smoke.yaml"
pytestmark = pytest.mark.slow


def check(run: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", "check", str(run), "--baseline", str(BASELINE)],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def test_smoke_run_passes_the_committed_baseline(smoke_run):
    proc = check(smoke_run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_a_degraded_build_fails_the_check(tmp_path):
    suite = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text())
    # Degrade one build: weights drawn 50x too wide make its predictions confidently wrong.
    dense = next(m for m in suite["models"] if m["name"] == "dense-active")
    dense["config"]["initializer_range"] = 1.0
    for task in suite["tasks"]:
        task["path"] = str(REPO / "suites" / task["path"])
    path = tmp_path / "degraded.yaml"
    path.write_text(yaml.safe_dump(suite))
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(path), "--out", str(run), "--no-report"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = check(run)
    assert result.returncode == 1, result.stdout[-3000:]
    regressed = [line for line in result.stdout.splitlines() if "dense-active" in line and "perplexity" in line]
    assert regressed, result.stdout[-3000:]
