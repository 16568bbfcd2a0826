"""The coordinator's rules that a user sees in a run: what each outcome says, progress, stopping and
cancelling, workers serving someone else, and the checks on what a run is given.

Scripted peers (tests/scripted_peer.py) on real ZeroMQ sockets stand in for daemons, so each rule
takes well under a second; tests/test_coordinator.py shows the same rules with real daemons.
"""

from __future__ import annotations

import threading
import time

import pytest
from scripted_peer import DEADLINE_S, FAST, Peer

from harness.coordinator import Coordinator, Job
from moe_schema import protocol




def probe(key, **fields):
    return Job(key, {"kind": "probe", "variant": {"name": f"v-{key}"}, "n": key}, **fields)


def collect(coord, job_list, **kw):
    outcomes, progress = {}, []
    summary = coord.run(job_list, lambda job, o: outcomes.__setitem__(job.key, o),
                        on_progress=lambda job, *rest: progress.append((job.key, *rest)),
                        deadline_s=kw.pop("deadline_s", DEADLINE_S), **kw)
    return summary, outcomes, progress


def test_each_outcome_names_its_status_worker_and_attempts(endpoints, peers):
    def on_job(params):
        if params["n"] == "bad":
            return ("error", protocol.INVALID_PARAMS, "variant.build:\n  no such\tbuild")
        if params["n"] == "odd":
            return ("error", 12345, "strange")
        return ("result", {"n": params["n"]})

    peers.append(Peer(endpoints[0], on_job))
    with Coordinator(endpoints[:1], **FAST) as c:
        c.hello(timeout_s=5)
        summary, outcomes, _ = collect(c, [probe("a"), probe("bad"), probe("odd")])
    assert outcomes["a"] == {"status": "ok", "result": {"n": "a"}, "worker": endpoints[0], "attempts": 1}
    # the daemon's message on one line, after the error's name
    assert outcomes["bad"] == {"status": "failed", "error": "invalid params: variant.build: no such build",
                               "worker": endpoints[0], "attempts": 1}
    assert outcomes["odd"]["error"] == "12345: strange"  # a code without a name is shown as a number
    assert (summary.ok, summary.failed, summary.not_run, summary.lost, summary.quarantined,
            summary.late_replies) == (1, 2, [], [], [], 0)
    assert 0 <= summary.elapsed_s < 10


def test_progress_reaches_the_caller_for_our_jobs_only(endpoints, peers):
    notes = [{"done": 2, "total": 5, "note": "loading"}, {}, {"id": 7, "done": 9}, {"id": "other:probe:1"}]
    peers.append(Peer(endpoints[0], lambda params: ("progress", notes, {"ok": True})))
    with Coordinator(endpoints[:1], **FAST) as c:
        c.hello(timeout_s=5)
        summary, outcomes, progress = collect(c, [probe("a")])
    assert outcomes["a"]["status"] == "ok"
    # fields a worker leaves out read as 0 / 0 / ""; a notification naming no job of ours is dropped
    assert progress == [("a", 2, 5, "loading"), ("a", 0, 0, "")]


def test_a_worker_serving_someone_else_is_not_given_jobs_until_it_is_free(endpoints, peers):
    busy = Peer(endpoints[0], lambda params: ("result", {"by": 0}), hello_busy="someone-else:probe:1")
    free = Peer(endpoints[1], lambda params: ("result", {"by": 1}))
    peers += [busy, free]
    with Coordinator(endpoints[:2], **FAST) as c:
        c.hello(timeout_s=5)
        summary, outcomes, _ = collect(c, [probe(k) for k in "abcd"])
        assert {o["worker"] for o in outcomes.values()} == {endpoints[1]}
        assert busy.jobs == [] and busy.cancels == []  # not ours to cancel
        assert c.workers[0].state == "held"
        busy.hello_busy = None  # it finished the other client's job: rechecked with hello, then used
        deadline = time.monotonic() + 5
        while c.workers[0].state != "idle" and time.monotonic() < deadline:
            c._check_workers(time.monotonic())
            c._poll(0.05)
        assert c.workers[0].state == "idle"
    assert summary.ok == 4


def test_a_job_of_ours_still_running_on_a_worker_that_came_back_is_cancelled(endpoints, peers):
    with Coordinator(endpoints[:1], **FAST) as c:
        stale = f"{c._prefix}:probe:1"
        peer = Peer(endpoints[0], lambda params: ("result", {}), hello_busy=stale)
        peers.append(peer)
        c.hello(timeout_s=5)
        deadline = time.monotonic() + 5
        while not peer.cancels and time.monotonic() < deadline:
            c._poll(0.05)
        assert peer.cancels == [stale]
        assert c.workers[0].state == "held"


