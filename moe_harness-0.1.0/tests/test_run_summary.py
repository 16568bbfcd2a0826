"""The coordinator's Summary (workers lost, jobs quarantined, late replies) reaches the user: printed
at the end of `harness run`, kept in plan.json, shown in the report's provenance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.coordinator import Summary
from harness.report.provenance import coordinator_line, provenance_table
from harness.report.run import Run
from harness.run import add_summary

FIXTURE = Path(__file__).resolve().parent / "data" / "run_fixture"


def test_phases_fold_into_one_summary():
    total: dict = {}
    add_summary(total, Summary(ok=2, lost=["ipc://a: silent for 2.0 s"], late_replies=1, elapsed_s=1.5))
    add_summary(total, Summary(ok=3, failed=1, quarantined=["k" * 64], elapsed_s=2.25))
    assert total == {"ok": 5, "failed": 1, "not_run": [], "quarantined": ["k" * 64],
                     "lost": ["ipc://a: silent for 2.0 s"], "late_replies": 1, "elapsed_s": 3.75}
    assert coordinator_line(total) == ("coordinator: 1 worker lost (ipc://a: silent for 2.0 s), "
                                       "1 job quarantined (kkkkkkkkkkkk), 1 late reply")
    assert coordinator_line(add_summary({}, Summary())) == ("coordinator: 0 workers lost, 0 jobs quarantined, "
                                                            "0 late replies")


def test_provenance_shows_what_the_coordinator_saw(tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(FIXTURE, run_dir)
    plan = json.loads((run_dir / "plan.json").read_text())
    plan["coordinator"] = add_summary({}, Summary(ok=9, lost=["tcp://gpu3:5555: silent for 30.0 s"], late_replies=2))
    (run_dir / "plan.json").write_text(json.dumps(plan))
    rows = dict(provenance_table(Run.load(run_dir), repo_sha="abc").rows)
    assert rows["coordinator"] == "1 worker lost (tcp://gpu3:5555: silent for 30.0 s), 0 jobs quarantined, 2 late replies"
    plan.pop("coordinator")
    (run_dir / "plan.json").write_text(json.dumps(plan))
    assert "not recorded" in dict(provenance_table(Run.load(run_dir), repo_sha="abc").rows)["coordinator"]


def test_a_real_run_keeps_the_summary_in_plan_and_report(smoke_run):
    coordinator = json.loads((smoke_run / "plan.json").read_text())["coordinator"]
    assert coordinator["lost"] == [] and coordinator["quarantined"] == [] and coordinator["ok"] > 0
    assert "| coordinator | 0 workers lost, 0 jobs quarantined, 0 late replies |" in (smoke_run / "report.md").read_text()
