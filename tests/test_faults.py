"""Fault tolerance with real daemons: killed, frozen and crashing workers. Each test starts its own."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from fault_jobs import collect_outcomes, env, probe_spec
from harness.coordinator import Coordinator, Job
from harness.local import start_local_workers

# A run with a deadline of its own: a lost job fails with the reason in two minutes at most (contended
# machine), not at pytest's 600 s timeout.
RUN_DEADLINE_S = 120

FAST = dict(heartbeat_s=0.25, timeout_s=2.0)


@pytest.fixture
def workers3():
    with start_local_workers(3, env=env(), extra_args=("--heartbeat-s", "0.25")) as w:
        yield w


def _kill_when_busy(workers, i: int, sig: int, coord: Coordinator, fired: list):
    """on_progress hook: the first time worker i reports progress, send it ``sig``."""

    def on_progress(job, done, total, note):
        w = next(w for w in coord.workers if w.task is not None and w.task.job.key == job.key)
        if not fired and w.endpoint == workers.endpoints[i]:
            workers.procs[i].send_signal(sig)
            fired.append((time.monotonic(), job.key))

    return on_progress


def test_sigkill_mid_job_every_result_exactly_once(workers3):
    jobs = [Job(f"j{i}", probe_spec("test-stall", seconds=1.0, tag=i)) for i in range(9)]
    outcomes, on_result = collect_outcomes()
    fired: list = []
    with Coordinator(workers3.endpoints, **FAST) as coord:
        summary = coord.run(jobs, on_result, on_progress=_kill_when_busy(workers3, 0, signal.SIGKILL, coord, fired),
                            deadline_s=RUN_DEADLINE_S)
    assert fired, "the kill never happened"
    assert sorted(outcomes) == sorted(j.key for j in jobs)
    assert all(len(v) == 1 and v[0][1]["status"] == "ok" for v in outcomes.values())
    killed_job = fired[0][1]
    (_, o), = outcomes[killed_job]
    assert o["attempts"] == 2 and o["worker"] != workers3.endpoints[0]
    assert summary.ok == 9 and summary.lost[0].startswith(workers3.endpoints[0] + ": silent for")
    assert workers3.procs[0].wait(timeout=5) == -signal.SIGKILL


def test_sigstop_worker_is_lost_in_time_and_its_late_reply_ignored(workers3):
    jobs = [Job(f"j{i}", probe_spec("test-stall", seconds=1.0, tag=i)) for i in range(6)]
    outcomes, on_result = collect_outcomes()
    fired: list = []
    with Coordinator(workers3.endpoints, **FAST) as coord:
        summary = coord.run(jobs, on_result, on_progress=_kill_when_busy(workers3, 1, signal.SIGSTOP, coord, fired),
                            deadline_s=RUN_DEADLINE_S)
        assert fired and all(len(v) == 1 and v[0][1]["status"] == "ok" for v in outcomes.values())
        assert sorted(outcomes) == sorted(j.key for j in jobs)
        frozen_at, frozen_job = fired[0]
        (done_at, o), = outcomes[frozen_job]
        assert o["attempts"] == 2 and o["worker"] != workers3.endpoints[1]
        frozen = coord.workers[1]
        assert frozen.state == "lost" and 2.0 <= frozen.since - frozen_at < 2.0 + 1.0  # timeout_s of silence
        assert done_at > frozen.since
        assert len(summary.lost) == 1 and summary.lost[0].startswith(f"{workers3.endpoints[1]}: silent for 2.")
        # wake it up: it finishes (or is told to cancel) the abandoned job; that reply is dropped
        workers3.procs[1].send_signal(signal.SIGCONT)
        more, on_more = collect_outcomes()
        second = coord.run([Job(f"k{i}", probe_spec("test-stall", seconds=1.5)) for i in range(6)], on_more,
                           deadline_s=RUN_DEADLINE_S)
        assert second.late_replies >= 1 and sorted(more) == [f"k{i}" for i in range(6)]
        assert all(len(v) == 1 for v in outcomes.values())  # nothing of the first run reported again
        assert workers3.endpoints[1] in {v[0][1]["worker"] for v in more.values()}  # back in service


def test_worker_restarted_under_a_job_before_the_timeout(workers3):
    """Killed and back on its endpoint within timeout_s: never silent long enough to be lost, but
    its heartbeat replies say it runs nothing of ours, so the job is rerun."""
    jobs = [Job(f"j{i}", probe_spec("test-stall", seconds=1.0, tag=i)) for i in range(6)]
    outcomes, on_result = collect_outcomes()
    fired: list = []
    restart = threading.Thread(target=lambda: (workers3.kill(2), workers3.restart(2)))
    with Coordinator(workers3.endpoints, heartbeat_s=0.25, timeout_s=30.0) as coord:
        def on_progress(job, done, total, note):
            w = next(w for w in coord.workers if w.task is not None and w.task.job.key == job.key)
            if not fired and w.endpoint == workers3.endpoints[2]:
                fired.append(job.key)
                restart.start()

        t0 = time.monotonic()
        summary = coord.run(jobs, on_result, on_progress=on_progress, deadline_s=RUN_DEADLINE_S)
    restart.join()
    # never silent, so never lost to the timeout; the restart under the job is in the summary
    assert fired and time.monotonic() - t0 < 20
    assert summary.lost == [f"{workers3.endpoints[2]}: the worker restarted and no longer runs the job"]
    assert all(len(v) == 1 and v[0][1]["status"] == "ok" for v in outcomes.values()) and len(outcomes) == 6
    assert outcomes[fired[0]][0][1]["attempts"] == 2


def test_a_job_that_crashes_workers_is_quarantined_and_the_run_finishes(workers3):
    jobs = [Job("crasher", probe_spec("test-crash"))] + [
        Job(f"j{i}", probe_spec("test-stall", seconds=0.3)) for i in range(5)]
    outcomes, on_result = collect_outcomes()
    with Coordinator(workers3.endpoints, max_crashes=2, **FAST) as coord:
        summary = coord.run(jobs, on_result, deadline_s=RUN_DEADLINE_S)
    assert all(len(v) == 1 for v in outcomes.values()) and len(outcomes) == 6
    (_, crash), = outcomes["crasher"]
    assert crash["status"] == "failed" and crash["attempts"] == 2
    assert crash["error"].startswith("quarantined: took down 2 workers (last ipc://")
    assert summary.quarantined == ["crasher"] and summary.ok == 5


def test_all_workers_lost_fails_the_rest_and_keeps_what_finished():
    with start_local_workers(1, env=env()) as workers:
        jobs = [Job(f"j{i}", probe_spec("test-stall", seconds=0.5)) for i in range(3)] + [
            Job("crasher", probe_spec("test-crash"))] + [Job(f"k{i}", probe_spec("test-stall")) for i in range(2)]
        outcomes, on_result = collect_outcomes()
        with Coordinator(workers.endpoints, max_crashes=3, **FAST) as coord:
            summary = coord.run(jobs, on_result, deadline_s=RUN_DEADLINE_S)
    assert [outcomes[f"j{i}"][0][1]["status"] for i in range(3)] == ["ok"] * 3
    for key in ("crasher", "k0", "k1"):
        (_, o), = outcomes[key]
        assert o["status"] == "failed" and o["error"].startswith("no worker left: all 1 lost (ipc://")
    assert summary.ok == 3 and summary.failed == 3
