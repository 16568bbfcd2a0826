"""Test-only job runner loaded into real daemon processes with ``env()`` below
(``MOE_HARNESS_RUN_JOB=fault_jobs:run_job``, tests/ on PYTHONPATH), and small helpers for the
daemon and coordinator tests.

A ``probe`` job whose probe name starts with ``test-`` is handled here, so fault tests get jobs
that run long enough to be killed mid-way, or that fail in a chosen way; every other job goes to
the real ``workers.jobs.run_job``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import zmq

from moe_schema import protocol
from workers.errors import JobCancelled, JobError

REPO = Path(__file__).resolve().parent.parent
VARIANT = {"name": "tiny", "model": "tiny", "build": {"checkpoint": "/nonexistent"}, "routing": None,
           "dtype": "float32", "trust_remote_code": False, "experts_implementation": None}


def collect_outcomes():
    """``(outcomes, on_result)``: each job key's outcomes with the monotonic time they arrived, for
    Coordinator.run(on_result=...) from the coordinator's threads."""
    outcomes: dict[str, list] = {}
    lock = threading.Lock()

    def on_result(job, outcome):
        with lock:
            outcomes.setdefault(job.key, []).append((time.monotonic(), outcome))

    return outcomes, on_result


def env() -> dict:
    """Environment for start_local_workers: daemons that run this module's test probes."""
    return {"MOE_HARNESS_RUN_JOB": "fault_jobs:run_job",
            "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}


def probe_spec(name: str, **params) -> dict:
    return {"kind": "probe", "variant": dict(VARIANT), "probe": {"name": name, "params": params}}


class RawClient:
    """One DEALER socket speaking raw frames to one daemon (what a coordinator does, by hand)."""

    def __init__(self, endpoint: str, keys=None, ctx: zmq.Context | None = None):
        self.ctx = ctx or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        protocol.configure_socket(self.sock)
        if keys:
            self.sock.curve_publickey, self.sock.curve_secretkey, self.sock.curve_serverkey = keys
        self.sock.connect(endpoint)

    def send(self, *frames: bytes) -> None:
        self.sock.send_multipart(list(frames))

    def request(self, method: str, params=None, id=None) -> dict:
        msg = protocol.request(method, params, id=id)
        self.send(protocol.pack(msg))
        return msg

    def recv(self, timeout_s: float = 5.0, skip_notifications: bool = True) -> dict | list | None:
        """The next message (notifications skipped unless asked), or None after timeout_s. A batch
        reply comes back as the list of its replies."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(left * 1000):
                return None
            msg = protocol.unpack(self.sock.recv())
            if isinstance(msg, list):
                return [protocol.check_reply(m) for m in msg]
            msg = protocol.check_reply(msg)
            if not (skip_notifications and "method" in msg):
                return msg

    def call(self, method: str, params=None, timeout_s: float = 5.0) -> dict | None:
        """Send a request and return the reply carrying its id (others are dropped)."""
        req = self.request(method, params)
        deadline = time.monotonic() + timeout_s
        while (msg := self.recv(max(0.0, deadline - time.monotonic()))) is not None:
            if isinstance(msg, dict) and msg.get("id") == req["id"]:
                return msg
        return None

    def close(self) -> None:
        self.sock.close(linger=0)


def run_job(job, host, progress, cancelled):
    probe = job.get("probe") or {}
    name = probe.get("name", "") if job.get("kind") == "probe" else ""
    if not name.startswith("test-"):
        from workers.jobs import run_job as real

        return real(job, host, progress, cancelled)
    params = probe.get("params") or {}
    if name == "test-stall":  # run for params.seconds, reporting progress, honouring cancel
        seconds, t0 = float(params.get("seconds", 1.0)), time.monotonic()
        steps = max(1, int(seconds / 0.05))
        for i in range(steps):
            if cancelled.wait(0.05):
                raise JobCancelled()
            if i % 10 == 0:
                progress(i, steps, "stalling")
        return {"probe": {"name": name, "params": params, "rows": [],  # a probe result's shape (moe_schema.result)
                          "slept_s": round(time.monotonic() - t0, 3), "tag": params.get("tag")},
                "env": {"pid": os.getpid()}}
    if name == "test-touch":  # code a job runs as the daemon's user (a task's !function): leaves a marker
        Path(params["path"]).write_text(f"code ran as uid={os.getuid()}\n")
        return {"probe": {"name": name, "params": params, "rows": []}}
    if name == "test-crash":  # take the whole daemon down, as a segfault or the OOM killer would
        os.kill(os.getpid(), signal.SIGKILL)
    if name == "test-fail":
        raise ValueError("boom\nsecond line")
    if name == "test-oom":
        raise MemoryError("pretend the device is full")
    if name == "test-load-failed":
        raise JobError(protocol.MODEL_LOAD_FAILED, "no such checkpoint /nowhere")
    if name == "test-big":  # a result over the frame limit (params.mib MiB in one row)
        return {"probe": {"name": name, "rows": [{"blob": "x" * (int(params.get("mib", 65)) << 20)}]}}
    if name == "test-alloc":  # a real torch allocation that cannot succeed (params.bytes)
        import torch

        torch.empty(int(params.get("bytes", 10 ** 15)), dtype=torch.uint8)
        return {"probe": {"name": name, "rows": []}}
    if name == "test-unpackable":  # passes the result schema (rows are the probe's own), fails msgpack
        return {"probe": {"name": name, "rows": [{"value": object()}]}}
    if name == "test-malformed":  # a kind's bug: a result the coordinator must never store as ok
        return {"probe": {"name": name, "rows": "not a list"}, "status": "ok"}
    raise JobError(protocol.INVALID_PARAMS, f"probe.name: unknown test probe {name!r}")
