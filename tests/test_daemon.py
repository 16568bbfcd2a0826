"""workers.daemon: real daemon processes answering real ZeroMQ requests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from fault_jobs import VARIANT, RawClient, env, probe_spec
from harness.local import start_local_workers
from moe_schema import protocol as p


@pytest.fixture
def client(daemon_pool):
    c = RawClient(daemon_pool.endpoints[0])
    yield c
    c.call("cancel", {})  # leave the shared daemon idle for the next test
    _wait_idle(c)
    c.close()


def _wait_idle(c: RawClient, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        reply = c.call("status", timeout_s=2)
        if reply and not reply["result"]["busy"]:
            return
        time.sleep(0.05)
    raise AssertionError("daemon still busy")


def test_hello_reports_capabilities(client):
    info = client.call("hello")["result"]
    assert info["device"] == "cpu" and info["busy"] is None and isinstance(info["pid"], int)
    assert info["pid"] != os.getpid()
    assert info["versions"]["torch"] and info["versions"]["python"]
    assert info["memory"]["total_bytes"] > 0
    assert set(p.METHODS) <= set(info["methods"])
    assert "builds" in info["holds"]  # host.status()


def test_a_job_runs_while_control_methods_answer(client):
    job = client.request("probe", probe_spec("test-stall", seconds=1.5, tag="x"))
    progress, beats = [], []
    time.sleep(0.3)
    status = client.call("status")["result"]  # answered while the job thread runs
    assert status["busy"] and status["job"]["id"] == job["id"] and status["job"]["method"] == "probe"
    assert client.call("heartbeat")["result"]["busy"] == job["id"]
    busy = client.call("describe", {"kind": "describe", "variant": VARIANT})
    assert busy["error"]["code"] == p.BUSY and str(job["id"]) in busy["error"]["message"]
    while (msg := client.recv(5, skip_notifications=False)) is not None:
        if msg.get("method") == p.NOTIFY_PROGRESS:
            progress.append(msg["params"])
        elif msg.get("method") == p.NOTIFY_HEARTBEAT:
            beats.append(msg["params"])
        elif msg.get("id") == job["id"]:
            break
    assert msg["result"]["probe"] == {"name": "test-stall", "params": {"seconds": 1.5, "tag": "x"}, "rows": [],
                                      "slept_s": pytest.approx(1.5, abs=1.0), "tag": "x"}
    assert progress and all(pr["id"] == job["id"] and pr["total"] > 0 for pr in progress)
    assert any(b["busy"] and b["id"] == job["id"] for b in beats)  # a long job never looks dead


def test_cancel_stops_a_running_job(client):
    job = client.request("probe", probe_spec("test-stall", seconds=30))
    time.sleep(0.2)
    assert client.call("cancel", {"id": "not-this-one"})["result"]["cancelled"] is False
    assert client.call("cancel", {"id": job["id"]})["result"] == {"cancelled": True, "id": job["id"]}
    t0 = time.monotonic()
    while (msg := client.recv(5)) is not None and msg.get("id") != job["id"]:
        pass
    assert msg["error"]["code"] == p.JOB_CANCELLED and time.monotonic() - t0 < 3


@pytest.mark.parametrize("probe, code, text", [
    ("test-fail", p.JOB_FAILED, "ValueError: boom second line"),  # one line
    ("test-oom", p.OUT_OF_MEMORY, "MemoryError"),
    ("test-load-failed", p.MODEL_LOAD_FAILED, "no such checkpoint /nowhere"),
    ("test-unpackable", p.JOB_FAILED, "serialize"),
    # checked before it is sent (moe_schema.result): the bad value's path, not a stored "ok"
    ("test-malformed", p.JOB_FAILED, "the job's result is malformed: result.status: unknown key"),
])
def test_job_errors_become_error_replies(client, probe, code, text):
    reply = client.call("probe", probe_spec(probe))
    assert reply["error"]["code"] == code and text in reply["error"]["message"]
    assert "\n" not in reply["error"]["message"]
    assert client.call("heartbeat")["result"]["busy"] is None  # and the daemon serves on


@pytest.mark.parametrize("method, params, code, text", [
    ("describe", {"variant": "tiny"}, p.INVALID_PARAMS, "params.variant must be a map"),
    ("describe", {"kind": "probe", "variant": VARIANT}, p.INVALID_PARAMS, "does not match method"),
    ("cancel", {"id": [1]}, p.INVALID_PARAMS, "'id'"),
    ("shutdown", {"wait": "yes"}, p.INVALID_PARAMS, "'wait'"),
])
def test_bad_params_are_named(client, method, params, code, text):
    reply = client.call(method, params)
    assert reply["error"]["code"] == code and text in reply["error"]["message"]


def test_bad_messages_get_errors_or_are_dropped(client):
    client.send(b"\xc1garbage")
    assert client.recv()["error"]["code"] == p.PARSE_ERROR
    client.send(p.pack(p.request("hello")), b"second frame")
    assert client.recv()["error"]["code"] == p.INVALID_REQUEST
    client.send(p.pack({"jsonrpc": "2.0", "id": 9, "method": "sleep"}))
    reply = client.recv()
    assert reply["id"] == 9 and reply["error"]["code"] == p.METHOD_NOT_FOUND
    client.send(p.pack({"jsonrpc": "2.0", "method": "sleep"}))  # a notification: no reply
    client.send(p.pack(p.notification("heartbeat")))            # a heartbeat notification: no reply
    reply = client.call("hello")
    assert "result" in reply and reply["result"]["busy"] is None


# --- JSON-RPC 2.0 batches (section 7 of the spec), in msgpack form ----------------------------------
def _before_sentinel(c: RawClient) -> list:
    """Every reply the daemon sends before answering a fresh request (notifications skipped):
    what it answered to the messages sent just before, made observable without a timeout."""
    sentinel = c.request("heartbeat", id=f"sentinel-{time.monotonic_ns()}")
    replies = []
    while (msg := c.recv(10)) is not None and not (isinstance(msg, dict) and msg.get("id") == sentinel["id"]):
        replies.append(msg)
    assert msg is not None, "the daemon stopped answering"
    return replies


def _codes(replies: list[dict]) -> dict:
    return {r["id"]: r["error"]["code"] if "error" in r else "ok" for r in replies}


def test_the_spec_batch_gets_one_reply_per_request(client):
    """Section 7's "rpc call Batch", this daemon's methods in place of sum / subtract / get_data."""
    client.send(p.pack([
        {"jsonrpc": "2.0", "method": "hello", "params": {}, "id": "1"},
        {"jsonrpc": "2.0", "method": "heartbeat", "params": {}},                # a notification: no reply
        {"jsonrpc": "2.0", "method": "status", "params": [42, 23], "id": "2"},  # positional params
        {"foo": "boo"},
        {"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},
        {"jsonrpc": "2.0", "method": "heartbeat", "id": "9"},
    ]))
    (replies,) = _before_sentinel(client)
    assert isinstance(replies, list) and len(replies) == 5
    assert _codes(replies) == {"1": "ok", "2": p.INVALID_PARAMS, None: p.INVALID_REQUEST,
                               "5": p.METHOD_NOT_FOUND, "9": "ok"}
    by_id = {r["id"]: r for r in replies}
    assert by_id["1"]["result"]["device"] == "cpu" and by_id["9"]["result"] == {"busy": None}
    assert all(r["jsonrpc"] == "2.0" for r in replies)


@pytest.mark.parametrize("frame, expected", [
    (p.pack([]), {"array": False, "codes": [p.INVALID_REQUEST]}),          # empty: one reply, not an array
    (p.pack([1]), {"array": True, "codes": [p.INVALID_REQUEST]}),
    (p.pack([1, 2, 3]), {"array": True, "codes": [p.INVALID_REQUEST] * 3}),
    (p.pack([p.notification("heartbeat"), {"jsonrpc": "2.0", "method": "status"},
             {"jsonrpc": "2.0", "method": "nope", "params": {}}]), None),  # notifications only: nothing
    (p.pack([p.request("hello", id="1"), {"jsonrpc": "2.0", "method": "x"}])[:-6],  # "invalid JSON"
     {"array": False, "codes": [p.PARSE_ERROR]}),
    (p.pack([p.request("heartbeat")] * (p.MAX_BATCH + 1)), {"array": False, "codes": [p.INVALID_REQUEST]}),
], ids=["empty", "one-invalid", "three-invalid", "notifications-only", "truncated", "too-long"])
def test_each_batch_form_is_answered_as_the_spec_says(client, frame, expected):
    client.send(frame)
    replies = _before_sentinel(client)
    if expected is None:
        assert replies == []
        return
    (reply,) = replies
    assert isinstance(reply, list) is expected["array"]
    members = reply if expected["array"] else [reply]
    assert [m["error"]["code"] for m in members] == expected["codes"]
    assert all(m["id"] is None and "\n" not in m["error"]["message"] for m in members)


def test_a_batch_that_starts_a_job_is_answered_when_the_job_ends(client, daemon_pool):
    """Job methods in a batch keep the one-job-at-a-time rule: the first starts, the second is BUSY,
    and the whole batch is answered once, after the job."""
    job = p.request("probe", probe_spec("test-stall", seconds=1.0, tag="batched"), id="job")
    client.send(p.pack([job, p.request("describe", {"kind": "describe", "variant": VARIANT}, id="second"),
                        p.request("status", id="st"), p.notification("heartbeat")]))
    time.sleep(0.2)
    other = RawClient(daemon_pool.endpoints[0])  # another client, meanwhile
    busy = other.call("evaluate", {"kind": "evaluate", "variant": VARIANT, "task": {"name": "t"}})
    assert busy["error"]["code"] == p.BUSY and "'job'" in busy["error"]["message"]
    other.close()
    progress = []
    while (msg := client.recv(10, skip_notifications=False)) is not None and not isinstance(msg, list):
        assert "method" in msg, f"a batch member answered on its own: {msg}"
        if msg["method"] == p.NOTIFY_PROGRESS:
            progress.append(msg["params"])
    assert msg is not None, "no batch reply"
    assert _codes(msg) == {"job": "ok", "second": p.BUSY, "st": "ok"}
    by_id = {r["id"]: r for r in msg}
    assert by_id["job"]["result"]["probe"]["tag"] == "batched"
    assert by_id["st"]["result"]["busy"] and by_id["st"]["result"]["job"]["id"] == "job"
    assert progress and all(pr["id"] == "job" for pr in progress)  # progress still flows meanwhile
    assert client.call("status")["result"]["busy"] is False


def test_a_cancelled_job_answers_its_batch(client):
    client.send(p.pack([p.request("probe", probe_spec("test-stall", seconds=30), id="long")]))
    time.sleep(0.2)
    assert client.call("cancel", {"id": "long"})["result"]["cancelled"] is True
    while (msg := client.recv(10)) is not None and not isinstance(msg, list):
        pass
    assert msg is not None and _codes(msg) == {"long": p.JOB_CANCELLED}


def test_describe_job_on_a_tiny_config_build(client):
    pytest.importorskip("workers.jobs")
    variant = dict(VARIANT, build={"config": {"model_type": "olmoe", "hidden_size": 32, "intermediate_size": 32,
                                              "num_hidden_layers": 2, "num_attention_heads": 4,
                                              "num_key_value_heads": 4, "num_experts": 4,
                                              "num_experts_per_tok": 2, "vocab_size": 260}, "seed": 0})
    reply = client.call("describe", {"kind": "describe", "variant": variant}, timeout_s=120)
    assert "result" in reply, reply.get("error")
    assert reply["result"]["params"]["total"] > reply["result"]["params"]["active"] > 0


def _spawn(*args: str, **kwargs) -> subprocess.Popen:
    e = dict(os.environ, **env())
    return subprocess.Popen([sys.executable, "-m", "workers.daemon", *args], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.parametrize("args, text", [
    (["--device", "gpu", "--bind", "ipc:///tmp/x.sock"], "--device 'gpu': expected cpu, cuda:N or mps"),
    (["--bind", "udp://1.2.3.4:5"], "--bind: endpoint 'udp://1.2.3.4:5'"),
    (["--bind", "ipc:///tmp/x.sock", "--heartbeat-s", "0"], "--heartbeat-s 0.0: must be > 0"),
])
def test_bad_startup_arguments_exit_2_with_one_line(args, text):
    proc = _spawn(*args)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and text in err and len(err.strip().splitlines()) == 1


def test_sigterm_cancels_the_job_replies_and_exits_0():
    with start_local_workers(1, env=env()) as workers:
        c = RawClient(workers.endpoints[0])
        job = c.request("probe", probe_spec("test-stall", seconds=60))
        time.sleep(0.3)
        proc = workers.procs[0]
        proc.send_signal(signal.SIGTERM)
        while (msg := c.recv(10)) is not None and msg.get("id") != job["id"]:
            pass
        assert msg["error"]["code"] == p.JOB_CANCELLED
        assert proc.wait(timeout=10) == 0
        assert "worker stopped: SIGTERM" in workers.log_path(0).read_text()
        c.close()


def test_shutdown_request_and_orphaned_job_and_parent_watch(tmp_path):
    ep = f"ipc://{tmp_path}/d.sock"
    proc = _spawn("--bind", ep, "--orphan-s", "1", "--heartbeat-s", "0.2")
    try:
        gone = RawClient(ep)
        assert gone.call("hello", timeout_s=60) is not None
        gone.request("probe", probe_spec("test-stall", seconds=60))
        gone.close()  # its client vanished without a word: the job is cancelled after --orphan-s
        watcher = RawClient(ep)
        deadline = time.monotonic() + 10
        while watcher.call("status")["result"]["busy"]:
            assert time.monotonic() < deadline, "orphaned job still running"
            time.sleep(0.2)
        assert watcher.call("status")["result"]["jobs_done"] == 1
        assert watcher.call("shutdown")["result"]["ok"] is True
        assert proc.wait(timeout=10) == 0
        watcher.close()
    finally:
        proc.kill()
        proc.wait()
    orphan = _spawn("--bind", f"ipc://{tmp_path}/e.sock", "--parent", "1")  # 1 is not its parent
    assert orphan.wait(timeout=60) == 0 and "parent process exited" in orphan.communicate()[0]


TINY_QWEN3_MOE = {"model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 128,
                  "moe_intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "num_key_value_heads": 1, "head_dim": 32, "num_experts": 4, "num_experts_per_tok": 2,
                  "max_position_embeddings": 256}


def test_a_worker_without_vllm_lists_only_transformers_and_refuses_a_vllm_job_in_one_line(client):
    import importlib.util
    from importlib import metadata

    # the default test environment has no vLLM (requirements/lock.txt); tox -e vllm tests the engine
    assert importlib.util.find_spec("vllm") is None
    assert client.call("hello")["result"]["engines"] == {"transformers": metadata.version("transformers")}
    variant = {"name": "tiny@vllm", "build": {"config": TINY_QWEN3_MOE, "seed": 0}, "dtype": "float32",
               "engine": {"name": "vllm", "params": {}}}
    error = client.call("describe", {"kind": "describe", "variant": variant}, timeout_s=60)["error"]
    assert error["code"] == p.UNSUPPORTED
    assert error["message"].startswith("variant tiny@vllm: engine vllm is not installed in this worker (")
    assert "\n" not in error["message"]
    ok = client.call("describe", {"kind": "describe", "variant": {**variant, "engine": None}}, timeout_s=120)["result"]
    assert ok["engine"] == {"name": "transformers", "version": metadata.version("transformers")}


@pytest.mark.parametrize("exc, code, text", [
    (RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: "
                  "you tried to allocate 63352005552 bytes."), p.OUT_OF_MEMORY, "63,352,005,552 bytes"),
    (type("OutOfMemoryError", (RuntimeError,), {})(
        "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.11 GiB total capacity)"),
     p.OUT_OF_MEMORY, "2,147,483,648 bytes"),
    (MemoryError(), p.OUT_OF_MEMORY, "MemoryError"),
    (RuntimeError("shape mismatch"), p.JOB_FAILED, "shape mismatch"),
])
def test_an_allocation_failure_is_out_of_memory_naming_the_bytes_however_torch_says_it(exc, code, text):
    from workers.daemon import _failure
    got_code, line = _failure(exc)
    assert (got_code, "\n" in line) == (code, False)
    assert text in line
