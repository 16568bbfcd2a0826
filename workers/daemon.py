"""The worker daemon: one long-lived process per device, serving JSON-RPC 2.0 over ZeroMQ.

    harness worker --device cpu --bind ipc:///tmp/w0.sock
    harness worker --device cuda:0 --bind tcp://0.0.0.0:5555 --keys ~/moe-keys

One ROUTER socket and one main loop (``Daemon.serve``); at most one job thread at a time:

- the main loop answers control methods at once (``hello``, ``status``, ``cancel``,
  ``heartbeat``, ``shutdown``), starts a job thread for a job method (``describe``,
  ``evaluate``, ``probe``, ``train``; a second one meanwhile gets a ``BUSY`` error), forwards the
  job thread's progress notifications and final reply, and sends a ``heartbeat`` notification
  every ``--heartbeat-s`` to every client heard from lately, so a long job never looks dead;
- the job thread calls ``workers.jobs.run_job(job, host, progress, cancelled)``, checks the result
  against the job result's schema (``moe_schema.result``; a malformed one is answered JOB_FAILED
  naming the bad value) and hands its messages to the main loop over an inproc socket (ZeroMQ
  sockets never cross threads).

A frame may be a JSON-RPC 2.0 batch (an array of requests, any methods): it is answered by one
array holding a reply per member that has an id, after all of them are done, so a batch that
starts a job is answered when the job ends; a second job in it gets ``BUSY`` like any other. A
batch of notifications only gets no reply. Bad frames get their JSON-RPC error reply (or are
dropped where no reply can be addressed) and the daemon keeps serving.

SIGTERM/SIGINT or a ``shutdown`` request: cancel the running job, send its reply, close the
sockets, exit 0. A running job whose client has been silent for ``--orphan-s`` is cancelled, so a
killed coordinator does not leave its daemons busy.

Whoever can send a job runs code as the daemon's user (a task's ``!function``,
``trust_remote_code``), so a daemon that other users can reach refuses to bind without ``--keys``
(CURVE, with ZeroMQ's authenticator started before the bind, accepting only the client keys in
``authorized/``) unless given ``--insecure``, which it then says on every start: tcp, loopback
included (every local user reaches 127.0.0.1), and abstract ipc (``ipc://@name``: no file, so no
permissions). It refuses key files others could read (the secret), replace (the folder,
``authorized/``, its keys) or own. A file ipc socket is made owner-only (0600) as soon as it is
bound; put it in a private folder, as ``harness.local`` does.

Tests and benchmarks may set ``MOE_HARNESS_RUN_JOB=module:function`` to replace
``workers.jobs.run_job`` (same signature) in a real daemon process.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import signal
import socket
import sys
import threading
import time
from importlib import metadata
from typing import Any, Callable

import zmq

from moe_schema import protocol
from moe_schema.check import SchemaError
from moe_schema.registry import PluginError, resolve
from moe_schema.result import check_result
from moe_schema.units import BYTE_UNITS
from workers.engines import available as available_engines
from workers.errors import JobError

RUN_JOB_ENV = "MOE_HARNESS_RUN_JOB"
DEVICE_RE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
_INPROC = "inproc://job-messages"


class StartupError(Exception):
    """The daemon cannot start: bad device, refused bind, missing keys. One line."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu, cuda:N or mps (default cpu)")
    p.add_argument("--bind", required=True, help="endpoint to bind: tcp://HOST:PORT or ipc:///path")
    p.add_argument("--keys", help="CURVE key folder from `harness keys` (DIR or DIR/server); required for tcp "
                   "and abstract ipc")
    p.add_argument("--insecure", action="store_true", help="serve tcp or abstract ipc without keys: anyone who "
                   "reaches it runs code as this user through its jobs (said on every start)")
    p.add_argument("--heartbeat-s", type=float, default=1.0, help="seconds between heartbeats (default 1)")
    p.add_argument("--orphan-s", type=float, default=60.0,
                   help="cancel a job whose client is silent this long; 0: never (default 60)")
    p.add_argument("--threads", type=int, help="CPU threads for torch in this daemon (default: torch's own)")
    p.add_argument("--parent", type=int, help="exit when this process id is no longer our parent")
    p.add_argument("--memory-limit", metavar="BYTES",
                   help="admit only builds whose estimated bytes fit this (e.g. 40GB); default: free memory")
    p.add_argument("--grace-s", type=float, default=30.0,
                   help="on SIGTERM, seconds a cancelled job gets to stop before we exit anyway (default 30)")


