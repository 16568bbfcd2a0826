"""A scripted worker for coordinator tests: a real ZeroMQ ROUTER socket speaking moe_schema.protocol on
its own thread, answering hello and heartbeats like a daemon and doing with each job what the test says.
No model, no torch: the coordinator's reliability rules and the run's rerun rules in milliseconds."""

from __future__ import annotations

import threading
import time

import zmq

from moe_schema import protocol

# Coordinator settings for scripted runs: a lost worker shows in under half a second. check_result=None:
# the jobs here are not real kinds' jobs ({"n": k} in and out); tests/test_result_schema.py checks results.
FAST = dict(heartbeat_s=0.05, timeout_s=0.4, check_result=None)
DEADLINE_S = 20.0  # every scripted run finishes in about a second; a hang fails with a message instead


def valid_result(spec: dict, **extra) -> dict:
    """The smallest result of ``spec``'s kind that passes the job result's schema (moe_schema.result),
    with ``extra`` entries of the kind's own."""
    kind = spec.get("kind")
    params = {"total": 100, "active": 100, "total_no_embed": 90, "active_no_embed": 90, "num_experts": None,
              "experts_per_token": None, "active_measured": False}
    own = {"describe": {"params": params, "build": {"moe": False}},
           "evaluate": {"params": params, "metrics": {}, "samples": {}},
           "probe": {"params": params, "probe": {"name": (spec.get("probe") or {}).get("name", "probe"), "rows": []}},
           "train": {"train": {"curve": []}}}[kind]
    return {**own, **extra, "timings": {"load_s": 0.0, "run_s": 0.0, "model_cached": False}}


class Peer(threading.Thread):
    """A worker that answers hello and heartbeats, and handles each job with ``on_job(params)``:
    return ``("result", value)``, ``("error", code, message)``, ``("freeze", seconds, reply)``
    (say nothing at all for that long, then send ``reply`` if not None), ``("forget",)`` (keep
    answering heartbeats as if restarted, and never reply to the job), ``("hang",)`` (say it runs
    the job and never finish it; with ``confirm_cancel`` a cancel of it is answered, as a daemon
    does, with a JOB_CANCELLED error for the job), or ``("progress", [params, ...], value)`` (send a
    progress notification with each params, the job's request id added where they have no ``id``,
    then the result), or ``("later", seconds, value)`` (answer heartbeats as busy with the job, and
    reply ``value`` after that long). ``hello_busy``: what hello says the worker runs (a daemon serving someone
    else), until ``hello_busy`` is set to None. ``engines``: what hello lists as the engines it hosts
    (``{"transformers": "5.19", "vllm": "0.32.0"}``); None: no ``engines`` entry (a daemon from before)."""

    def __init__(self, endpoint: str, on_job, holds_trained=(), hello_busy=None, confirm_cancel=False,
                 engines=None):
        super().__init__(daemon=True)
        self.engines = engines
        self.endpoint, self.on_job, self.holds_trained = endpoint, on_job, list(holds_trained)
        self.hello_busy, self.confirm_cancel = hello_busy, confirm_cancel
        self.hellos = 0
        self.jobs: list[dict] = []
        self.cancels: list[str] = []
        self._quit = threading.Event()
        self._ready = threading.Event()
        self.start()
        assert self._ready.wait(5), f"peer {endpoint} did not bind"

    def run(self):
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.ROUTER)
        sock.bind(self.endpoint)
        self._ready.set()
        silent_until, pending, running, later = 0.0, [], None, []
        try:
            while not self._quit.is_set():
                for item in [x for x in later if time.monotonic() >= x[0]]:  # ("later", ...) replies now due
                    sock.send_multipart([item[1], item[2]])
                    later.remove(item)
                    running = None
                if pending and time.monotonic() >= silent_until:
                    for ident, frame in pending:
                        sock.send_multipart([ident, frame])
                    pending, running = [], None
                if not sock.poll(20):
                    continue
                ident, frame = sock.recv_multipart()
                if time.monotonic() < silent_until:
                    continue  # frozen: everything sent to it is lost
                msg = protocol.parse_request(frame)
                method, params, rid = msg["method"], msg.get("params", {}), msg.get("id")
                if method == "hello":
                    self.hellos += 1
                    info = {"busy": self.hello_busy, "holds": {"trained": self.holds_trained}}
                    if self.engines is not None:
                        info["engines"] = dict(self.engines)
                    reply = protocol.result(rid, info)
                elif method == "heartbeat":
                    reply = protocol.result(rid, {"busy": running})
                elif method == "cancel":
                    self.cancels.append(params.get("id"))
                    reply = protocol.result(rid, {"cancelled": True})
                    if self.confirm_cancel and running is not None and params.get("id") == running:
                        sock.send_multipart([ident, protocol.pack(
                            protocol.error(running, protocol.JOB_CANCELLED, "cancelled"))])
                        running = None
                else:
                    self.jobs.append(params)
                    action = self.on_job(params)
                    if action[0] == "result":
                        reply = protocol.result(rid, action[1])
                    elif action[0] == "error":
                        reply = protocol.error(rid, action[1], "" if action[2] is ... else action[2])
                        if action[2] is ...:  # an error with no message at all
                            del reply["error"]["message"]
                    elif action[0] == "freeze":
                        silent_until = time.monotonic() + action[1]
                        if action[2] is not None:  # it still runs the job until it replies
                            pending.append((ident, protocol.pack(protocol.result(rid, action[2]))))
                            running = rid
                        continue
                    elif action[0] == "progress":
                        for note in action[1]:
                            sock.send_multipart([ident, protocol.pack(protocol.notification(
                                protocol.NOTIFY_PROGRESS, {"id": rid, **note}))])
                        reply = protocol.result(rid, action[2])
                    elif action[0] == "later":  # busy with it (heartbeats say so), replies after a while
                        later.append((time.monotonic() + action[1], ident, protocol.pack(protocol.result(rid, action[2]))))
                        running = rid
                        continue
                    elif action[0] == "raw":
                        sock.send_multipart([ident, action[1](rid)], copy=False)
                        continue
                    elif action[0] == "hang":
                        running = rid  # says it runs the job, and never finishes it
                        continue
                    else:  # "forget": the daemon restarted under the job
                        running = None
                        continue
                sock.send_multipart([ident, protocol.pack(reply)])
        finally:
            sock.close(linger=0)

    def stop(self):
        self._quit.set()
        self.join(5)