def test_cancel_sends_the_running_jobs_id_and_reports_it_cancelled(endpoints, peers):
    peer = Peer(endpoints[0], lambda params: ("hang",), confirm_cancel=True)
    peers.append(peer)
    cancel = threading.Event()
    with Coordinator(endpoints[:1], **FAST) as c:
        c.hello(timeout_s=5)
        threading.Timer(0.3, cancel.set).start()
        summary, outcomes, _ = collect(c, [probe("a"), probe("b")], cancel=cancel)
    assert outcomes == {"a": {"status": "failed", "error": "cancelled by the user", "worker": endpoints[0],
                              "attempts": 1}}
    assert len(peer.cancels) == 1 and peer.cancels[0].startswith(f"{c._prefix}:probe:")
    assert summary.not_run == ["b"] and summary.failed == 1


def test_a_cancel_the_worker_never_confirms_fails_the_job_after_the_timeout(endpoints, peers):
    peers.append(Peer(endpoints[0], lambda params: ("hang",)))
    with Coordinator(endpoints[:1], **FAST) as c:
        c.hello(timeout_s=5)
        threading.Timer(0.3, c.cancel_all).start()
        t0 = time.monotonic()
        summary, outcomes, _ = collect(c, [probe("a")])
    assert outcomes["a"]["error"] == "cancelled (the worker did not confirm)"
    assert outcomes["a"]["worker"] == endpoints[0]
    assert time.monotonic() - t0 < 5


def test_stopping_finishes_the_running_job_and_dispatches_nothing_new(endpoints, peers):
    stop = threading.Event()

    def on_job(params):
        stop.set()
        return ("freeze", 0.3, {"n": params["n"]})  # still running when the stop comes

    peers.append(Peer(endpoints[0], on_job))
    with Coordinator(endpoints[:1], heartbeat_s=0.05, timeout_s=2.0, check_result=None) as c:
        c.hello(timeout_s=5)
        summary, outcomes, _ = collect(c, [probe("a"), probe("b"), probe("c")], stop=stop)
    assert list(outcomes) == ["a"] and outcomes["a"]["status"] == "ok", outcomes
    assert summary.not_run == ["b", "c"]


def test_interrupt_stops_first_and_cancels_the_second_time(endpoints):
    with Coordinator(endpoints[:1], **FAST) as c:
        c.interrupt()
        assert c._stop.is_set() and not c._cancel.is_set()
        c.interrupt()
        assert c._cancel.is_set()


def test_a_worker_lost_after_a_stop_fails_its_job_instead_of_requeueing_it(endpoints, peers):
    stop = threading.Event()

    def on_job(params):
        stop.set()
        return ("freeze", 5.0, None)  # silent past timeout_s: lost while the run is stopping

    peers.append(Peer(endpoints[0], on_job))
    with Coordinator(endpoints[:1], **FAST) as c:
        c.hello(timeout_s=5)
        summary, outcomes, _ = collect(c, [probe("a")], stop=stop)
    error = outcomes["a"]["error"]
    assert error.startswith(f"worker lost after the run was stopped ({endpoints[0]}: silent for ")
    assert outcomes["a"]["worker"] == endpoints[0] and outcomes["a"]["status"] == "failed"
    assert summary.lost and summary.lost[0].startswith(f"{endpoints[0]}: silent for ")


def test_a_dead_process_is_lost_at_once_with_what_it_was_running(endpoints, peers):
    doomed = Peer(endpoints[0], lambda params: ("hang",))
    peers += [doomed, Peer(endpoints[1], lambda params: ("result", {"n": params["n"]}))]
    dead = threading.Event()
    lost = []

    def exited(endpoint):
        return ("exited with status 9", "log: oom") if endpoint == endpoints[0] and dead.is_set() else None

    with Coordinator(endpoints[:2], heartbeat_s=0.05, timeout_s=30.0, check_result=None, exited=exited) as c:
        c.on_lost = lambda ep, reason: lost.append((ep, reason))
        c.hello(timeout_s=5)
        threading.Timer(0.3, lambda: (doomed.stop(), dead.set())).start()  # the process ends
        t0 = time.monotonic()
        job = Job("a", {"kind": "probe", "variant": {"name": "moe@topk"}, "n": "a"}, affinity="b1")
        summary, outcomes, _ = collect(c, [job])
    assert time.monotonic() - t0 < 10, outcomes["a"]["error"][-60:]  # not the 30 s heartbeat timeout
    assert lost == [(endpoints[0], "exited with status 9 while running probe moe@topk; log: oom")]
    assert outcomes["a"]["status"] == "ok" and outcomes["a"]["worker"] == endpoints[1]
    assert outcomes["a"]["attempts"] == 2