def main(args: argparse.Namespace) -> int:
    if args.threads is not None:
        if args.threads < 1:
            print(f"harness worker: --threads {args.threads}: expected a positive count", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(args.threads)
    limit = None
    if args.memory_limit is not None:
        from workers.host import parse_bytes  # torch-free function of a module that imports torch later

        try:
            limit = parse_bytes(args.memory_limit)
        except ValueError as exc:
            print(f"harness worker: --memory-limit {exc}", file=sys.stderr)
            return 2
    try:
        daemon = Daemon(args.device, args.bind, keys=args.keys, insecure=args.insecure,
                        heartbeat_s=args.heartbeat_s, orphan_s=args.orphan_s, parent=args.parent,
                        grace_s=args.grace_s, memory_limit_bytes=limit)
    except StartupError as exc:
        print(f"harness worker: {exc}", file=sys.stderr)
        return 2
    code = daemon.serve()
    # The process exits next: spare it the final garbage collections over torch's and transformers'
    # objects (seconds on a busy node, counted against slurm's KillWait after a SIGTERM).
    import gc

    gc.freeze()
    return code


def check_device(device: str) -> str:
    if not DEVICE_RE.match(device):
        raise StartupError(f"--device {device!r}: expected cpu, cuda:N or mps")
    if device.startswith("cuda"):
        import torch

        index = int(device.partition(":")[2] or 0)
        if not torch.cuda.is_available() or index >= torch.cuda.device_count():
            raise StartupError(f"--device {device}: no such CUDA device "
                               f"({torch.cuda.device_count()} visible)")
    return device


def load_run_job() -> Callable:
    spec = os.environ.get(RUN_JOB_ENV)
    if not spec:
        from workers.jobs import run_job

        return run_job
    module, _, name = spec.partition(":")
    try:  # the one place a module:object reference is imported (moe_schema.registry)
        return resolve(f"{module}:{name or 'run_job'}", what=RUN_JOB_ENV)
    except PluginError as exc:
        raise StartupError(f"{RUN_JOB_ENV}={spec!r}: {exc}") from None


def one_line(exc: BaseException, limit: int = 500) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text if isinstance(exc, JobError) else f"{type(exc).__name__}: {text}"
    return text[:limit]


def plain(obj: Any) -> Any:
    """Make a value msgpack-safe (tuples, numpy scalars, paths...) the way JSON would."""
    import json

    return json.loads(json.dumps(obj, default=str))


def memory(device: str) -> dict:
    """What hello says of the device's memory: ``workers.memory.device_memory`` (on a CPU, the cgroup's room)."""
    from workers.memory import device_memory

    mem = device_memory(device)
    return {"total_bytes": mem["total"], "free_bytes": mem["free"]}


@functools.cache  # what is imported does not change while the daemon runs; each lookup costs ~10 ms
def versions() -> dict:
    out = {"python": sys.version.split()[0], "zmq": zmq.zmq_version()}
    for name in ("torch", "transformers", "lm-eval", "moe-harness", "pyzmq", "msgpack"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


# A batch being answered is the list of its members' packed reply frames, in order; the one a job
# started from it will send stands there as _PENDING until the job ends.
_PENDING = object()


class _RunningJob:
    def __init__(self, ident: bytes, id: Any, method: str, params: dict, batch: list | None = None):
        self.ident, self.id, self.method, self.params, self.batch = ident, id, method, params, batch
        self.cancelled = threading.Event()
        self.started = time.time()
        self.progress: dict | None = None
        self.thread: threading.Thread | None = None

    def describe(self) -> dict:
        variant = self.params.get("variant") or {}
        return {"id": self.id, "method": self.method, "variant": variant.get("name"),
                "elapsed_s": round(time.time() - self.started, 3), "progress": self.progress,
                "cancelled": self.cancelled.is_set()}


class Daemon:
    def __init__(self, device: str, bind: str, *, keys: str | None = None, insecure: bool = False,
                 heartbeat_s: float = 1.0, orphan_s: float = 60.0, parent: int | None = None,
                 grace_s: float = 30.0, memory_limit_bytes: int | None = None):
        try:
            transport, _ = protocol.endpoint_parts(bind)
            refusal = protocol.loopback_refusal(bind)
        except ValueError as exc:
            raise StartupError(f"--bind: {exc}") from None
        exposed = protocol.needs_keys(bind)  # tcp, or an abstract socket: other users reach both
        if exposed and not keys and not insecure:
            raise StartupError(_refused(bind, refusal or ("every local user can connect to an abstract socket "
                                                          "(it has no file, so no permissions)"
                                                          if transport == "ipc" else
                                                          "every local user can reach a loopback port")))
        try:  # before the slow start-up: loose or missing keys are refused at once
            server = protocol.server_keys(keys) if keys else None
        except ValueError as exc:
            raise StartupError(f"--keys: {exc}") from None
        if heartbeat_s <= 0:
            raise StartupError(f"--heartbeat-s {heartbeat_s}: must be > 0")
        self.device = check_device(device)
        self.heartbeat_s, self.orphan_s, self.parent, self.grace_s = heartbeat_s, orphan_s, parent, grace_s
        self.ctx = None
        self.auth = None
        self.run_job = load_run_job()
        from workers.host import Host  # imports torch: the slow part of start-up

        try:
            self.host = Host(self.device, memory_limit_bytes=memory_limit_bytes)
        except Exception as exc:
            raise StartupError(f"--device {device}: cannot start the model host: {one_line(exc)}") from None
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.ROUTER)
        protocol.configure_socket(self.sock)
        if server:
            self._enable_curve(*server)
        try:
            self.sock.bind(bind)
        except zmq.ZMQError as exc:
            self.close()
            raise StartupError(f"--bind {bind}: {exc}") from None
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        if transport == "ipc":
            _owner_only(self.endpoint)
        if exposed and not keys:  # --insecure: said on every start, where the log shows it
            print(f"harness worker: --insecure: {self.endpoint} serves without authentication: anyone who can "
                  f"reach it runs code as uid {os.geteuid()} through its jobs (task !function, trust_remote_code); "
                  "coordinators keep its results out of the shared cache", file=sys.stderr, flush=True)
        self.inbox = self.ctx.socket(zmq.PULL)  # messages from the job thread
        self.inbox.bind(_INPROC)
        self.job: _RunningJob | None = None
        self.peers: dict[bytes, float] = {}  # client identity -> when last heard
        self.stopping: str | None = None     # why we are shutting down
        self.deadline: float | None = None   # when we exit even if the cancelled job has not stopped
        self.jobs_done = 0
        self.started = time.time()

    def _enable_curve(self, public: bytes, secret: bytes, authorized: str) -> None:
        from zmq.auth.thread import ThreadAuthenticator

        self.auth = ThreadAuthenticator(self.ctx)
        self.auth.start()  # before the bind: no unauthenticated window
        self.auth.configure_curve(domain="*", location=authorized)
        self.sock.curve_server = True
        self.sock.curve_publickey = public
        self.sock.curve_secretkey = secret

    # --- the main loop ---------------------------------------------------------------------------
    def serve(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _frame: self._stop(signal.Signals(signum).name))
        print(f"worker ready: {self.endpoint} device={self.device} pid={os.getpid()}", flush=True)
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.inbox, zmq.POLLIN)
        next_beat = time.monotonic()
        try:
            while not self._finished():
                ready = dict(poller.poll(min(self.heartbeat_s, 0.5) * 1000))
                if self.inbox in ready:
                    self._from_job(self.inbox.recv_multipart())
                if self.sock in ready:
                    self._from_client(self.sock.recv_multipart())
                now = time.monotonic()
                if now >= next_beat:
                    self._heartbeat(now)
                    next_beat = now + self.heartbeat_s
        finally:
            self.close()
        print(f"worker stopped: {self.stopping}", flush=True)
        return 0

    def _finished(self) -> bool:
        """Stopping, and the job (if any) has ended or used up its grace."""
        if not self.stopping:
            return False
        return self.job is None or (self.deadline is not None and time.monotonic() > self.deadline)

    def _stop(self, why: str) -> None:
        if not self.stopping:
            self.stopping = why
            self.deadline = time.monotonic() + self.grace_s
        if self.job is not None:
            self.job.cancelled.set()

    def _heartbeat(self, now: float) -> None:
        if self.parent is not None and os.getppid() != self.parent:
            self._stop("parent process exited")
        job = self.job
        if job is not None and self.orphan_s > 0 and now - self.peers.get(job.ident, now) > self.orphan_s:
            job.cancelled.set()  # its client is gone; free the worker for the next one
        frame = protocol.pack(protocol.notification(
            protocol.NOTIFY_HEARTBEAT, {"id": job.id if job else None, "busy": job is not None}))
        ttl = max(self.orphan_s, 10 * self.heartbeat_s)
        for ident, seen in list(self.peers.items()):
            if now - seen > ttl:
                del self.peers[ident]
            else:
                self._send(ident, frame)

    def _send(self, ident: bytes, frame: bytes) -> None:
        try:
            self.sock.send_multipart([ident, frame], zmq.NOBLOCK)
        except zmq.ZMQError:
            pass  # peer gone or its queue full: a ROUTER drops, we do the same

    def _reply(self, ident: bytes, message: dict) -> None:
        self._send(ident, protocol.pack(message))

    def _from_job(self, frames: list[bytes]) -> None:
        kind, ident, frame = frames
        job = self.job
        if kind == b"reply" and job is not None and job.batch is not None:
            batch = job.batch  # the job was a batch member: its batch is answered now, whole
            batch[batch.index(_PENDING)] = frame
            self._send(ident, protocol.batch_frame(batch))
        else:
            self._send(ident, frame)
        if kind == b"progress" and job is not None:
            try:
                job.progress = protocol.unpack(frame).get("params")
            except protocol.ProtocolError:
                pass
        elif kind == b"reply":
            if job is not None and job.thread is not None:
                job.thread.join(timeout=5)
            self.job = None
            self.jobs_done += 1

    def _from_client(self, frames: list[bytes]) -> None:
        ident = frames[0]
        self.peers[ident] = time.monotonic()
        if len(frames) != 2:
            self._reply(ident, protocol.error(None, protocol.INVALID_REQUEST,
                                              f"expected one frame per message, got {len(frames) - 1}"))
            return
        try:
            incoming = protocol.parse_incoming(frames[1])
        except protocol.ProtocolError as exc:
            if not exc.notification:
                self._reply(ident, protocol.error(exc.id, exc.code, exc.message))
            return
        if isinstance(incoming, dict):
            frame = self._answer(ident, incoming)
            if isinstance(frame, bytes):
                self._send(ident, frame)
            return
        batch: list = []
        for member in incoming:
            if isinstance(member, protocol.ProtocolError):
                frame = None if member.notification else protocol.pack(
                    protocol.error(member.id, member.code, member.message))
            else:
                frame = self._answer(ident, member, batch)
            if frame is not None:
                batch.append(frame)
        if batch and _PENDING not in batch:
            self._send(ident, protocol.batch_frame(batch))  # else: when its job ends; none for notifications

    def _answer(self, ident: bytes, msg: dict, batch: list | None = None) -> Any:
        """One request's reply frame; None for a notification; _PENDING for a job it started."""
        if "id" not in msg:  # a notification: only heartbeats mean something (liveness, noted above)
            return None
        id, method, params = msg["id"], msg["method"], msg["params"]
        try:
            if method in protocol.JOB_METHODS:
                self._start_job(ident, id, method, params, batch)
                return _PENDING
            value = getattr(self, f"_m_{method}")(params)
        except JobError as exc:
            return protocol.pack(protocol.error(id, exc.code, exc.message))
        except Exception as exc:  # a bug of ours must not take the daemon down
            return protocol.pack(protocol.error(id, protocol.INTERNAL_ERROR, one_line(exc)))
        return protocol.pack(protocol.result(id, value))

    # --- control methods: answered at once --------------------------------------------------------
    def _m_hello(self, params: dict) -> dict:
        return plain({"device": self.device, "endpoint": self.endpoint, "pid": os.getpid(),
                      "hostname": socket.gethostname(), "memory": memory(self.device),
                      "versions": versions(), "methods": list(protocol.METHODS),
                      "engines": available_engines(),
                      "device_info": self._host_call("device_info"),
                      "busy": self.job.id if self.job else None, "holds": self._host_call("status"),
                      "heartbeat_s": self.heartbeat_s})

    def _m_status(self, params: dict) -> dict:
        return plain({"busy": self.job is not None, "job": self.job.describe() if self.job else None,
                      "holds": self._host_call("status"), "jobs_done": self.jobs_done, "pid": os.getpid(),
                      "uptime_s": round(time.time() - self.started, 3), "stopping": self.stopping})

    def _m_heartbeat(self, params: dict) -> dict:
        return {"busy": self.job.id if self.job else None}

    def _m_cancel(self, params: dict) -> dict:
        want = params.get("id")
        if not protocol._valid_id(want):
            raise JobError(protocol.INVALID_PARAMS, "cancel: 'id' must be a string, an integer or null")
        job = self.job
        if job is None or (want is not None and want != job.id):
            return {"cancelled": False, "id": job.id if job else None}
        job.cancelled.set()
        return {"cancelled": True, "id": job.id}

    def _m_shutdown(self, params: dict) -> dict:
        wait = params.get("wait", False)
        if not isinstance(wait, bool):
            raise JobError(protocol.INVALID_PARAMS, "shutdown: 'wait' must be true or false")
        running = self.job.id if self.job else None
        if wait:
            self.stopping = self.stopping or "shutdown request"
        else:
            self._stop("shutdown request")
        return {"ok": True, "job": running}

    def _host_call(self, name: str) -> Any:
        """host.status() / host.device_info(), or None where the host has no such method."""
        method = getattr(self.host, name, None)
        try:
            return method() if method else None
        except Exception as exc:
            return {"error": one_line(exc)}

    # --- job methods: one at a time, in a thread ---------------------------------------------------
    def _start_job(self, ident: bytes, id: Any, method: str, params: dict, batch: list | None = None) -> None:
        if self.stopping:
            raise JobError(protocol.BUSY, f"worker is shutting down ({self.stopping})")
        if self.job is not None:
            raise JobError(protocol.BUSY, f"worker busy with job {self.job.id!r} ({self.job.method})")
        kind = params.get("kind", method)
        if kind != method:
            raise JobError(protocol.INVALID_PARAMS, f"params.kind {kind!r} does not match method {method!r}")
        if not isinstance(params.get("variant"), dict):
            raise JobError(protocol.INVALID_PARAMS, f"{method}: params.variant must be a map (the variant spec)")
        job = self.job = _RunningJob(ident, id, method, dict(params, kind=method), batch)
        job.thread = threading.Thread(target=self._run_job, args=(job,), name=f"job-{id}", daemon=True)
        job.thread.start()

    def _run_job(self, job: _RunningJob) -> None:
        out = self.ctx.socket(zmq.PUSH)
        out.connect(_INPROC)

        def progress(done: int, total: int, note: str = "") -> None:
            params = {"id": job.id, "done": int(done), "total": int(total), "note": str(note)}
            out.send_multipart([b"progress", job.ident,
                                protocol.pack(protocol.notification(protocol.NOTIFY_PROGRESS, params))])

        try:
            value = self.run_job(job.params, self.host, progress, job.cancelled)
            try:  # what the coordinator will check too: a malformed result is this job's failure, here
                check_result(value, job.method)
            except SchemaError as exc:
                raise JobError(protocol.JOB_FAILED, f"the job's result is malformed: {exc}") from None
            frame = protocol.pack(protocol.result(job.id, value))
            if len(frame) > protocol.MAX_MESSAGE_BYTES:  # ZeroMQ would drop it: the job would look lost
                raise JobError(protocol.JOB_FAILED, f"the job's result is {len(frame):,} bytes, over the frame "
                                                    f"limit of {protocol.MAX_MESSAGE_BYTES:,} bytes; not sent")
        except JobError as exc:
            frame = self._error_frame(job.id, exc.code, exc.message, exc.data)
        except BaseException as exc:
            code, message = _failure(exc)
            frame = self._error_frame(job.id, code, message)
        out.send_multipart([b"reply", job.ident, frame])
        out.close(linger=1000)

    @staticmethod
    def _error_frame(id: Any, code: int, message: str, data: Any = None) -> bytes:
        try:
            return protocol.pack(protocol.error(id, code, message, data))
        except Exception:  # data that does not pack: drop it, keep the error
            return protocol.pack(protocol.error(id, code, message))

    def close(self) -> None:
        for sock in (getattr(self, "inbox", None), getattr(self, "sock", None)):
            if sock is not None and not sock.closed:
                sock.close(linger=0)
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        job = getattr(self, "job", None)
        if self.ctx is not None and (job is None or not job.thread.is_alive()):
            self.ctx.term()  # skipped while a stuck job thread holds a socket: exit frees it


