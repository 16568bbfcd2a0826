"""End to end, as a user runs it: `harness run` → real daemon processes over real sockets →
transformers builds → lm-eval → results and report. Also: resume after a killed run, and warm
daemons that load no model the second time."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "suites" / "smoke.yaml"

pytestmark = pytest.mark.slow


def harness(*args: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, **kw)


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def test_smoke_run_writes_results_and_both_pair_tables(smoke_run):
    recs = records(smoke_run)
    assert recs and all(r["status"] == "ok" for r in recs), [r.get("error") for r in recs]
    kinds = {r["kind"] for r in recs}
    assert kinds == {"describe", "evaluate", "probe"}
    routing_probes = {r["variant"] for r in recs if r["kind"] == "probe" and r["probe"]["name"] == "routing"}
    assert routing_probes == {"moe-8x2", "moe-8x2@topk(k=1)"}  # dense builds have no router to probe
    for r in recs:
        assert set(r["params"]) >= {"total", "active", "total_no_embed", "active_no_embed"}
        assert {"key", "kind", "variant", "status", "metrics", "timings"} <= set(r)
    evals = [r for r in recs if r["kind"] == "evaluate"]
    mc = [r for r in evals if r["task"] == "smoke_mc"]
    assert mc and all(0.0 <= r["metrics"]["smoke_mc"]["acc"] <= 1.0 for r in mc)
    assert (smoke_run / "suite.yaml").exists() and (smoke_run / "plan.json").exists()
    assert len(list((smoke_run / "jobs").glob("*.json"))) == len(recs)
    plan = json.loads((smoke_run / "plan.json").read_text())
    pair_kinds = {(p["kind"], p["moe"], p["dense"]) for p in plan["pairs"]}
    assert ("active", "moe-8x2", "dense-active") in pair_kinds
    assert ("total", "moe-8x2", "dense-total") in pair_kinds
    report = (smoke_run / "report.md").read_text()
    assert "equal-active" in report.lower() and "equal-total" in report.lower()
    assert "dense-active" in report and "dense-total" in report


def test_rerun_into_a_new_folder_skips_every_finished_job(smoke_run, tmp_path):
    t0 = time.perf_counter()
    proc = harness("run", str(SMOKE), "--out", str(tmp_path / "again"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "starting" not in proc.stderr  # nothing to run: no daemon is even started
    assert time.perf_counter() - t0 < 30
    assert [r["key"] for r in records(tmp_path / "again")] == [r["key"] for r in records(smoke_run)]


@pytest.fixture(scope="module")
def warm_worker(tmp_path_factory):
    from harness.local import start_local_workers

    workers = start_local_workers(1, device="cpu")
    yield workers.endpoints[0]
    workers.stop()


def test_second_run_against_a_warm_daemon_loads_no_model(warm_worker, tmp_path):
    first = harness("run", str(SMOKE), "--out", str(tmp_path / "a"), "--workers", warm_worker, "--no-cache")
    assert first.returncode == 0, first.stderr[-3000:]
    second = harness("run", str(SMOKE), "--out", str(tmp_path / "b"), "--workers", warm_worker, "--no-cache")
    assert second.returncode == 0, second.stderr[-3000:]
    recs = records(tmp_path / "b")
    assert recs and all(r["timings"]["model_cached"] for r in recs), [
        (r["variant"], r["timings"]) for r in recs if not r["timings"]["model_cached"]]
    assert all(r["timings"]["load_s"] < 0.5 for r in recs)


def test_killed_run_resumes_with_only_the_unfinished_jobs(warm_worker, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(SMOKE), "--out", str(out),
                             "--workers", warm_worker, "--no-cache"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    jobs = out / "jobs"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(jobs.glob("*.json"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.stem for p in jobs.glob("*.json")}
    assert 3 <= len(done_before)
    plan = json.loads((out / "plan.json").read_text())
    assert len(done_before) < len(plan["jobs"]), "the run finished before it could be killed"
    mtimes = {p.stem: p.stat().st_mtime_ns for p in jobs.glob("*.json")}

    again = harness("run", str(SMOKE), "--out", str(out), "--workers", warm_worker, "--no-cache")
    assert again.returncode == 0, again.stderr[-3000:]
    recs = records(out)
    assert len(recs) == len(plan["jobs"]) and all(r["status"] == "ok" for r in recs)
    # the jobs finished before the kill were not run again: their files are untouched
    assert all((jobs / f"{k}.json").stat().st_mtime_ns == mtimes[k] for k in done_before)
    assert f"{len(done_before)} reused" in again.stderr


def test_describe_prints_parameters_per_variant_and_the_pairs(smoke_run):
    # the smoke run cached every describe result; a wide terminal keeps rich's table on one line a row
    proc = harness("describe", str(SMOKE), timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for name in ("moe-8x2", "moe-8x2@topk(k=1)", "dense-active", "dense-total"):
        assert name in out
    assert "0.26M" in out and "0.12M" in out  # the MoE's total and active counts
    assert "equal-active pairs" in out and "moe-8x2 ~ dense-active" in out
    assert "equal-total pairs" in out and "moe-8x2 ~ dense-total" in out


def test_describe_counts_a_train_suite_before_training_it():
    """Trained variants are counted on the builds their train jobs start from: no training needed."""
    proc = harness("describe", str(REPO / "suites" / "longtail.yaml"), timeout=300,
                   env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "failed" not in proc.stdout and "train" not in proc.stdout.split("parameters per variant")[1]
    assert "moe ~ dense-active" in proc.stdout and "moe ~ dense-total" in proc.stdout


def test_ctrl_c_once_lets_the_running_job_finish_and_stops_dispatching(warm_worker, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(SMOKE), "--out", str(out),
                             "--workers", warm_worker, "--no-cache"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    jobs = out / "jobs"
    deadline = time.time() + 300
    while time.time() < deadline and not list(jobs.glob("*.json")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-3000:]  # not every job ran
    assert "no new jobs" in err
    plan = json.loads((out / "plan.json").read_text())
    done = [json.loads(p.read_text()) for p in jobs.glob("*.json")]
    assert 1 <= len(done) < len(plan["jobs"])
    assert all(r["status"] == "ok" for r in done)  # the job running at Ctrl-C finished, nothing failed
    assert "not run" in err


def test_a_saved_checkpoint_directory_gives_the_same_results_as_its_config(smoke_run, tmp_path):
    """The checkpoint path (what hub and local checkpoints take): point a suite at the directory the
    smoke run built for dense-active, and get exactly the same evaluation."""
    recs = records(smoke_run)
    described = next(r for r in recs if r["kind"] == "describe" and r["variant"] == "dense-active")
    ckpt = Path(described["build"]["checkpoint"])
    assert (ckpt / "config.json").is_file() and (ckpt / "model.safetensors").is_file()
    suite = {"name": "from-checkpoint", "models": [{"name": "dense-active", "checkpoint": str(ckpt)}],
             "tasks": [{"path": str(REPO / "suites" / "tasks" / "smoke_mc.yaml"), "limit": 60}]}
    path = tmp_path / "suite.yaml"
    path.write_text(json.dumps(suite))  # JSON is YAML
    proc = harness("run", str(path), "--out", str(tmp_path / "run"), "--no-report")
    assert proc.returncode == 0, proc.stderr[-3000:]
    mine = next(r for r in records(tmp_path / "run") if r["kind"] == "evaluate")
    theirs = next(r for r in recs if r["kind"] == "evaluate" and r["variant"] == "dense-active"
                  and r["task"] == "smoke_mc")
    assert mine["metrics"]["smoke_mc"] == theirs["metrics"]["smoke_mc"]
    assert mine["params"]["total"] == described["params"]["total"]