@pytest.mark.parametrize("kwargs, text", [
    (dict(endpoints=[]), "Coordinator: no worker endpoints given"),
    (dict(endpoints=["ipc:///tmp/a", "ipc:///tmp/a"]), "Coordinator: duplicate worker endpoints in "),
    (dict(heartbeat_s=0), "Coordinator: need 0 < heartbeat_s (0) < timeout_s (10.0)"),
    (dict(heartbeat_s=2.0, timeout_s=2.0), "Coordinator: need 0 < heartbeat_s (2.0) < timeout_s (2.0)"),
    (dict(max_crashes=0), "Coordinator: max_crashes must be >= 1, got 0"),
])
def test_bad_coordinator_arguments_are_named(kwargs, text):
    kwargs = {"endpoints": ["ipc:///tmp/coordinator-rules-x"], **kwargs}
    with pytest.raises(ValueError) as info:
        Coordinator(kwargs.pop("endpoints"), **kwargs)
    assert str(info.value).startswith(text)


def test_defaults_a_user_gets():
    with Coordinator(["ipc:///tmp/coordinator-rules-d"]) as c:
        assert (c.heartbeat_s, c.timeout_s, c.max_crashes) == (1.0, 10.0, 3)
        assert c.connect_timeout_s == 30.0  # a daemon may still be importing torch
    with Coordinator(["ipc:///tmp/coordinator-rules-d"], timeout_s=20.0) as c:
        assert c.connect_timeout_s == 60.0
    with Coordinator(["ipc:///tmp/coordinator-rules-d"], connect_timeout_s=2.5) as c:
        assert c.connect_timeout_s == 2.5


def test_bad_runs_are_refused_before_anything_is_sent(endpoints, peers):
    peer = Peer(endpoints[0], lambda params: ("result", {}))
    peers.append(peer)
    with Coordinator(endpoints[:1], **FAST) as c:
        c.hello(timeout_s=5)
        with pytest.raises(ValueError, match=r"^Coordinator.run: job keys must be unique$"):
            c.run([probe("a"), probe("a")], lambda *a: None)
        with pytest.raises(ValueError, match=r"^job b: spec.kind must be one of describe, evaluate, probe, train$"):
            c.run([probe("a"), Job("b", {"kind": "bake"})], lambda *a: None)
        with pytest.raises(ValueError, match=r"^job c: spec.kind"):
            c.run([Job("c", ["probe"])], lambda *a: None)
        with pytest.raises(ValueError, match=r"^Coordinator.run: deadline_s must be > 0, got 0$"):
            c.run([probe("a")], lambda *a: None, deadline_s=0)
    assert peer.jobs == []


def test_hello_names_the_worker_that_did_not_answer(endpoints, peers):
    peers.append(Peer(endpoints[0], lambda params: ("result", {}), holds_trained=["t1", 5]))
    with Coordinator(endpoints[:2], **FAST) as c:
        infos = c.hello(timeout_s=0.5)
        assert infos[0]["endpoint"] == endpoints[0] and infos[0]["busy"] is None
        assert infos[1] == {"endpoint": endpoints[1], "error": "no reply to hello within 0.5 s"}
        assert c.workers[0].has == {"t1"}  # what it says it keeps, strings only
        assert c.workers[0].state == "idle" and c.workers[1].state == "connecting"


def test_a_worker_that_never_answers_hello_is_lost_after_the_connect_timeout(endpoints, peers):
    peers.append(Peer(endpoints[0], lambda params: ("freeze", 1.0, {"n": params["n"]})))  # outlasts 0.6 s
    with Coordinator(endpoints[:2], heartbeat_s=0.05, timeout_s=2.0, check_result=None, connect_timeout_s=0.6) as c:
        summary, outcomes, _ = collect(c, [probe("a")])
        assert c.workers[1].reason == "no reply to hello within 0.6 s"
    assert outcomes["a"]["status"] == "ok"
    assert summary.lost == [f"{endpoints[1]}: no reply to hello within 0.6 s"]