# torch writes "Tried to allocate 2.00 GiB" on CUDA and "you tried to allocate 63352005552 bytes" on CPU
_ALLOC = re.compile(r"tried to allocate (\d+(?:\.\d+)?) ?(bytes|[KMGT]i?B)", re.IGNORECASE)


def _failure(exc: BaseException) -> tuple[int, str]:
    """A job's exception as (code, one line): an allocation that failed is OUT_OF_MEMORY naming the
    bytes asked, however torch said it (``torch.OutOfMemoryError`` on CUDA; on CPU a plain
    ``RuntimeError: ... DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes``)."""
    text = one_line(exc)
    asked = _ALLOC.search(str(exc))
    oom = isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or (
        isinstance(exc, RuntimeError) and asked is not None)
    if not oom:
        return protocol.JOB_FAILED, text
    if asked is None:
        return protocol.OUT_OF_MEMORY, text
    n, unit = float(asked.group(1)), asked.group(2)
    scale = BYTE_UNITS.get(unit.lower(), 1)
    return protocol.OUT_OF_MEMORY, f"out of memory: an allocation of {int(n * scale):,} bytes failed ({text})"


def _refused(bind: str, reason: str) -> str:
    what, private = ("an abstract ipc", ", bind a file socket in a private folder (ipc:///PATH)") \
        if protocol.abstract_ipc(bind) else ("a tcp", "")
    return (f"--bind {bind}: refusing {what} bind without --keys (CURVE): {reason}, and whoever reaches it runs "
            f"code as this user through its jobs; make keys with `harness keys DIR`{private}, or pass --insecure "
            "to serve it in plaintext anyway")


def _owner_only(endpoint: str) -> None:
    """chmod 0600 an ipc socket (connecting needs write permission on it); abstract ones have no file."""
    path = endpoint[len("ipc://"):]
    if path and not path.startswith("@"):
        try:
            os.chmod(path, 0o600)
        except OSError:
            pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m workers.daemon", description="moe-harness worker daemon")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
