"""How many jobs a run can hold is not bounded by its open files (issue 32 §3).

A run took every planned job's cross-run lock before dispatching anything, one open file each, so
a phase of ~1,000 jobs died of ``Too many open files`` under the usual ``ulimit -n 1024``, and so
did every rerun. Now a key is locked while its job is in flight only. These tests run real
`harness run` processes under a real ``ulimit``, against a scripted worker in a process of its
own (tests/scripted_peer.py), whose jobs do nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PEER = ("import sys; from scripted_peer import Peer, valid_result; "
        "p = Peer(sys.argv[1], lambda s: ('result', valid_result(s))); print('ready', flush=True); p.join()")


@pytest.fixture
def peer(tmp_path):
    """A scripted worker in its own process; yields its endpoint."""
    endpoint = f"ipc://{tmp_path}/w.sock"
    proc = subprocess.Popen([sys.executable, "-c", PEER, endpoint], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])})
    assert proc.stdout.readline().strip() == "ready"
    yield endpoint
    proc.kill()
    proc.wait()


@pytest.fixture
def fast_dir(tmp_path):
    """A folder for the run and its cache on tmpfs where there is one: each stored result is
    fsynced, which on a busy disk costs 10 ms or more, 20,000 times here."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="moe-harness-test-"))
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def _suite(path: Path, tasks: int) -> Path:
    path.write_text(yaml.safe_dump({"name": "many", "tasks": [{"name": f"t{i}"} for i in range(tasks)],
                                    "models": [{"name": "dense", "config": {"model_type": "llama", "hidden_size": 32}}]}))
    return path


def _harness_run(suite: Path, endpoint: str, where: Path, nofile: int | None, **kw) -> subprocess.Popen:
    limit = f"ulimit -n {nofile}; " if nofile else ""
    env = {**os.environ, "MOE_HARNESS_HOME": str(where / "home"), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(["bash", "-c", f'{limit}exec "$0" -m harness.cli run "$1" --workers "$2" --out "$3" '
                                           "--no-report", sys.executable, str(suite), endpoint, str(where / "run")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.mark.heavy  # tox -e heavy (.ci/run)
def test_a_10000_job_run_passes_under_ulimit_n_1024(tmp_path, fast_dir, peer):
    """10,001 jobs (one describe, 10,000 evaluations) under ``ulimit -n 1024``: all ok. Before, the
    run (and every rerun) died of 'Too many open files' before the first dispatch."""
    suite = _suite(tmp_path / "many.yaml", 10_000)
    proc = _harness_run(suite, peer, fast_dir, 1024)
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-2000:]
    assert "done in" in out and "10001 ok" in out, out[-2000:]
    assert "Too many open files" not in out


def test_the_limit_in_that_test_is_real_a_process_under_it_cannot_open_1024_files(tmp_path):
    """The neighbouring case: what the 10,000-job run stays under does bite (one file per job would)."""
    code = ("import os, sys\nfds = []\ntry:\n    for i in range(1100):\n"
            "        fds.append(os.open(sys.argv[1], os.O_RDONLY))\nexcept OSError as e:\n"
            "    print('stopped', len(fds), e.strerror)\n")
    (tmp_path / "f").write_text("")
    out = subprocess.run(["bash", "-c", f'ulimit -n 1024; exec "$0" -c "$1" "$2"', sys.executable, code,
                          str(tmp_path / "f")], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("stopped ") and "Too many open files" in out and int(out.split()[1]) < 1024, out


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_run_waiting_on_another_runs_job_holds_a_constant_number_of_files(tmp_path, peer):
    """Another process holds the one job's key (a run running it): this run waits, polling the lock
    five times a second, with the same open files throughout (counted in /proc/PID/fd), then runs
    the job itself once the holder is gone."""
    from harness import plan as planner
    from harness.suite import load

    suite = tmp_path / "one.yaml"
    suite.write_text(yaml.safe_dump({"name": "one", "models": [
        {"name": "dense", "config": {"model_type": "llama", "hidden_size": 32}}]}))
    (job,) = planner.expand(load(suite))[1]
    lock = tmp_path / "home" / "results" / ".locks" / f"{job.key}.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from moe_schema.locks import KeyLock; "
                               "KeyLock(sys.argv[1]).try_acquire() or sys.exit(3); print('held', flush=True); "
                               "time.sleep(600)", str(lock)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline().strip() == "held"
    waiter = _harness_run(suite, peer, tmp_path, None)
    try:
        deadline = time.monotonic() + 120
        while (tmp_path / "run" / "plan.json").exists() is False and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)  # past the hello and the first dispatch round: waiting on the lock now
        counts = []
        for _ in range(15):  # 3 s: 15 polls of the lock
            counts.append(_fds(waiter.pid))
            time.sleep(0.2)
        assert waiter.poll() is None, waiter.communicate()[0]
        assert len(set(counts)) == 1, counts
    finally:
        holder.kill()
        holder.wait()
    out = waiter.communicate(timeout=120)[0]
    assert waiter.returncode == 0 and "1 ok" in out and "in flight in another run" in out, out
