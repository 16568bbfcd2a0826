"""Start and stop worker daemons on this machine, for runs whose suite names no workers.

    with start_local_workers(2) as workers:
        coordinator = Coordinator(workers.endpoints)
        ...

Each daemon is a ``python -m workers.daemon`` subprocess bound to an ipc:// socket in a private
temp folder (``socket_dir``: one short enough for the kernel's socket path limit), in its own session (a Ctrl-C at the terminal reaches the coordinator only, which
decides what happens to running jobs) and watching its parent (``--parent``: it exits if we die
without stopping it). ``stop()``: a ``shutdown`` request, then SIGTERM, then SIGKILL.
``exit_reason(endpoint)`` says how a daemon that ended did (status or signal, log tail), so the
coordinator reports a dead local worker at once instead of waiting out the heartbeat timeout.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

import zmq

from moe_schema import protocol

REPO = Path(__file__).resolve().parent.parent


class WorkerStartError(RuntimeError):
    """A local daemon exited or stayed silent before answering hello."""


#: the longest ipc socket path the kernel binds: ``sockaddr_un.sun_path`` is 108 bytes with its NUL
MAX_IPC_PATH = 107


def socket_dir(n: int, bases: tuple | None = None) -> Path:
    """A fresh private (0700, ``mkdtemp``) folder for ``n`` daemons' sockets and logs: under the temp
    folder ($TMPDIR) when its socket paths fit the kernel's limit, else under $XDG_RUNTIME_DIR or
    /tmp (a $TMPDIR past ~75 characters made every bind fail and the run end in a traceback)."""
    longest = len(os.fsencode(f"/moe-harness-{'x' * 8}/worker-{n - 1}.sock"))  # mkdtemp: 8 random chars
    if bases is None:
        bases = (tempfile.gettempdir(), os.environ.get("XDG_RUNTIME_DIR"), "/tmp")
    for base in bases:
        if base and os.path.isdir(base) and len(os.fsencode(base)) + longest <= MAX_IPC_PATH:
            return Path(tempfile.mkdtemp(prefix="moe-harness-", dir=base))
    raise WorkerStartError(f"no folder short enough for local worker sockets (at most {MAX_IPC_PATH} bytes): "
                           f"tried {', '.join(str(b) for b in bases if b)}")


def ask(endpoint: str, method: str, params: dict | None = None, timeout_s: float = 5.0,
        ctx: zmq.Context | None = None, keys=None) -> dict | None:
    """One request to one daemon; its reply message, or None after ``timeout_s`` without one."""
    ctx = ctx or zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    protocol.configure_socket(sock)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    if keys:
        sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = protocol.client_keys(keys)
    sock.connect(endpoint)
    req = protocol.request(method, params)
    deadline = time.monotonic() + timeout_s
    sent = False
    try:
        while time.monotonic() < deadline:
            if not sent:
                try:
                    sock.send(protocol.pack(req), zmq.NOBLOCK)
                    sent = True
                except zmq.Again:  # not connected yet
                    time.sleep(0.05)
                    continue
            if sock.poll(100):
                try:
                    msg = protocol.parse_reply(sock.recv())
                except protocol.ProtocolError:
                    continue
                if msg.get("id") == req["id"]:
                    return msg
        return None
    finally:
        sock.close(linger=0)


class LocalWorkers:
    """Daemons started by ``start_local_workers``; ``stop()`` (or leaving the ``with``) ends them."""

    def __init__(self, n: int, device: str, env: dict | None, extra_args: tuple, start_timeout_s: float):
        self.device, self.env, self.extra_args = device, env, tuple(extra_args)
        self.start_timeout_s = start_timeout_s
        self.dir = socket_dir(n)
        self.endpoints = [f"ipc://{self.dir}/worker-{i}.sock" for i in range(n)]
        self.procs: list[subprocess.Popen | None] = [None] * n
        self._logs: list = [None] * n
        self._stopped = False
        atexit.register(_stop_at_exit, weakref.ref(self))

    def log_path(self, i: int) -> Path:
        return self.dir / f"worker-{i}.log"

    def _spawn(self, i: int) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.update(self.env or {})
        if self._logs[i] is not None:
            self._logs[i].close()
        self._logs[i] = open(self.log_path(i), "ab")
        device = f"cuda:{i}" if self.device == "cuda" else self.device  # "cuda": one GPU each
        cmd = [sys.executable, "-m", "workers.daemon", "--device", device, "--bind", self.endpoints[i],
               "--parent", str(os.getpid()), *self.extra_args]
        self.procs[i] = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self._logs[i],
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_ready(self, i: int, deadline: float) -> None:
        proc = self.procs[i]
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = self.log_path(i).read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
                raise WorkerStartError(f"local worker {i} ({self.endpoints[i]}) exited with code "
                                       f"{proc.returncode} before answering hello: {tail[0]}")
            if ask(self.endpoints[i], "hello", timeout_s=0.5) is not None:
                return
        raise WorkerStartError(f"local worker {i} ({self.endpoints[i]}) did not answer hello within "
                               f"{self.start_timeout_s:g} s (log: {self.log_path(i)})")

    def start(self) -> "LocalWorkers":
        for i in range(len(self.endpoints)):
            self._spawn(i)
        deadline = time.monotonic() + self.start_timeout_s
        try:
            for i in range(len(self.endpoints)):
                self._wait_ready(i, deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, i: int, lines: int = 3) -> str:
        try:
            text = self.log_path(i).read_text(errors="replace")
        except OSError:
            return "(no log)"
        tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(tail)[-400:] or "(no output)"

    def exit_reason(self, endpoint: str) -> tuple[str, str] | None:
        """``("worker 0 killed by SIGKILL", "the kernel's OOM killer? log: ...")`` once the daemon
        serving ``endpoint`` has ended; None while it runs (or for an endpoint not ours)."""
        if self._stopped or endpoint not in self.endpoints:
            return None
        i = self.endpoints.index(endpoint)
        proc = self.procs[i]
        if proc is None or proc.poll() is None:
            return None
        code = proc.returncode
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            what = f"worker {i} killed by {name}"
            hint = "the kernel's OOM killer? " if -code == signal.SIGKILL else ""
        else:
            what, hint = f"worker {i} exited with status {code}", ""
        return what, f"{hint}log: {self.log_tail(i)}"

    def restart(self, i: int) -> None:
        """Kill worker ``i`` if it runs and start a fresh one on the same endpoint."""
        self.kill(i)
        self._spawn(i)
        self._wait_ready(i, time.monotonic() + self.start_timeout_s)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            if sig == signal.SIGKILL:
                proc.wait()

    def stop(self, grace_s: float = 10.0) -> None:
        """Shutdown request, then SIGTERM, then SIGKILL; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self._end_processes(grace_s)
        finally:
            for log in self._logs:
                if log is not None:
                    log.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _end_processes(self, grace_s: float) -> None:
        alive = [(i, p) for i, p in enumerate(self.procs) if p is not None and p.poll() is None]
        ctx = zmq.Context()
        try:
            for i, p in alive:
                if p.poll() is None:
                    try:
                        os.kill(p.pid, signal.SIGCONT)  # a frozen daemon cannot read its shutdown
                    except ProcessLookupError:
                        pass
                    try:
                        ask(self.endpoints[i], "shutdown", {"wait": False}, timeout_s=1.0, ctx=ctx)
                    except zmq.ZMQError:
                        pass  # the signals below still end it
        finally:
            ctx.term()
        for sig, wait_s in ((None, grace_s), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            deadline = time.monotonic() + wait_s
            for _, p in alive:
                if sig is not None and p.poll() is None:
                    p.send_signal(sig)
            for _, p in alive:
                try:
                    p.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            if all(p.poll() is not None for _, p in alive):
                break

    def __enter__(self) -> "LocalWorkers":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _stop_at_exit(ref) -> None:
    workers = ref()
    if workers is not None:
        workers.stop(grace_s=2.0)


def start_local_workers(n: int, device: str = "cpu", *, env: dict | None = None, extra_args=(),
                        start_timeout_s: float = 120.0) -> LocalWorkers:
    """Start ``n`` daemons on ``device`` and wait until each answers hello. ``device="cuda"`` puts
    daemon i on ``cuda:i``; ``env`` adds environment variables; ``extra_args`` go to each daemon."""
    if n < 1:
        raise ValueError(f"start_local_workers: n must be >= 1, got {n}")
    return LocalWorkers(n, device, env, extra_args, start_timeout_s).start()
