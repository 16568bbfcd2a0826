"""`harness launch slurm` on a real Slurm: a one-node cluster on loopback on this machine
(tests/slurm/up.sh installs Debian's slurm-wlm and munge if missing, configures and starts them).

Two jobs of CPU daemons on the one node (their ports cannot collide), the smoke suite through both
with `--workers @A/endpoints.txt,@B/endpoints.txt`, then scancel: every daemon gone, both files
removed. Submitted from a folder that is not a git repository and holds a broken `workers/`
package, which the daemons (the installed `harness worker`) must not import. Skipped, saying why,
only where slurm cannot be installed or started (not root, no apt-get).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from harness.launch import default_harness

REPO = Path(__file__).resolve().parent.parent
UP = REPO / "tests" / "slurm" / "up.sh"

pytestmark = [pytest.mark.slow, pytest.mark.heavy]  # tox -e heavy (.ci/run): two clusters jobs, ~90 s


@pytest.fixture(scope="module")
def cluster():
    done = subprocess.run(["bash", str(UP)], capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    if done.returncode == 3:  # the only reason to skip: slurm cannot be installed or started here
        pytest.skip(f"no Slurm cluster: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, f"tests/slurm/up.sh failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture
def submit_dir(tmp_path):
    """Where the user types the commands: not a git repository, with a `workers/` that must not load."""
    (tmp_path / "workers").mkdir()
    (tmp_path / "workers" / "__init__.py").write_text("raise ImportError('the submit folder shadowed workers')\n")
    return tmp_path


def harness(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed `harness` command, as a user runs it (from ``cwd``)."""
    return subprocess.run([default_harness(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def submit(cwd: Path, out: str, *extra: str) -> str:
    done = harness(cwd, "launch", "slurm", "--out", out, "--device", "cpu", "--cpus-per-daemon", "1",
                   "--bind-host", "127.0.0.1", "--submit", *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    return re.search(r"Submitted batch job (\d+)", done.stdout).group(1)


def squeue(job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout.strip()


def wait_gone(jobs: list[str], timeout_s: float) -> float:
    t0 = time.monotonic()
    while any(squeue(j) for j in jobs):
        assert time.monotonic() - t0 < timeout_s, f"jobs {jobs} still queued: {[squeue(j) for j in jobs]}"
        time.sleep(0.5)
    return time.monotonic() - t0


def daemon_pids(out: Path, job: str) -> list[int]:
    logs = sorted(out.glob(f"daemon-{job}-*.log"))
    return [int(m.group(1)) for log in logs if (m := re.search(r"^worker ready: .* pid=(\d+)", log.read_text(), re.M))]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "harness" in Path(f"/proc/{pid}/cmdline").read_text()


def test_smoke_suite_through_two_slurm_jobs_then_scancel_leaves_nothing(cluster, submit_dir):
    assert harness(submit_dir, "keys", "keys").returncode == 0
    a = submit(submit_dir, "slurm-a", "--keys", "keys")
    b = submit(submit_dir, "slurm-b", "--keys", "keys")  # a second job on the same node
    jobs = [a, b]
    try:
        run = harness(submit_dir, "run", str(REPO / "suites" / "smoke.yaml"), "--out", "run", "--no-cache",
                      "--workers", "@slurm-a/endpoints.txt,@slurm-b/endpoints.txt", "--keys", "keys",
                      "--workers-wait", "300", timeout=540)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "26 ok" in run.stderr and (submit_dir / "run" / "report.md").is_file()

        files = {j: submit_dir / f"slurm-{n}" / "endpoints.txt" for j, n in zip(jobs, "ab")}
        ports = []
        for job, f in files.items():
            text = f.read_text()
            assert text.startswith(f"# moe-harness endpoints: slurm job {job}, 1 of 1 daemons answered hello")
            ports += [int(line.rsplit(":", 1)[1]) for line in text.splitlines()[1:]]
        assert len(set(ports)) == 2  # OS-chosen: two jobs on one node, no collision

        pids = {j: daemon_pids(f.parent, j) for j, f in files.items()}
        for job, f in files.items():
            assert len(pids[job]) == 1, list(f.parent.iterdir())
            log = next(f.parent.glob(f"daemon-{job}-*-0.log")).read_text()
            assert "not a git repository" not in log and "Traceback" not in log, log[-2000:]
            cmd = Path(f"/proc/{pids[job][0]}/cmdline").read_text().split("\0")
            assert cmd[1].endswith("/harness") and cmd[2] == "worker"  # the installed entry point
            assert cmd[cmd.index("--threads") + 1] == "1"             # SLURM_CPUS_PER_TASK
    finally:
        subprocess.run(["scancel", *jobs])
        gone_s = wait_gone(jobs, timeout_s=90)
    print(f"scancel: both jobs gone from the queue in {gone_s:.1f} s")
    everything = [p for ps in pids.values() for p in ps]
    assert not [p for p in everything if alive(p)], "daemons left behind after scancel"
    assert not any(f.exists() for f in files.values()), "an endpoints file outlived its job"
    for job, f in files.items():
        assert "worker stopped: SIGTERM" in next(f.parent.glob(f"daemon-{job}-*-0.log")).read_text()


def test_time_limit_warning_stops_the_daemons_before_slurm_kills_them(cluster, submit_dir):
    """--signal: SIGTERM to the daemons --warn-s before the limit; they stop within --grace-s, the job
    ends by itself (no 'CANCELLED DUE TO TIME LIMIT') and takes its endpoints file with it."""
    # slurm sends the warning up to 60 s early: at 2 min - 30 s, it comes 30 to 90 s into the job
    job = submit(submit_dir, "slurm-t", "--insecure", "--time", "2", "--warn-s", "30", "--grace-s", "10")
    out = submit_dir / "slurm-t"
    try:
        t0 = time.monotonic()
        while not (out / "endpoints.txt").exists():
            assert squeue(job) and time.monotonic() - t0 < 60, "the daemon did not come up"
            time.sleep(0.2)
        wait_gone([job], timeout_s=150)
    finally:
        subprocess.run(["scancel", job])
    log = next(out.glob(f"daemon-{job}-*-0.log")).read_text()
    assert "worker stopped: SIGTERM" in log
    assert "TIME LIMIT" not in (out / f"slurm-{job}.out").read_text()
    assert not (out / "endpoints.txt").exists()