def test_at_the_deadline_the_running_job_is_cancelled_by_its_id_and_the_queued_ones_name_the_workers(endpoints,
                                                                                                      peers):
    stuck = Peer(endpoints[0], lambda params: ("hang",))
    peers += [stuck, Peer(endpoints[1], lambda params: ("hang",))]
    with Coordinator(endpoints[:2], **FAST) as c:
        c.hello(timeout_s=5)
        summary, outcomes, _ = collect(c, [probe("a"), probe("b"), probe("c")], deadline_s=0.5)
        assert [w.state for w in c.workers] == ["idle", "idle"]
        assert all(w.task is None for w in c.workers)
    assert outcomes["a"] == {"status": "failed", "worker": endpoints[0], "attempts": 1,
                             "error": f"run deadline of 0.5 s passed while the job ran on {endpoints[0]}"}
    assert outcomes["b"]["worker"] == endpoints[1]
    assert outcomes["c"] == {"status": "failed", "worker": None, "attempts": 0,
                             "error": f"run deadline of 0.5 s passed before the job ran (workers: "
                                      f"{endpoints[0]} idle, {endpoints[1]} idle)"}
    time.sleep(0.2)
    assert len(stuck.cancels) == 1 and stuck.cancels[0].startswith(f"{c._prefix}:probe:")
    assert summary.failed == 3 and summary.not_run == []


def test_a_reply_from_the_workers_own_dispatch_only_counts(endpoints, peers):
    """Worker A froze and was given up on; the job went to B. A wakes and replies while B still
    runs it: A's reply is late and dropped, B's is the job's result."""
    served = []

    def a(params):
        served.append("a")
        return ("freeze", 0.9, {"by": "A"})

    peers += [Peer(endpoints[0], a), Peer(endpoints[1], lambda params: ("later", 1.6, {"by": "B"}))]
    with Coordinator(endpoints[:2], **FAST) as c:
        c.hello(timeout_s=5)
        summary, outcomes, _ = collect(c, [probe("j")])
    assert served == ["a"]
    assert outcomes["j"]["result"] == {"by": "B"} and outcomes["j"]["worker"] == endpoints[1]
    assert outcomes["j"]["attempts"] == 2 and summary.late_replies == 1


def test_an_error_without_a_message_and_a_cancel_the_user_did_not_ask_for(endpoints, peers):
    answers = {"quiet": ("error", protocol.JOB_FAILED, ...), "self": ("error", protocol.JOB_CANCELLED, "shutting down")}
    peers.append(Peer(endpoints[0], lambda params: answers[params["n"]]))
    with Coordinator(endpoints[:1], **FAST) as c:
        c.hello(timeout_s=5)
        summary, outcomes, _ = collect(c, [probe("quiet"), probe("self")])
    assert outcomes["quiet"]["error"] == f"{protocol.ERROR_NAMES[protocol.JOB_FAILED]}: "
    # cancelled by the daemon itself, not by the user: its reason is kept
    assert outcomes["self"]["error"] == f"{protocol.ERROR_NAMES[protocol.JOB_CANCELLED]}: shutting down"


def test_a_busy_worker_is_used_again_once_it_is_free(endpoints, peers):
    answers = iter([("error", protocol.BUSY, "serving someone else"), ("result", {"n": "a"})])
    peer = Peer(endpoints[0], lambda params: next(answers))
    peers.append(peer)
    with Coordinator(endpoints[:1], **FAST) as c:
        c.hello(timeout_s=5)
        summary, outcomes, _ = collect(c, [probe("a")], deadline_s=5)
    assert outcomes["a"]["status"] == "ok" and outcomes["a"]["attempts"] == 1  # BUSY is not an attempt
    assert len(peer.jobs) == 2 and peer.hellos >= 2  # rechecked with hello before the second try


def test_a_checkpoint_a_job_wrote_draws_the_jobs_that_need_it_to_that_worker(endpoints, peers):
    peers += [Peer(endpoints[0], lambda params: ("result", {"n": params["n"]})),
              Peer(endpoints[1], lambda params: ("later", 0.2, {"n": params["n"]}))]
    with Coordinator(endpoints[:2], **FAST) as c:
        c.hello(timeout_s=5)
        collect(c, [probe("train", provides="ckpt")])
        assert "ckpt" in c.workers[0].has and "ckpt" not in c.workers[1].has
        # w1 is free first in the worker order only if it does not need the checkpoint
        summary, outcomes, _ = collect(c, [probe("plain"), probe("eval", needs="ckpt")])
    assert outcomes["eval"]["worker"] == endpoints[0]
    assert outcomes["plain"]["worker"] == endpoints[1]


