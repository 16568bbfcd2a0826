"""The hand-off between a cluster job and `harness run --workers @FILE` (harness/endpoints.py):
the file is written once the daemons answer and lists only those, names its job, goes when the job
does; a run waits for it, and refuses a missing, empty or stale one in one line, before its run
folder exists, never starting local daemons instead. `--keys` is for tcp workers only."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness import endpoints
from harness.cli import main as harness

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "suites" / "smoke.yaml"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys") / "keys"
    assert harness(["keys", str(d)]) == 0
    return d


@pytest.fixture(scope="module")
def curve_daemon(keys, tmp_path_factory):
    """One real daemon, CURVE on, on a loopback port the OS picks: (endpoint, pid), as its log says."""
    log = tmp_path_factory.mktemp("daemon") / "daemon.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "worker", "--bind", "tcp://127.0.0.1:*",
                                 "--keys", str(keys), "--threads", "1"], stdout=out, stderr=subprocess.STDOUT,
                                env=env, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while (ep := endpoints.ready_endpoint(log, "unused")) is None:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield ep, log
    proc.terminate()
    proc.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def quick_hello(monkeypatch):
    monkeypatch.setattr(endpoints, "HELLO_TIMEOUT_S", 1.0)


@pytest.fixture
def squeue(tmp_path, monkeypatch):
    """A stand-in `squeue` on PATH: ``squeue(state)`` makes it report that state for any job."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")

    def set_state(state: str):
        (bin_dir / "squeue").write_text(f"#!/bin/sh\necho '{state}'\n" if state else "#!/bin/sh\nexit 0\n")
        (bin_dir / "squeue").chmod(0o755)
    return set_state


