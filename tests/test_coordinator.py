"""harness.coordinator against healthy real daemons (the shared pool), plus a unit test of placement."""

from __future__ import annotations

import threading
import time

import pytest

from fault_jobs import RawClient, probe_spec
from harness.coordinator import Coordinator, Job, _Queue, _Task

# A run with a deadline of its own: a lost job fails with the reason in two minutes at most (contended
# machine), not at pytest's 600 s timeout.
RUN_DEADLINE_S = 120


def _collect():
    outcomes: dict[str, list] = {}

    def on_result(job, outcome):
        outcomes.setdefault(job.key, []).append(outcome)

    return outcomes, on_result


@pytest.fixture
def coord(daemon_pool):
    c = Coordinator(daemon_pool.endpoints, heartbeat_s=0.25, timeout_s=3.0)
    yield c
    c.close()


def test_hello_lists_every_worker_and_names_the_silent_one(daemon_pool, tmp_path):
    with Coordinator([*daemon_pool.endpoints, f"ipc://{tmp_path}/nobody.sock"], heartbeat_s=0.1,
                     timeout_s=0.5) as c:
        infos = c.hello(timeout_s=1.0)
    assert [i["endpoint"] for i in infos[:2]] == daemon_pool.endpoints
    assert all(i["device"] == "cpu" for i in infos[:2]) and infos[0]["pid"] != infos[1]["pid"]
    assert infos[2] == {"endpoint": f"ipc://{tmp_path}/nobody.sock", "error": "no reply to hello within 1 s"}


def test_run_reports_every_job_exactly_once_with_its_status(coord):
    jobs = [Job(f"ok{i}", probe_spec("test-stall", seconds=0.3, tag=i), affinity=f"b{i % 2}") for i in range(6)]
    jobs += [Job("fails", probe_spec("test-fail")), Job("oom", probe_spec("test-oom"))]
    outcomes, on_result = _collect()
    progress = []
    summary = coord.run(jobs, on_result, on_progress=lambda job, done, total, note: progress.append(job.key),
                        deadline_s=RUN_DEADLINE_S)
    assert sorted(outcomes) == sorted(j.key for j in jobs) and all(len(v) == 1 for v in outcomes.values())
    for i in range(6):
        (o,) = outcomes[f"ok{i}"]
        assert o["status"] == "ok" and o["result"]["probe"]["tag"] == i and o["attempts"] == 1
        assert o["worker"] in coord.workers[0].endpoint + coord.workers[1].endpoint
    assert outcomes["fails"][0] == {"status": "failed", "error": "job failed: ValueError: boom second line",
                                    "worker": outcomes["fails"][0]["worker"], "attempts": 1}  # not retried
    assert outcomes["oom"][0]["error"].startswith("out of memory: ")
    assert (summary.ok, summary.failed, summary.not_run, summary.lost) == (6, 2, [], [])
    assert {w for v in outcomes.values() for w in [v[0]["worker"]]} == {w.endpoint for w in coord.workers}
    assert set(progress) <= {f"ok{i}" for i in range(6)} and progress


def test_busy_worker_gets_its_jobs_requeued_not_failed(coord, daemon_pool):
    other = RawClient(daemon_pool.endpoints[0])  # another user keeps worker 0 busy for a while
    other.request("probe", probe_spec("test-stall", seconds=2.0))
    time.sleep(0.2)
    outcomes, on_result = _collect()
    jobs = [Job(f"j{i}", probe_spec("test-stall", seconds=0.2)) for i in range(4)]
    summary = coord.run(jobs, on_result, deadline_s=RUN_DEADLINE_S)
    assert summary.ok == 4 and all(v[0]["status"] == "ok" for v in outcomes.values())
    assert all(v[0]["attempts"] == 1 for v in outcomes.values())
    assert {v[0]["worker"] for v in outcomes.values()} == {daemon_pool.endpoints[1]}
    other.recv(5)
    other.close()


def test_stop_lets_running_jobs_finish_and_dispatches_nothing_new(coord):
    stop = threading.Event()
    outcomes, on_result = _collect()

    def on_result_then_stop(job, outcome):
        on_result(job, outcome)
        stop.set()  # first Ctrl-C arrives after the first result

    jobs = [Job(f"j{i}", probe_spec("test-stall", seconds=0.6)) for i in range(8)]
    summary = coord.run(jobs, on_result_then_stop, stop=stop, deadline_s=RUN_DEADLINE_S)
    finished = sorted(outcomes)
    assert 2 <= len(finished) <= 4 and all(v[0]["status"] == "ok" for v in outcomes.values())
    assert sorted(summary.not_run + finished) == sorted(j.key for j in jobs)