def test_the_only_worker_dying_fails_the_rest_at_once_with_its_exit(endpoints, peers):
    doomed = Peer(endpoints[0], lambda params: ("hang",))
    peers.append(doomed)
    dead = threading.Event()
    with Coordinator(endpoints[:1], heartbeat_s=0.05, timeout_s=30.0, check_result=None, max_crashes=5,
                     exited=lambda ep: ("exited with status 1", "log: boom") if dead.is_set() else None) as c:
        c.hello(timeout_s=5)
        threading.Timer(0.3, lambda: (doomed.stop(), dead.set())).start()
        t0 = time.monotonic()
        summary, outcomes, _ = collect(c, [probe("a"), probe("b")])
    assert time.monotonic() - t0 < 5  # not after the 30 s timeout
    assert outcomes["b"]["error"] == (f"no worker left: all 1 lost ({endpoints[0]}: exited with status 1 "
                                      f"while running probe v-a; log: boom)")
    assert summary.lost == [f"{endpoints[0]}: exited with status 1 while running probe v-a; log: boom"]


def test_an_idle_worker_that_dies_or_goes_silent_is_lost_without_a_job(endpoints, peers):
    quiet = Peer(endpoints[1], lambda params: ("result", {}))
    peers += [Peer(endpoints[0], lambda params: ("later", 1.2, {"n": params["n"]})), quiet]
    lost = []
    with Coordinator(endpoints[:2], heartbeat_s=0.05, timeout_s=0.4, check_result=None,
                     exited=lambda ep: ("exited with status 2", "log: -") if ep == endpoints[1] and quiet._quit.is_set()
                     else None) as c:
        c.on_lost = lambda ep, reason: lost.append((ep, reason))
        c.hello(timeout_s=5)
        threading.Timer(0.2, quiet.stop).start()
        collect(c, [probe("a")])
    assert (endpoints[1], "exited with status 2; log: -") in lost


def test_a_held_worker_that_goes_silent_is_lost(endpoints, peers):
    held = Peer(endpoints[0], lambda params: ("result", {}), hello_busy="someone-else:probe:1")
    peers += [held, Peer(endpoints[1], lambda params: ("later", 1.0, {"n": params["n"]}))]
    with Coordinator(endpoints[:2], **FAST) as c:
        c.hello(timeout_s=5)
        threading.Timer(0.2, held.stop).start()
        summary, outcomes, _ = collect(c, [probe("a")])
    assert any(x.startswith(f"{endpoints[0]}: silent for ") for x in summary.lost)
    assert outcomes["a"]["worker"] == endpoints[1]


def test_a_quarantined_job_names_the_worker_it_took_down_last(endpoints, peers):
    peers.append(Peer(endpoints[0], lambda params: ("freeze", 0.6, None)))
    with Coordinator(endpoints[:1], heartbeat_s=0.05, timeout_s=0.3, check_result=None, max_crashes=1) as c:
        c.hello(timeout_s=5)
        summary, outcomes, _ = collect(c, [probe("a")])
    assert outcomes["a"]["worker"] == endpoints[0]
    assert outcomes["a"]["error"].startswith(f"quarantined: took down 1 workers (last {endpoints[0]}: silent for ")
    assert summary.quarantined == ["a"]


def test_a_never_answering_worker_behind_curve_keys_gets_a_hint(tmp_path):
    import zmq.auth

    keys = tmp_path / "keys"
    keys.mkdir(mode=0o700)
    zmq.auth.create_certificates(keys, "client")
    zmq.auth.create_certificates(tmp_path, "server")
    (keys / "client.key_secret").chmod(0o600)
    (tmp_path / "server.key").rename(keys / "server.key")  # a client's folder: its pair and the server's public key
    coord = Coordinator(["tcp://127.0.0.1:1"], heartbeat_s=0.05, timeout_s=0.2, connect_timeout_s=0.3,
                        client_keys=keys)
    with coord as c:
        summary, outcomes, _ = collect(c, [probe("a")], deadline_s=5)
    assert summary.lost == ["tcp://127.0.0.1:1: no reply to hello within 0.3 s (not started, wrong endpoint, or "
                            "keys not accepted?)"]
