"""Issue 9, as a user runs it: `harness run suites/longtail.yaml` at its ci scale trains an MoE
build and its two derived dense twins identically, evaluates them per popularity bucket through
lm-eval, and reports accuracy per bucket, the training regime and the loss curves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.heavy]  # tox -e heavy: a whole suite trained end to end


@pytest.fixture(scope="module")
def longtail_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("longtail") / "run"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(REPO / "suites" / "longtail.yaml"),
                           "--out", str(out), "--scale", "ci"], capture_output=True, text=True, timeout=900,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_builds_train_identically_and_learn(longtail_run):
    recs = [json.loads(line) for line in (longtail_run / "results.jsonl").read_text().splitlines()]
    trains = {r["variant"]: r for r in recs if r["kind"] == "train"}
    assert set(trains) == {"moe", "dense-active", "dense-total"}
    settings = [json.dumps({k: v for k, v in r["spec"].items() if k not in ("variant",)}, sort_keys=True)
                for r in trains.values()]
    assert len(set(settings)) == 1, "every build trains on the same data, schedule, batch and seed"
    for r in trains.values():
        curve = r["train"]["curve"]
        assert curve[-1]["loss"] < curve[0]["loss"] - 0.5, (r["variant"], curve[0], curve[-1])
        assert r["train"]["tokens_per_s"] > 0
        assert Path(r["build"]["checkpoint"], "model.safetensors").is_file()
    # the twins were derived to the MoE's active and total parameter counts (within 2%)
    moe = trains["moe"]["params"]
    assert abs(trains["dense-active"]["params"]["total"] / moe["active"] - 1) < 0.02
    assert abs(trains["dense-total"]["params"]["total"] / moe["total"] - 1) < 0.02


def test_per_bucket_accuracy_for_every_build(longtail_run):
    recs = [json.loads(line) for line in (longtail_run / "results.jsonl").read_text().splitlines()]
    evals = {(r["variant"], r["task"]): r for r in recs if r["kind"] == "evaluate"}
    assert set(evals) == {(v, t) for v in ("moe", "dense-active", "dense-total")
                          for t in ("longtail", "longtail_values")}
    for (variant, task), r in evals.items():
        assert r["status"] == "ok"
        for bucket in ("head", "torso", "tail"):
            m = r["metrics"][f"{task}_{bucket}"]
            assert 0 <= m["acc"] <= 1
            if task == "longtail_values":
                assert m["bits"] >= 0
    report = (longtail_run / "report.md").read_text()
    section = report.split("## Long-tail buckets", 1)[1].split("\n## ", 1)[0]
    assert "No per-bucket" not in section
    for word in ("head", "torso", "tail", "tokens / param", "exposures per fact", "bits stored"):
        assert word in section.lower(), word
