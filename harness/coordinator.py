"""Dispatch jobs to worker daemons over ZeroMQ, and survive workers that die or freeze.

One DEALER socket per daemon, one loop (``Coordinator.run``) on the caller's thread. The
reliability logic, in the spirit of the ZeroMQ guide's Paranoid Pirate, is this page:

- **Heartbeats both ways.** Every ``heartbeat_s`` we send each live worker a ``heartbeat``
  request; the daemon answers it, and also sends its own ``heartbeat`` notifications while a job
  runs. Any frame from a worker counts as a sign of life.
- **Lost.** A worker silent for ``timeout_s`` is declared lost; its job goes back to the front of
  the queue and counts one crash. So does a job whose worker was restarted under it (a heartbeat
  answered after the dispatch says it runs nothing of ours, and no reply came); that restart is in
  ``Summary.lost`` too, so a quarantine's count of workers taken down is the summary's. A job that
  took down ``max_crashes`` workers is quarantined: reported failed with the reason, the run goes on.
- **Refusals are not crashes.** A daemon that cannot read a request (over its object bound: a task
  folder of tens of thousands of files) answers with the request's id, read without decoding the
  rest (``protocol.peek_id``); the job fails once with that reason. An error without an id from
  a worker busy with our job is that job's, likewise.
- **Bounded replies.** A reply is decoded within ``protocol.MAX_REPLY_OBJECTS``; one over that or
  over the frame limit (the sockets take up to ``protocol.MAX_RECEIVED_BYTES`` so it arrives) fails
  its job once naming the limit and the size; the worker is kept.
- **Back from the dead.** A lost worker is probed with ``hello`` every ``heartbeat_s``; one that
  answers (restarted, or resumed after a freeze) is used again. If it is still running a job of
  ours that we gave up on, we cancel that job first.
- **Exactly once.** Every dispatch has its own request id; a reply is accepted only for the
  current dispatch of an unfinished job. Late replies (a frozen worker that wakes up) are counted
  in ``Summary.late_replies`` and dropped.
- **Errors.** An error reply fails the job (no retry), except ``BUSY`` (the daemon is serving
  someone else, or shutting down): the job is requeued and the worker rechecked later.
- **Malformed results.** A result reply is checked against the job result's schema
  (``moe_schema.result.check_result``, by the job spec's ``kind``) before ``on_result`` sees it; one
  that does not pass fails the job (no retry) with the bad value's path, ``malformed result from
  <worker>: result.metrics: expected a map, got ...``. ``check_result=None`` turns the check off
  (tests of the dispatch rules whose jobs are not real kinds).
- **Affinity.** A worker gets, in order: a job for a build it holds; a job for a build no live
  worker holds (spreading builds over workers); any job.
- **What a worker has.** A job may name what it ``needs`` (a trained checkpoint's key) and what
  it ``provides`` once done. A worker has what its ``hello`` lists (``holds.trained``) and what
  its finished jobs provided; a job whose need some live worker has goes only to such a worker,
  so hosts need not share a filesystem. (If no live worker has it, any worker may try and fail
  with the reason.)
- **Engines.** A job names the engine its variant is hosted in (``Job.engine``, from the spec's
  ``variant.engine``; transformers when absent). A worker hosts the engines its ``hello`` lists
  (``engines: {"transformers": "<version>", "vllm": "<version>"}``; a worker whose hello has no
  ``engines`` hosts transformers only), and gets only jobs of those engines. A job that no worker
  can run (none lists its engine, or those that do have been lost for ``timeout_s``) fails at once
  with that reason and the engines each worker has, never waits.
- **Claims.** ``run(..., claim=f)``: ``f(job)`` is asked just before a job is sent, and may take
  it back (False: the caller ran it elsewhere or already has its result, and reports it itself);
  such a job is neither sent, nor reported, nor ``not_run``. ``harness run`` takes a job key's
  cross-run lock there, so it holds one lock per job in flight, not one per job planned.
- **Stopping.** ``stop`` set (first Ctrl-C, or ``interrupt()``): nothing new is dispatched,
  running jobs finish, then ``run`` returns; jobs never finished are in ``Summary.not_run`` and
  get no ``on_result``. ``cancel`` set (second Ctrl-C, ``interrupt()`` again, or
  ``cancel_all()``): running jobs are cancelled too and reported failed.
- **Dead processes.** Where the caller knows a worker's process (local daemons it started:
  ``exited=LocalWorkers.exit_reason``), a worker whose process has ended is lost at once, with its
  exit status or signal and log tail in the reason, not after ``timeout_s`` of silence; its job is
  requeued as for any lost worker. Remote workers keep the heartbeat timeout.
- **All lost.** When every worker has been lost for ``timeout_s`` (or its process is known dead)
  and none came back, the remaining jobs fail with the reason; what finished was already handed to
  ``on_result``.
- **Deadline.** ``run(..., deadline_s=N)``: after N seconds every job not finished fails with
  the reason (the running ones are cancelled on their workers), and ``run`` returns. Off by
  default (a training run may take hours); tests pass one, so a lost job fails in seconds with a
  message instead of hanging.

Torch-free: this module imports only pyzmq, attrs and moe_schema (the protocol, the result schema).
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter, deque
from typing import Callable

import attrs
import zmq

from moe_schema import protocol
from moe_schema.check import SchemaError
from moe_schema.engines import DEFAULT, engine_name
from moe_schema.result import check_result as _check_result


@attrs.define
class Job:
    key: str
    spec: dict       # the job spec: {"kind": ..., "variant": {...}, ...}
    affinity: str = ""  # a build id: jobs for a build a worker holds go to that worker first
    needs: str = ""     # something only some workers have (a trained checkpoint's key): go to one of them
    provides: str = ""  # what the worker has once this job succeeds
    engine: str = ""    # the engine that must host the variant ("": the spec's, transformers when absent)

    def __attrs_post_init__(self):
        if not self.engine:
            self.engine = engine_name(self.spec.get("variant") or {}) if isinstance(self.spec, dict) else DEFAULT


@attrs.define
class Summary:
    ok: int = 0
    failed: int = 0
    not_run: list = attrs.field(factory=list)       # keys of jobs never finished because of stop/cancel
    quarantined: list = attrs.field(factory=list)   # keys of jobs that took down max_crashes workers
    lost: list = attrs.field(factory=list)          # "endpoint: reason", one per time a worker was lost
    late_replies: int = 0                           # replies for jobs already finished or given up
    elapsed_s: float = 0.0


@attrs.define(eq=False)
class _Task:
    job: Job
    attempts: int = 0
    crashes: int = 0
    done: bool = False
    request: str | None = None  # id of the current dispatch
    claimed: bool = False       # ``claim`` was asked (once, before the first dispatch)


@attrs.define(eq=False)
class _Worker:
    endpoint: str
    sock: zmq.Socket
    state: str = "connecting"  # connecting | idle | busy | held (busy elsewhere) | lost
    since: float = 0.0         # when the state began
    last_seen: float = 0.0
    next_ping: float = 0.0
    task: _Task | None = None
    dispatched: int = 0  # request counter at the dispatch of ``task``
    holds: set = attrs.field(factory=set)  # affinities this worker has loaded
    has: set = attrs.field(factory=set)    # what jobs may need: the trained checkpoints it keeps
    info: dict | None = None               # the last hello result
    reason: str = ""                       # why it was lost
    dead: bool = False                     # its process is known to have ended (``exited``)

    @property
    def engines(self) -> dict | None:
        """The engines it hosts, name -> version, from its last hello (None: no hello yet)."""
        if self.info is None:
            return None
        listed = self.info.get("engines")
        if isinstance(listed, dict):
            return {str(k): str(v) for k, v in listed.items()}
        return {DEFAULT: "?"}  # a daemon from before engines: the default engine only


class _Queue(deque):
    """The jobs waiting for a worker, in order, with how many of them name each engine, build
    (``affinity``) and need, so that placing a job scans the queue only as far as the first best
    one and the loop never walks the whole queue: a run of 10,000 jobs is not quadratic."""

    def __init__(self, tasks=()):
        super().__init__()
        self.engines: Counter = Counter()
        self.affinities: Counter = Counter()
        self.needs: Counter = Counter()
        for t in tasks:
            self.append(t)

    def _count(self, task: _Task, n: int) -> None:
        for counter, value in ((self.engines, task.job.engine), (self.affinities, task.job.affinity),
                               (self.needs, task.job.needs)):
            counter[value] += n
            if not counter[value]:
                del counter[value]

    def append(self, task: _Task) -> None:
        super().append(task)
        self._count(task, 1)

    def appendleft(self, task: _Task) -> None:
        super().appendleft(task)
        self._count(task, 1)

    def popleft(self) -> _Task:
        task = super().popleft()
        self._count(task, -1)
        return task

    def remove(self, task: _Task) -> None:
        super().remove(task)
        self._count(task, -1)

    def clear(self) -> None:
        super().clear()
        for counter in (self.engines, self.affinities, self.needs):
            counter.clear()


class Coordinator:
    def __init__(self, endpoints: list[str], *, heartbeat_s: float = 1.0, timeout_s: float = 10.0,
                 max_crashes: int = 3, client_keys=None, connect_timeout_s: float | None = None,
                 exited: Callable[[str], tuple[str, str] | None] | None = None,
                 check_result: Callable[[dict, str], object] | None = _check_result):
        if not endpoints:
            raise ValueError("Coordinator: no worker endpoints given")
        if len(set(endpoints)) != len(endpoints):
            raise ValueError(f"Coordinator: duplicate worker endpoints in {endpoints}")
        for ep in endpoints:
            protocol.endpoint_parts(ep)  # ValueError naming a malformed endpoint (no name lookups)
        if heartbeat_s <= 0 or timeout_s <= heartbeat_s:
            raise ValueError(f"Coordinator: need 0 < heartbeat_s ({heartbeat_s}) < timeout_s ({timeout_s})")
        if max_crashes < 1:
            raise ValueError(f"Coordinator: max_crashes must be >= 1, got {max_crashes}")
        self.heartbeat_s, self.timeout_s, self.max_crashes = heartbeat_s, timeout_s, max_crashes
        # endpoint -> (what happened, detail) once that worker's process has ended; None: unknown or alive
        self._exited = exited
        self._check_result = check_result  # (result, kind) -> raises SchemaError; None: unchecked
        self.on_lost: Callable[[str, str], None] | None = None  # (endpoint, reason), as it happens
        # a daemon just started may still be importing torch: give the first hello longer
        self.connect_timeout_s = connect_timeout_s or max(3 * timeout_s, 30.0)
        self._curve = protocol.client_keys(client_keys) if client_keys else None
        self._prefix = os.urandom(4).hex()
        self._counter = 0
        self._stop, self._cancel = threading.Event(), threading.Event()
        self._ctx = zmq.Context()
        self._poller = zmq.Poller()
        now = time.monotonic()
        self.workers = [_Worker(ep, self._socket(ep), since=now, last_seen=now) for ep in endpoints]
        self._by_sock = {w.sock: w for w in self.workers}
        for w in self.workers:
            self._poller.register(w.sock, zmq.POLLIN)
        self._tasks: dict[str, _Task] = {}  # request id -> task, for job dispatches in flight
        self._queue = _Queue()  # jobs waiting for a worker
        self._summary = Summary()
        self._on_result: Callable | None = None
        self._on_progress: Callable | None = None
        self._claim: Callable | None = None

    def _socket(self, endpoint: str) -> zmq.Socket:
        sock = self._ctx.socket(zmq.DEALER)
        protocol.configure_socket(sock)
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_RECEIVED_BYTES)  # a larger reply is refused by name
        sock.setsockopt(zmq.IMMEDIATE, 1)  # never queue for a peer that is not connected
        if self._curve and protocol.needs_keys(endpoint):  # tcp, abstract ipc; a file ipc socket is private
            public, secret, server = self._curve
            sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = public, secret, server
        sock.connect(endpoint)
        return sock

    # --- public API ----------------------------------------------------------------------------
    def hello(self, timeout_s: float | None = None) -> list[dict]:
        """Each worker's capabilities (the hello result plus ``endpoint``), in endpoint order;
        ``{"endpoint", "error"}`` for one that did not answer within ``timeout_s``."""
        timeout_s = self.connect_timeout_s if timeout_s is None else timeout_s
        for w in self.workers:
            w.info = None
        deadline = time.monotonic() + timeout_s
        while any(w.info is None for w in self.workers) and time.monotonic() < deadline:
            now = time.monotonic()
            for w in self.workers:
                if w.info is None and now >= w.next_ping:
                    self._send(w, "hello", {})
                    w.next_ping = now + min(self.heartbeat_s, 0.5)
            self._poll(0.1)
        return [dict(w.info, endpoint=w.endpoint) if w.info is not None else
                {"endpoint": w.endpoint, "error": f"no reply to hello within {timeout_s:g} s"}
                for w in self.workers]

    def interrupt(self) -> None:
        """Ctrl-C semantics: the first call stops dispatching, the second cancels running jobs."""
        if self._stop.is_set():
            self._cancel.set()
        self._stop.set()

    def cancel_all(self) -> None:
        """Stop dispatching and cancel the running jobs (thread- and signal-safe)."""
        self._stop.set()
        self._cancel.set()

    def close(self) -> None:
        for w in self.workers:
            w.sock.close(linger=0)
        self._ctx.term()

    def __enter__(self) -> "Coordinator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, jobs: list[Job], on_result: Callable[[Job, dict], None],
            on_progress: Callable | None = None, stop: threading.Event | None = None,
            cancel: threading.Event | None = None, deadline_s: float | None = None,
            claim: Callable[[Job], bool] | None = None) -> Summary:
        """Run every job; call ``on_result(job, outcome)`` once per finished job and
        ``on_progress(job, done, total, note)`` as workers report. Returns a Summary.
        With ``deadline_s``, jobs still unfinished that many seconds in fail with the reason.
        With ``claim``, a job ``claim`` takes back just before its first dispatch is dropped (see Claims)."""
        if deadline_s is not None and not deadline_s > 0:
            raise ValueError(f"Coordinator.run: deadline_s must be > 0, got {deadline_s}")
        keys = [j.key for j in jobs]
        if len(set(keys)) != len(keys):
            raise ValueError("Coordinator.run: job keys must be unique")
        t0 = time.monotonic()
        self._summary = Summary()
        self._on_result, self._on_progress, self._claim = on_result, on_progress, claim
        self._stop.clear()
        self._cancel.clear()
        for j in jobs:
            if not isinstance(j.spec, dict) or j.spec.get("kind") not in protocol.JOB_METHODS:
                raise ValueError(f"job {j.key}: spec.kind must be one of {', '.join(protocol.JOB_METHODS)}")
        tasks = [_Task(j) for j in jobs]
        self._queue = queue = _Queue(tasks)
        self._undone = len(tasks)
        cancel_sent_at = None
        while True:
            now = time.monotonic()
            if (stop and stop.is_set()) or (cancel and cancel.is_set()):
                self._stop.set()
            if cancel and cancel.is_set():
                self._cancel.set()
            if self._cancel.is_set() and cancel_sent_at is None:
                cancel_sent_at = now
                for w in self.workers:
                    if w.state == "busy":
                        self._send(w, "cancel", {"id": w.task.request})
            if deadline_s is not None and now - t0 > deadline_s:
                self._miss_deadline(tasks, deadline_s)
                break
            self._check_workers(now)
            if cancel_sent_at is not None and now - cancel_sent_at > self.timeout_s:
                for w in self.workers:  # the daemon never confirmed: give up on the job
                    if w.state == "busy":
                        self._finish(w.task, w, "failed", error="cancelled (the worker did not confirm)")
                        self._set(w, "idle", now)
            busy = [w for w in self.workers if w.state == "busy"]
            if self._stop.is_set():
                if not busy:
                    break
            else:
                self._dispatch(queue, now)
                self._fail_unhostable(queue, now)
                if not self._undone:
                    break
                if self._all_lost(now):
                    reasons = "; ".join(f"{w.endpoint}: {w.reason}" for w in self.workers)
                    while queue:
                        self._finish(queue.popleft(), None, "failed",
                                     error=f"no worker left: all {len(self.workers)} lost ({reasons})")
                    break
            self._poll(min(self.heartbeat_s / 2, 0.25))
        self._summary.not_run = [t.job.key for t in tasks if not t.done]
        self._summary.elapsed_s = round(time.monotonic() - t0, 3)
        return self._summary

    def _miss_deadline(self, tasks: list[_Task], deadline_s: float) -> None:
        """Fail every unfinished job, naming where it was; cancel the running ones."""
        now = time.monotonic()
        for w in self.workers:
            if w.state == "busy":
                self._send(w, "cancel", {"id": w.task.request})
                self._finish(w.task, w, "failed", error=f"run deadline of {deadline_s:g} s passed "
                                                        f"while the job ran on {w.endpoint}")
                self._set(w, "idle", now)
        for task in tasks:
            if not task.done:
                self._finish(task, None, "failed",
                             error=f"run deadline of {deadline_s:g} s passed before the job ran"
                                   f" (workers: {', '.join(f'{w.endpoint} {w.state}' for w in self.workers)})")
        self._queue.clear()

    # --- sending and receiving -----------------------------------------------------------------
    def _send(self, w: _Worker, method: str, params: dict) -> str | None:
        """Send a request; return its id, or None where the worker has no live connection."""
        self._counter += 1
        rid = f"{self._prefix}:{method}:{self._counter}"
        try:
            w.sock.send(protocol.pack(protocol.request(method, params, id=rid)), zmq.NOBLOCK)
        except zmq.Again:
            return None
        return rid

    def _poll(self, seconds: float) -> None:
        for sock, _ in self._poller.poll(seconds * 1000):
            w = self._by_sock[sock]
            while True:
                try:
                    frame = sock.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._receive(w, frame)

    def _receive(self, w: _Worker, frame: bytes) -> None:
        now = time.monotonic()
        w.last_seen = now
        try:
            msg = protocol.parse_reply(frame)
        except protocol.ProtocolError as exc:
            if exc.over_limit:  # too large to decode: it can only be a job's reply, refused here
                self._refused_reply(w, exc, now)
            return  # a broken frame from a worker: it is alive, nothing else to learn
        if "method" in msg:  # a notification
            params = msg["params"]
            task = self._tasks.get(params.get("id")) if isinstance(params.get("id"), str) else None
            if msg["method"] == protocol.NOTIFY_PROGRESS and task is not None and self._on_progress:
                self._on_progress(task.job, params.get("done", 0), params.get("total", 0), params.get("note", ""))
            return
        rid = msg.get("id")
        if rid is None and "error" in msg and w.state == "busy":
            rid = w.task.request  # the daemon could not read our request (its id with it): it was the job
        method = rid.split(":")[1] if isinstance(rid, str) and rid.startswith(self._prefix + ":") else None
        if method in protocol.JOB_METHODS:
            self._job_reply(w, rid, msg, now)
        elif method == "hello" and "result" in msg:
            self._hello_reply(w, msg["result"], now)
        elif method == "heartbeat" and "result" in msg and w.state == "busy":
            # A heartbeat sent after the dispatch says the worker is not running our job, and the
            # job's reply (which would have come first) never came: the daemon was restarted.
            busy = msg["result"].get("busy") if isinstance(msg["result"], dict) else None
            if int(rid.rsplit(":", 1)[1]) > w.dispatched and busy != w.task.request:
                task, reason = w.task, "the worker restarted and no longer runs the job"
                self._set(w, "idle", now)
                w.holds.clear()
                self._summary.lost.append(f"{w.endpoint}: {reason}")  # what a quarantine counts is in the summary
                if self.on_lost is not None:
                    self.on_lost(w.endpoint, reason)
                self._crashed(task, w, reason)

    def _hello_reply(self, w: _Worker, info: dict, now: float) -> None:
        w.info = info if isinstance(info, dict) else {}
        holds = w.info.get("holds")
        trained = holds.get("trained") if isinstance(holds, dict) else None
        if isinstance(trained, list):
            w.has.update(t for t in trained if isinstance(t, str))
        busy = w.info.get("busy")
        w.dead = False  # it answers: whatever ended, a process serves this endpoint now
        if w.state in ("connecting", "lost", "held"):
            if busy is None:
                self._set(w, "idle", now)
            else:
                if isinstance(busy, str) and busy.startswith(self._prefix + ":"):
                    self._send(w, "cancel", {"id": busy})  # a job of ours we already gave up on
                self._set(w, "held", now)

    def _job_reply(self, w: _Worker, rid: str, msg: dict, now: float) -> None:
        task = self._tasks.pop(rid, None)
        if task is None or task.done or task.request != rid:
            self._summary.late_replies += 1
            return
        if w.task is task:
            self._set(w, "idle", now)
        task.request = None
        if "result" in msg:  # (the build is in w.holds since the dispatch)
            malformed = self._malformed(task.job, msg["result"])
            if malformed:
                self._finish(task, w, "failed", error=f"malformed result from {w.endpoint}: {malformed}")
                return
            if task.job.provides:
                w.has.add(task.job.provides)
            self._finish(task, w, "ok", result=msg["result"])
            return
        err = msg["error"]
        code, text = err.get("code"), " ".join(str(err.get("message", "")).split())
        if code == protocol.BUSY:
            task.attempts -= 1
            self._queue.appendleft(task)
            self._set(w, "held", now)
        elif code == protocol.JOB_CANCELLED and self._cancel.is_set():
            self._finish(task, w, "failed", error="cancelled by the user")
        else:
            files = ((task.job.spec.get("task") or {}).get("files") if isinstance(task.job.spec.get("task"), dict)
                     else None)
            if code == protocol.PARSE_ERROR and isinstance(files, dict) and len(files) > 1000:
                text += f" (the job ships its task folder's {len(files):,} files, two objects each)"
            self._finish(task, w, "failed", error=f"{protocol.ERROR_NAMES.get(code, code)}: {text}")

    def _refused_reply(self, w: _Worker, exc: protocol.ProtocolError, now: float) -> None:
        """A reply over the frame or object limit (``protocol.unpack``): its job fails with the
        limit and the size, once; the worker is idle again. Its id is the job's (read without
        decoding the rest), or, where it cannot be read, the job the worker is busy with."""
        rid = exc.id if isinstance(exc.id, str) else (w.task.request if w.state == "busy" else None)
        task = self._tasks.get(rid) if rid is not None else None
        if task is None or task.done:
            self._summary.late_replies += 1
            return
        self._tasks.pop(rid, None)
        if w.task is task:
            self._set(w, "idle", now)
        task.request = None
        self._finish(task, w, "failed", error=f"reply from {w.endpoint} refused: {exc.message}")

    def _malformed(self, job: Job, result) -> str | None:
        """Why ``result`` is not a result of ``job``'s kind (one line), or None."""
        if self._check_result is None:
            return None
        try:
            self._check_result(result, job.spec.get("kind"))
        except SchemaError as exc:
            return str(exc)
        return None

    def _finish(self, task: _Task, w: _Worker | None, status: str, **fields) -> None:
        if task.done:
            self._summary.late_replies += 1
            return
        task.done = True
        self._undone -= 1
        if task.request is not None:
            self._tasks.pop(task.request, None)
            task.request = None
        setattr(self._summary, status, getattr(self._summary, status) + 1)
        outcome = {"status": status, **fields, "worker": w.endpoint if w else None, "attempts": task.attempts}
        self._on_result(task.job, outcome)

    # --- liveness --------------------------------------------------------------------------------
    def _set(self, w: _Worker, state: str, now: float) -> None:
        w.state, w.since = state, now
        if state != "busy":
            w.task = None

    def _check_workers(self, now: float) -> None:
        for w in self.workers:
            silent = now - w.last_seen
            ended = self._exited(w.endpoint) if self._exited is not None and not w.dead else None
            if ended is not None:
                what, detail = ended
                w.dead = True
                doing = f" while running {w.task.job.spec['kind']} {w.task.job.spec['variant'].get('name', '?')}" \
                    if w.task is not None else ""
                if w.state == "lost":
                    w.reason = f"{what}{doing}; {detail}"
                else:
                    self._lose(w, now, f"{what}{doing}; {detail}")
            elif w.state == "connecting" and now - w.since > self.connect_timeout_s:
                hint = " (not started, wrong endpoint, or keys not accepted?)" if self._curve else ""
                self._lose(w, now, f"no reply to hello within {self.connect_timeout_s:g} s{hint}")
            elif w.state in ("idle", "busy", "held") and silent > self.timeout_s:
                self._lose(w, now, f"silent for {silent:.1f} s")
            if now >= w.next_ping:
                w.next_ping = now + self.heartbeat_s
                method = "heartbeat" if w.state in ("idle", "busy") else "hello"
                self._send(w, method, {})

    def _lose(self, w: _Worker, now: float, reason: str) -> None:
        task, w.reason = w.task, reason
        self._summary.lost.append(f"{w.endpoint}: {reason}")
        if self.on_lost is not None:
            self.on_lost(w.endpoint, reason)
        self._set(w, "lost", now)
        w.holds.clear()
        if task is not None:
            self._crashed(task, w, reason)

    def _crashed(self, task: _Task, w: _Worker, reason: str) -> None:
        """The job's worker died under it: requeue it, or quarantine it after max_crashes."""
        if task.done:
            return
        self._tasks.pop(task.request, None)
        task.request = None
        task.crashes += 1
        if task.crashes >= self.max_crashes:
            self._summary.quarantined.append(task.job.key)
            self._finish(task, w, "failed", error=f"quarantined: took down {task.crashes} workers "
                                                   f"(last {w.endpoint}: {reason})")
        elif self._stop.is_set():
            self._finish(task, w, "failed", error=f"worker lost after the run was stopped ({w.endpoint}: {reason})")
        else:
            self._queue.appendleft(task)

    def _can_host(self, w: _Worker, engine: str, now: float) -> bool:
        """Could ``w`` run a job on ``engine``, now or once it answers (not yet known, or lost
        for less than ``timeout_s`` and listing it)?"""
        engines = w.engines
        if w.state == "lost":
            return engines is not None and engine in engines and not w.dead and now - w.since <= self.timeout_s
        return engines is None or engine in engines

    def _fail_unhostable(self, queue: _Queue, now: float) -> None:
        """Fail each queued job whose engine no worker hosts or may still host, with the reason
        (when every worker is lost, the all-lost rule says so instead)."""
        if all(w.state == "lost" for w in self.workers):
            return
        for engine in list(queue.engines):
            if any(self._can_host(w, engine, now) for w in self.workers):
                continue
            have = "; ".join(f"{w.endpoint}: {', '.join(w.engines) if w.engines is not None else 'no hello'}"
                             f"{' (lost)' if w.state == 'lost' else ''}" for w in self.workers)
            listed = any(w.engines is not None and engine in w.engines for w in self.workers)
            why = (f"every worker listing {engine} was lost" if listed else
                   f"none of the {len(self.workers)} worker(s) lists {engine} in its hello")
            for task in [t for t in queue if t.job.engine == engine]:
                queue.remove(task)
                variant = task.job.spec["variant"].get("name", "?")
                self._finish(task, None, "failed", error=f"no worker can run engine {engine} for {variant}: "
                                                         f"{why} ({have})")

    def _all_lost(self, now: float) -> bool:
        return all(w.state == "lost" and (w.dead or now - w.since > self.timeout_s) for w in self.workers)

    # --- placement -------------------------------------------------------------------------------
    def _dispatch(self, queue: _Queue, now: float) -> None:
        for w in self.workers:
            while queue and w.state == "idle":
                task = self._pick(w, queue)
                if task is None:  # every queued job needs what another worker has
                    break
                if not task.claimed and self._claim is not None:
                    task.claimed = True
                    if not self._claim(task.job):
                        task.done = True  # taken back by the caller, who reports it (see Claims)
                        self._undone -= 1
                        continue
                rid = self._send(w, task.job.spec["kind"], task.job.spec)
                if rid is None:  # no connection right now: leave the job queued, liveness will tell
                    queue.appendleft(task)
                    break
                task.request, task.attempts = rid, task.attempts + 1
                self._tasks[rid] = task
                self._set(w, "busy", now)
                w.task, w.dispatched = task, self._counter
                w.holds.add(task.job.affinity)  # it will hold the build once the job loads it

    def _pick(self, w: _Worker, queue: _Queue) -> _Task | None:
        others = [o for o in self.workers if o is not w and o.state != "lost"]
        had_elsewhere = set().union(*(o.has for o in others))
        held_elsewhere = set().union(*(o.holds for o in others))
        engines = w.engines or {DEFAULT: "?"}
        # what this worker may take: its engine, and no need, a need it has, or a need no other live worker has
        def fits(t: _Task) -> bool:
            return t.job.engine in engines and (not t.job.needs or t.job.needs in w.has
                                                or t.job.needs not in had_elsewhere)
        # in order of preference: a need it has; a build it holds; a build no other live worker holds;
        # any. Only the ones some queued job can meet are tried, so the scan stops at the first best.
        ranks = [test for test, possible in (
            (lambda t: bool(t.job.needs) and t.job.needs in w.has, any(n in w.has for n in queue.needs if n)),
            (lambda t: t.job.affinity in w.holds, any(a in w.holds for a in queue.affinities)),
            (lambda t: t.job.affinity not in held_elsewhere, any(a not in held_elsewhere for a in queue.affinities)),
        ) if possible]
        choice, rank = None, len(ranks) + 1
        for t in queue:
            if not fits(t):
                continue
            better = next((r for r, test in enumerate(ranks[:rank]) if test(t)), len(ranks))
            if better < rank:
                choice, rank = t, better
                if rank == 0:
                    break
        if choice is not None:
            queue.remove(choice)
        return choice
