"""harness.coordinator's reliability paths against scripted peers on real ZeroMQ sockets.

The daemon tests (test_coordinator.py, test_faults.py) show the coordinator works with real
daemons; these pin each rule of its docstring (requeue, quarantine, BUSY, late replies, a
restarted worker, the run deadline) in well under a second each, with no model anywhere. A
scripted peer is a ROUTER socket on its own thread speaking moe_schema.protocol; what it does with
a job is the test's choice.
"""

from __future__ import annotations

import time

import pytest
from scripted_peer import DEADLINE_S, FAST, Peer

from harness.coordinator import Coordinator, Job
from moe_schema import protocol




def jobs(*keys, **fields):
    return [Job(k, {"kind": "probe", "n": k}, **fields) for k in keys]


def run(endpoints, job_list, **kw):
    outcomes = {}

    def on_result(job, outcome):
        assert job.key not in outcomes, f"{job.key} reported twice"
        outcomes[job.key] = outcome

    opts = {**FAST, **{k: kw.pop(k) for k in ("max_crashes",) if k in kw}}
    with Coordinator(endpoints, **opts) as c:
        c.hello(timeout_s=5)  # as harness run does: every worker answers before the first dispatch
        summary = c.run(job_list, on_result, deadline_s=kw.pop("deadline_s", DEADLINE_S), **kw)
    return summary, outcomes


def echo(params):
    return ("result", {"n": params["n"]})


def test_every_job_runs_once_and_its_result_comes_back(endpoints, peers):
    peers += [Peer(endpoints[0], echo), Peer(endpoints[1], echo)]
    summary, outcomes = run(endpoints[:2], jobs("a", "b", "c", "d"))
    assert summary.ok == 4 and summary.failed == 0 and summary.not_run == [] and summary.lost == []
    assert {k: o["result"] for k, o in outcomes.items()} == {k: {"n": k} for k in "abcd"}
    assert all(o["status"] == "ok" and o["attempts"] == 1 for o in outcomes.values())
    assert sorted(j["n"] for p in peers for j in p.jobs) == list("abcd")  # each dispatched once


def test_an_error_reply_fails_that_job_only_and_is_not_retried(endpoints, peers):
    peers.append(Peer(endpoints[0], lambda p: ("error", protocol.JOB_FAILED, "no  such\ntask")
                      if p["n"] == "bad" else echo(p)))
    summary, outcomes = run(endpoints[:1], jobs("bad", "good"))
    assert outcomes["bad"] == {"status": "failed", "error": "job failed: no such task",
                               "worker": endpoints[0], "attempts": 1}
    assert outcomes["good"]["status"] == "ok" and summary.ok == 1 and summary.failed == 1
    assert [j["n"] for j in peers[0].jobs].count("bad") == 1


def test_busy_is_requeued_to_another_worker_and_not_counted_as_an_attempt(endpoints, peers):
    peers += [Peer(endpoints[0], lambda p: ("error", protocol.BUSY, "serving someone else")),
              Peer(endpoints[1], echo)]
    summary, outcomes = run(endpoints[:2], jobs("a", "b", "c"))
    assert summary.ok == 3 and summary.failed == 0
    assert {o["worker"] for o in outcomes.values()} == {endpoints[1]}
    assert all(o["attempts"] == 1 for o in outcomes.values())


def test_a_frozen_worker_is_lost_and_its_job_requeued_elsewhere(endpoints, peers):
    frozen = []

    def freeze_once(params):
        if not frozen:
            frozen.append(params["n"])
            return ("freeze", 60, None)
        return echo(params)

    peers += [Peer(endpoints[0], freeze_once), Peer(endpoints[1], echo)]
    t0 = time.monotonic()
    summary, outcomes = run(endpoints[:2], jobs("a", "b"))
    assert time.monotonic() - t0 < 10
    assert summary.ok == 2 and summary.quarantined == []
    assert len(summary.lost) == 1 and summary.lost[0].startswith(f"{endpoints[0]}: silent for")
    lost_job = frozen[0]
    assert outcomes[lost_job]["worker"] == endpoints[1] and outcomes[lost_job]["attempts"] == 2


def test_a_job_that_takes_down_max_crashes_workers_is_quarantined_and_the_run_goes_on(endpoints, peers):
    poison = lambda p: ("freeze", 60, None) if p["n"] == "poison" else echo(p)  # noqa: E731
    peers += [Peer(ep, poison) for ep in endpoints]
    summary, outcomes = run(endpoints, jobs("poison", "a", "b", "c"), max_crashes=2)
    assert summary.quarantined == ["poison"]
    error = outcomes["poison"]["error"]
    assert outcomes["poison"]["status"] == "failed" and error.startswith("quarantined: took down 2 workers (last ")
    assert "silent for" in error
    assert all(outcomes[k]["status"] == "ok" for k in "abc") and summary.ok == 3 and summary.failed == 1
    assert sum(1 for p in peers for j in p.jobs if j["n"] == "poison") == 2  # never a third try