def run_refused(capsys, tmp_path, *args) -> str:
    """`harness run smoke ARGS` must exit 2 with one line, leave no run folder, start no daemon."""
    out = tmp_path / "run"
    assert harness(["run", str(SMOKE), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert not out.exists() and "starting" not in err
    lines = [line for line in err.strip().splitlines() if not line.startswith("waiting up to")]
    assert len(lines) == 1 and lines[0].startswith(("harness run: --workers", "harness run: --keys")), err
    return lines[0]


# --- refused hand-offs ------------------------------------------------------------------------------
def test_missing_file_is_waited_for_then_refused(tmp_path, capsys):
    t0 = time.monotonic()
    line = run_refused(capsys, tmp_path, "--workers", f"@{tmp_path / 'none.txt'}", "--workers-wait", "1")
    assert time.monotonic() - t0 >= 1
    assert f"--workers @{tmp_path / 'none.txt'}: no such file after waiting 1 s" in line


@pytest.mark.parametrize("text", ["", "\n\n", "# moe-harness endpoints: slurm job 7, 0 of 2 daemons answered\n"])
def test_empty_file_is_refused_never_local_daemons(tmp_path, capsys, text):
    (tmp_path / "ep.txt").write_text(text)
    line = run_refused(capsys, tmp_path, "--workers", f"@{tmp_path / 'ep.txt'}")
    assert "lists no endpoints" in line and "refusing to start local daemons" in line


def test_workers_naming_nothing_is_refused(tmp_path, capsys):
    assert "names no endpoint" in run_refused(capsys, tmp_path, "--workers", ",")


def test_a_malformed_endpoint_is_one_line(tmp_path, capsys):
    assert "unsupported transport 'udp'" in run_refused(capsys, tmp_path, "--workers", "udp://x:1")


@pytest.mark.parametrize("state, said", [("", "which is no longer in the queue"), ("COMPLETING", "which is completing")])
def test_file_of_a_job_that_is_not_running_is_stale(tmp_path, capsys, squeue, state, said):
    squeue(state)
    endpoints.write(tmp_path / "ep.txt", "77", [f"tcp://127.0.0.1:{free_port()}"], 1)
    line = run_refused(capsys, tmp_path, "--workers", f"@{tmp_path / 'ep.txt'}")
    assert f"stale: it names slurm job 77, {said}; submit a new job or remove the file" in line


def test_file_whose_daemons_are_gone_is_stale(tmp_path, capsys, squeue, quick_hello):
    """The job still runs (or there is no squeue to ask) but nothing answers: refused, not 30 s per job."""
    squeue("RUNNING")
    endpoints.write(tmp_path / "ep.txt", "78", [f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"], 2)
    line = run_refused(capsys, tmp_path, "--workers", f"@{tmp_path / 'ep.txt'}")
    assert "stale: none of slurm job 78's 2 daemon(s) answered hello within 1 s" in line


# --- files and workers that could be forged (issue 25, finding 2) ----------------------------------------
TINY = ("name: one\nmodels:\n  - name: tiny\n    config: {model_type: llama, hidden_size: 32, intermediate_size: 64, "
        "num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 64}\n"
        "tasks: []\nprobes: []\n")


@pytest.fixture(scope="module")
def fake_daemon(other_user):
    """`nobody`'s 20-line fake daemon on a loopback port: answers hello, forges every job's result."""
    from other_user import FAKE_DAEMON

    proc = other_user.popen(FAKE_DAEMON)
    port = proc.stdout.readline().strip()
    assert port.isdigit(), proc.stderr.read()
    yield f"tcp://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def tiny_suite(tmp_path) -> tuple[Path, str]:
    """A one-job suite (describe) and that job's key."""
    from harness import plan as planner
    from harness.suite import load

    suite = tmp_path / "one.yaml"
    suite.write_text(TINY)
    (job,) = planner.expand(load(suite))[1]
    return suite, job.key


def test_an_endpoints_file_another_user_wrote_is_refused(tmp_path, capsys, other_user, fake_daemon):
    """`nobody` writes endpoints.txt into a world-writable --out folder, naming a fake daemon: the run
    refuses the file in one line, before its run folder exists, and nothing reaches the cache."""
    shared = other_user.home / "shared-out"
    shared.mkdir(exist_ok=True)
    shared.chmod(0o1777)
    forged = shared / "endpoints.txt"
    wrote = other_user.run(f"open({str(forged)!r}, 'w').write({fake_daemon + chr(10)!r})\n")
    assert wrote.returncode == 0 and forged.stat().st_uid == other_user.uid, wrote.stderr
    suite, key = tiny_suite(tmp_path)
    out = tmp_path / "run"
    assert harness(["run", str(suite), "--out", str(out), "--workers", f"@{forged}", "--no-report"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"harness run: --workers @{forged}: refusing it: owned by uid {other_user.uid}, not by you "
                    f"(uid {os.geteuid()}); anyone who could write it chooses where your jobs go")
    assert not out.exists() and not (Path(os.environ["MOE_HARNESS_HOME"]) / "results" / f"{key}.json").exists()


def test_an_endpoints_file_others_could_write_is_refused(tmp_path, capsys):
    path = tmp_path / "ep.txt"
    endpoints.write(path, "7", ["tcp://127.0.0.1:1"], 1)
    path.chmod(0o666)
    line = run_refused(capsys, tmp_path, "--workers", f"@{path}")
    assert line == (f"harness run: --workers @{path}: refusing it: writable by group or others (mode 0666); "
                    f"`chmod go-w {path}`; anyone who could write it chooses where your jobs go")


def test_client_keys_others_could_read_are_refused_before_anything_runs(tmp_path, capsys):
    k = tmp_path / "k"
    assert harness(["keys", str(k)]) == 0
    (k / "client" / "client.key_secret").chmod(0o640)
    line = run_refused(capsys, tmp_path, "--workers", "tcp://127.0.0.1:1", "--keys", str(k))
    assert line == (f"harness run: --keys: {k}/client/client.key_secret: a secret readable by others (mode 0640); "
                    f"`chmod 600 {k}/client/client.key_secret`")


def test_results_of_a_worker_that_did_not_authenticate_never_reach_the_cache(tmp_path, capsys, other_user,
                                                                               fake_daemon, keys, quick_hello):
    """A file of our own naming a port another user's process now holds (a stale file): without keys the
    run goes on, but the forged result stays in the run folder, marked, and is never reused from the
    cache; with keys the impostor cannot answer hello at all."""
    from harness.store import Store

    path = tmp_path / "ep.txt"
    path.write_text(f"{fake_daemon}\n")
    suite, key = tiny_suite(tmp_path)
    out = tmp_path / "run"
    assert harness(["run", str(suite), "--out", str(out), "--workers", f"@{path}", "--no-report",
                    "--timeout", "5"]) == 0
    assert f"worker {fake_daemon} did not authenticate (tcp without --keys, or a socket not ours): its results " \
           "stay in this run folder, out of the shared cache" in " ".join(capsys.readouterr().err.split())
    cache = Path(os.environ["MOE_HARNESS_HOME"]) / "results"
    assert not (cache / f"{key}.json").exists()
    record = json.loads((out / "jobs" / f"{key}.json").read_text())
    assert record["params"]["total"] == 123456789 and record["authenticated"] is False
    assert Store(tmp_path / "later", cache_dir=cache).done(key) is None  # a later run runs it again
    capsys.readouterr()
    line = run_refused(capsys, tmp_path / "keyed", "--workers", f"@{path}", "--keys", str(keys))
    assert "stale: none of its 1 daemon(s) answered hello within 1 s" in line


# --- hand-offs that work ------------------------------------------------------------------------------
def test_a_file_written_while_the_run_waits_is_used(tmp_path, curve_daemon, keys, squeue):
    squeue("RUNNING")
    ep, _ = curve_daemon
    path = tmp_path / "ep.txt"
    threading.Timer(1.0, endpoints.write, (path, "90", [ep], 1)).start()
    said = []
    assert endpoints.read_for_run(path, 30, keys, say=said.append) == [ep]
    assert said and "waiting up to 30 s" in said[0]


def test_curve_daemons_answer_only_with_keys(tmp_path, curve_daemon, keys, quick_hello):
    ep, _ = curve_daemon
    (tmp_path / "ep.txt").write_text(f"{ep}\n")  # hand-written: no job named, checked by hello alone
    assert endpoints.read_for_run(tmp_path / "ep.txt", 0, keys) == [ep]
    with pytest.raises(endpoints.EndpointsError, match=r"answered hello within 1 s \(CURVE daemons need --keys\)"):
        endpoints.read_for_run(tmp_path / "ep.txt", 0, None)


def test_collect_lists_only_the_daemons_that_answered(tmp_path, curve_daemon, keys, quick_hello):
    ep, log = curve_daemon
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "daemon-5-node-a-0.log").write_text(log.read_text())
    dead = free_port()
    (logs / "daemon-5-node-b-1.log").write_text(f"worker ready: tcp://0.0.0.0:{dead} device=cpu pid=1\n")
    (logs / "daemon-6-node-a-0.log").write_text(log.read_text())  # another job's daemon: not ours
    said = []  # the job holds the server folder only: each daemon is checked by a CURVE handshake
    up = endpoints.collect(logs, "5", 3, tmp_path / "ep.txt", keys / "server", timeout_s=1, say=said.append)
    assert up == [ep]
    text = (tmp_path / "ep.txt").read_text()
    assert re.match(r"# moe-harness endpoints: slurm job 5, 1 of 3 daemons answered hello at \S+Z\n", text)
    assert endpoints.parse(text) == [ep] and endpoints.job_of(text) == "5"
    assert said == [f"harness endpoints: 2 of 3 daemons of job 5 did not come up (see {logs}/daemon-5-*.log)"]
    # the wildcard bind is reported under the node's name, as other hosts reach it
    assert endpoints.ready_endpoint(logs / "daemon-5-node-b-1.log", "node-b") == f"tcp://node-b:{dead}"


def test_collect_writes_nothing_when_no_daemon_answered(tmp_path, quick_hello):
    (tmp_path / f"daemon-9-n-0.log").write_text(f"worker ready: tcp://127.0.0.1:{free_port()} device=cpu pid=1\n")
    assert harness(["endpoints", "collect", "--file", str(tmp_path / "ep.txt"), "--job", "9",
                    "--logs", str(tmp_path), "--expect", "1", "--timeout", "1"]) == 1
    assert not (tmp_path / "ep.txt").exists()


def test_a_job_removes_only_its_own_file(tmp_path):
    """Two jobs, one --out: the older job ending leaves the newer job's file in place."""
    path = tmp_path / "ep.txt"
    endpoints.write(path, "2", ["tcp://n:1"], 1)
    assert harness(["endpoints", "remove", "--file", str(path), "--job", "1"]) == 0 and path.exists()
    assert harness(["endpoints", "remove", "--file", str(path), "--job", "2"]) == 0 and not path.exists()
    assert harness(["endpoints", "remove", "--file", str(path), "--job", "2"]) == 0  # already gone: fine


@pytest.mark.slow
def test_keys_leave_local_daemons_alone(tmp_path, keys, capsys):
    """`--keys` without tcp workers: the local ipc daemons answer (CURVE is for tcp only)."""
    suite = tmp_path / "one.yaml"
    suite.write_text("name: one\nmodels:\n  - name: tiny\n    config: {model_type: llama, hidden_size: 32, "
                     "intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 4, num_key_value_heads: 2, "
                     "max_position_embeddings: 64}\ntasks: []\nprobes: []\n")
    out = tmp_path / "run"
    assert harness(["run", str(suite), "--out", str(out), "--keys", str(keys), "--no-report", "--threads", "1",
                    "--timeout", "5"]) == 0
    err = capsys.readouterr().err
    assert "--keys: no tcp workers; local daemons listen on ipc sockets, without CURVE" in err
    assert "1 ok" in err