def test_cancel_cancels_running_jobs(coord):
    cancel = threading.Event()
    threading.Timer(0.8, cancel.set).start()  # the second Ctrl-C
    outcomes, on_result = _collect()
    t0 = time.monotonic()
    summary = coord.run([Job(f"j{i}", probe_spec("test-stall", seconds=60)) for i in range(3)], on_result,
                        stop=threading.Event(), cancel=cancel, deadline_s=RUN_DEADLINE_S)
    assert time.monotonic() - t0 < 5
    assert len(outcomes) == 2 and all(v[0] == {"status": "failed", "error": "cancelled by the user",
                                               "worker": v[0]["worker"], "attempts": 1}
                                       for v in outcomes.values())
    assert len(summary.not_run) == 1


def test_interrupt_escalates(daemon_pool):
    with Coordinator(daemon_pool.endpoints) as c:
        c.interrupt()
        assert c._stop.is_set() and not c._cancel.is_set()
        c.interrupt()
        assert c._cancel.is_set()


def test_no_worker_left_fails_the_rest_with_the_reason(tmp_path):
    with Coordinator([f"ipc://{tmp_path}/a.sock"], heartbeat_s=0.1, timeout_s=0.3, connect_timeout_s=0.3) as c:
        outcomes, on_result = _collect()
        summary = c.run([Job("a", probe_spec("test-fail")), Job("b", probe_spec("test-fail"))], on_result,
                        deadline_s=RUN_DEADLINE_S)
    assert summary.failed == 2 and summary.not_run == []
    assert outcomes["a"][0]["error"].startswith("no worker left: all 1 lost (ipc://")
    assert "no reply to hello within 0.3 s" in outcomes["a"][0]["error"]


@pytest.mark.parametrize("kwargs, text", [
    (dict(endpoints=[]), "no worker endpoints"),
    (dict(endpoints=["ipc:///a", "ipc:///a"]), "duplicate"),
    (dict(endpoints=["localhost:5555"]), "endpoint 'localhost:5555'"),
    (dict(endpoints=["ipc:///a"], heartbeat_s=2.0, timeout_s=1.0), "heartbeat_s"),
    (dict(endpoints=["ipc:///a"], max_crashes=0), "max_crashes"),
])
def test_bad_arguments_are_named(kwargs, text):
    with pytest.raises(ValueError, match=text):
        Coordinator(**kwargs)


def test_bad_jobs_are_named(tmp_path):
    with Coordinator([f"ipc://{tmp_path}/a.sock"]) as c:
        with pytest.raises(ValueError, match="job x: spec.kind"):
            c.run([Job("x", {"kind": "sleep"})], lambda j, o: None)
        with pytest.raises(ValueError, match="unique"):
            c.run([Job("x", probe_spec("t")), Job("x", probe_spec("t"))], lambda j, o: None)


def test_placement_prefers_held_builds_then_spreads(tmp_path):
    """Unit test of the placement rule alone (no sockets used)."""
    with Coordinator([f"ipc://{tmp_path}/a.sock", f"ipc://{tmp_path}/b.sock"]) as c:
        w0, w1 = c.workers
        for w in (w0, w1):
            w.state = "idle"
        queue = _Queue([_Task(Job("a1", {}, "A")), _Task(Job("a2", {}, "A")), _Task(Job("b1", {}, "B")),
                       _Task(Job("c1", {}, "C"))])
        w1.holds = {"B"}
        assert c._pick(w1, queue).job.key == "b1"   # the build it holds
        w1.holds = {"B"}
        assert c._pick(w0, queue).job.key == "a1"   # a build nobody holds
        w0.holds = {"A"}
        assert c._pick(w1, queue).job.key == "c1"   # spread: not A, which w0 holds
        assert c._pick(w1, queue).job.key == "a2"   # nothing else left: take it anyway


def test_placement_sends_a_job_to_a_worker_that_has_what_it_needs(tmp_path):
    """A job needing a trained checkpoint goes only to a live worker that has it; if none has it,
    anyone may try (and fail with the reason)."""
    with Coordinator([f"ipc://{tmp_path}/a.sock", f"ipc://{tmp_path}/b.sock"]) as c:
        w0, w1 = c.workers
        for w in (w0, w1):
            w.state = "idle"
        queue = _Queue([_Task(Job("t1", {}, "A", needs="k1")), _Task(Job("t2", {}, "A", needs="k2")),
                       _Task(Job("free", {}, "B"))])
        w0.has = {"k1"}
        assert c._pick(w1, queue).job.key == "t2"    # nobody has k2: w1 may take it
        assert c._pick(w1, queue).job.key == "free"  # not t1: w0 has k1
        assert c._pick(w1, queue) is None and len(queue) == 1
        assert c._pick(w0, queue).job.key == "t1"
        queue.append(_Task(Job("t3", {}, "A", needs="k1")))
        w0.state = "lost"
        assert c._pick(w1, queue).job.key == "t3"    # the only holder is lost: w1 may try
        c._hello_reply(w1, {"holds": {"trained": ["k9"]}}, 0.0)  # a worker lists what it keeps
        assert "k9" in w1.has