def test_a_late_reply_from_a_worker_that_woke_up_is_dropped_and_counted(endpoints, peers):
    woke = []

    def freeze_then_answer(params):
        if not woke:
            woke.append(params["n"])
            return ("freeze", 1.0, {"n": "stale"})
        return echo(params)

    peers += [Peer(endpoints[0], freeze_then_answer), Peer(endpoints[1], echo)]
    outcomes = {}
    with Coordinator(endpoints[:2], **FAST) as c:
        c.hello(timeout_s=5)
        summary = c.run(jobs("a", "b"), lambda j, o: outcomes.setdefault(j.key, o), deadline_s=DEADLINE_S)
        # the woken worker sends its stale reply once its freeze is over: listen until it came
        deadline = time.monotonic() + 5
        while summary.late_replies == 0 and time.monotonic() < deadline:
            c.hello(timeout_s=0.2)
    assert outcomes[woke[0]]["result"] == {"n": woke[0]}  # the redone result, never the stale one
    assert summary.late_replies == 1 and summary.ok == 2


def test_a_worker_restarted_under_its_job_gets_the_job_requeued(endpoints, peers):
    forgot = []

    def forget_once(params):
        if not forgot:
            forgot.append(params["n"])
            return ("forget",)
        return echo(params)

    peers += [Peer(endpoints[0], forget_once)]
    summary, outcomes = run(endpoints[:1], jobs("a"))
    assert outcomes["a"]["status"] == "ok" and outcomes["a"]["attempts"] == 2
    # it never went silent (the heartbeat told), and the restart is in the summary: a job quarantined
    # for taking down workers names as many as the summary lists
    assert summary.lost == [f"{endpoints[0]}: the worker restarted and no longer runs the job"]


def test_a_job_that_never_finishes_fails_at_the_run_deadline_with_the_reason(endpoints, peers):
    peers += [Peer(endpoints[0], lambda p: ("hang",))]
    t0 = time.monotonic()
    summary, outcomes = run(endpoints[:1], jobs("stuck", "queued"), deadline_s=1.0)
    assert time.monotonic() - t0 < 5
    assert outcomes["stuck"]["status"] == "failed"
    assert outcomes["stuck"]["error"] == f"run deadline of 1 s passed while the job ran on {endpoints[0]}"
    assert outcomes["queued"]["error"].startswith("run deadline of 1 s passed before the job ran")
    assert summary.failed == 2 and summary.not_run == []
    time.sleep(0.1)
    assert peers[0].cancels, "the running job was not cancelled on its worker"


def test_all_workers_lost_fails_the_rest_naming_each(endpoints, peers):
    peers += [Peer(ep, lambda p: ("freeze", 60, None)) for ep in endpoints[:2]]
    summary, outcomes = run(endpoints[:2], jobs("a", "b", "c"), max_crashes=5)
    assert summary.ok == 0 and summary.failed == 3 and len(summary.lost) == 2
    queued = [o for o in outcomes.values() if o["error"].startswith("no worker left: all 2 lost (")]
    assert queued and all(endpoints[0] in o["error"] and endpoints[1] in o["error"] for o in queued)


def test_a_job_needing_a_checkpoint_goes_to_the_worker_that_holds_it(endpoints, peers):
    peers += [Peer(endpoints[0], echo), Peer(endpoints[1], echo, holds_trained=["ckpt-1"])]
    outcomes = {}
    with Coordinator(endpoints[:2], **FAST) as c:
        c.hello(timeout_s=5)  # as harness run does: every worker has said what it holds before the first job
        summary = c.run([Job(f"e{i}", {"kind": "evaluate", "n": i}, needs="ckpt-1") for i in range(3)]
                        + [Job("free", {"kind": "probe", "n": "free"})],
                        lambda j, o: outcomes.setdefault(j.key, o), deadline_s=DEADLINE_S)
    assert summary.ok == 4 and {outcomes[f"e{i}"]["worker"] for i in range(3)} == {endpoints[1]}


@pytest.mark.parametrize("deadline_s", [0, -1.0])
def test_a_deadline_must_be_positive(endpoints, deadline_s):
    with Coordinator(endpoints[:1], **FAST) as c, pytest.raises(ValueError, match="deadline_s must be > 0"):
        c.run(jobs("a"), lambda j, o: None, deadline_s=deadline_s)
