"""CURVE keys, authentication, refused binds and the no-pickle rule."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from fault_jobs import REPO, RawClient, env
from harness.cli import main as harness
from harness.coordinator import Coordinator
from moe_schema import protocol as p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys") / "k"
    assert harness(["keys", str(d), "--client", "laptop"]) == 0
    return d


def test_keys_layout_and_modes(keys, capsys):
    names = {f.name for f in keys.iterdir()}
    assert {"server.key", "server.key_secret", "client.key", "client.key_secret", "laptop.key",
            "laptop.key_secret", "authorized"} <= names
    assert sorted(f.name for f in (keys / "authorized").iterdir()) == ["client.key", "laptop.key"]
    for f in keys.glob("*.key_secret"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert harness(["keys", str(keys)]) == 2  # never overwritten silently
    assert "server.key exists; pass --force" in capsys.readouterr().err


def _daemon(*args):
    e = dict(os.environ, **env())
    return subprocess.Popen([sys.executable, "-m", "workers.daemon", *args], env=e, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_curve_daemon_answers_only_authorized_clients(keys, tmp_path):
    port = _free_port()
    ep = f"tcp://127.0.0.1:{port}"
    proc = _daemon("--bind", ep, "--keys", str(keys), "--heartbeat-s", "0.2")
    try:
        with Coordinator([ep], client_keys=keys, heartbeat_s=0.2, timeout_s=1.0) as c:
            (info,) = c.hello(timeout_s=60)
            assert info["pid"] == proc.pid
        plain = RawClient(ep, ctx=zmq.Context())  # no keys at all
        assert plain.call("hello", timeout_s=1.0) is None
        plain.close()
        stranger_dir = tmp_path / "stranger"
        assert harness(["keys", str(stranger_dir)]) == 0  # a valid pair the daemon never authorized
        pub, sec, _ = p.client_keys(stranger_dir)
        server_pub = p.client_keys(keys)[2]
        stranger = RawClient(ep, keys=(pub, sec, server_pub), ctx=zmq.Context())
        assert stranger.call("hello", timeout_s=1.0) is None
        stranger.close()
        laptop_dir = tmp_path / "laptop"  # the extra authorized client, with its own pair
        laptop_dir.mkdir()
        for name in ("laptop.key", "laptop.key_secret"):
            (laptop_dir / name.replace("laptop", "client")).write_bytes((keys / name).read_bytes())
        (laptop_dir / "server.key").write_bytes((keys / "server.key").read_bytes())
        friend = RawClient(ep, keys=p.client_keys(laptop_dir), ctx=zmq.Context())
        assert "result" in friend.call("hello", timeout_s=5.0)
        friend.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def _refused(bind: str, reason: str) -> str:
    return (f"harness worker: --bind {bind}: refusing a non-loopback address without --keys (CURVE): "
            f"{reason}; pass --insecure to serve it in plaintext")


def test_non_loopback_bind_needs_keys_unless_insecure():
    ep = f"tcp://0.0.0.0:{_free_port()}"
    refused = _daemon("--bind", ep)
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert err.strip() == _refused(ep, "0.0.0.0 is not a loopback address")
    allowed = _daemon("--bind", ep, "--insecure")
    try:
        c = RawClient(ep.replace("0.0.0.0", "127.0.0.1"), ctx=zmq.Context())
        assert "result" in c.call("hello", timeout_s=60)
        assert c.call("shutdown")["result"]["ok"]
        c.close()
        assert allowed.wait(timeout=20) == 0
    finally:
        allowed.kill()
        allowed.wait()


def _nothing_listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("bind, reason", [
    # ZeroMQ's SOURCE;DESTINATION form: a check of the start alone let this listen on 0.0.0.0
    ("tcp://127.0.0.1:0;0.0.0.0:{port}", "0.0.0.0 is not a loopback address (part 2 of 2, 0.0.0.0:{port})"),
    ("tcp://127.attacker.example:{port}", "'127.attacker.example' is not an IP address and does not resolve"),
    ("tcp://*:{port}", "'*' is every interface"),
])
def test_a_bind_that_is_not_loopback_in_every_part_is_refused(bind, reason):
    port = _free_port()
    bind, reason = bind.format(port=port), reason.format(port=port)
    proc = _daemon("--bind", bind)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.strip() == _refused(bind, reason)
    assert _nothing_listens(port)


def _outside_interface() -> str | None:
    """A network interface name ZeroMQ binds to a non-loopback address here, if there is one."""
    ctx = zmq.Context()
    try:
        for _, name in socket.if_nameindex():
            sock = ctx.socket(zmq.ROUTER)
            try:
                sock.bind(f"tcp://{name}:0")
                if not p.is_loopback(sock.getsockopt_string(zmq.LAST_ENDPOINT)):
                    return name
            except zmq.ZMQError:
                pass
            finally:
                sock.close(linger=0)
    finally:
        ctx.term()
    return None


def test_the_address_actually_bound_is_checked_too():
    """A name the check takes for loopback (here: a resolver that lies) but ZeroMQ binds elsewhere
    (a network interface's name): ZMQ_LAST_ENDPOINT, read after the bind, is refused."""
    nic = _outside_interface()
    if nic is None:
        pytest.skip("no network interface with a non-loopback address")
    lying = ("import runpy, moe_schema.protocol as p; p._resolve = lambda host: {'127.0.0.1'}; "
             "runpy.run_module('workers.daemon', run_name='__main__')")
    e = dict(os.environ, **env())
    bind = f"tcp://{nic}:{_free_port()}"
    proc = subprocess.run([sys.executable, "-c", lying, "--bind", bind], env=e, text=True, capture_output=True,
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    bound = re.search(r"it bound (tcp://[^,]+), and (\S+) is not a loopback address", line)
    assert bound and line == _refused(bind, f"it bound {bound[1]}, and {bound[2]} is not a loopback address")


def test_keys_folder_without_server_secret_is_refused(tmp_path):
    proc = _daemon("--bind", f"tcp://127.0.0.1:{_free_port()}", "--keys", str(tmp_path))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "server.key_secret: missing" in err


def test_oversized_frame_is_refused_and_the_daemon_serves_on(daemon_pool):
    big = RawClient(daemon_pool.endpoints[1], ctx=zmq.Context())
    big.send(b"\x00" * (p.MAX_MESSAGE_BYTES + 1))  # MAXMSGSIZE: ZeroMQ drops it with the connection
    hello = big.request("hello")  # queued behind it: sent again on the reconnection
    first = big.recv(10)
    assert first["id"] == hello["id"] and "result" in first  # no parse-error reply: the daemon never saw it
    big.close()


def _kib(pid: int, field: str) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_four_million_empty_maps_are_refused_cheaply_and_the_daemon_serves_on(daemon_pool):
    """4 MB of 0x80 bytes is 4,000,000 empty maps: ~290 MB of dicts if decoded. The daemon refuses it
    with a parse error naming the limit, its peak memory grows by less than 10x the frame, and it
    keeps serving."""
    pid = daemon_pool.procs[1].pid
    frame = b"\xdd" + (4_000_000).to_bytes(4, "big") + b"\x80" * 4_000_000
    c = RawClient(daemon_pool.endpoints[1], ctx=zmq.Context())
    assert "result" in c.call("heartbeat")
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident size (VmHWM) to the current one
    rss_before = _kib(pid, "VmRSS")
    c.send(frame)
    reply = c.recv(30)
    grown = (_kib(pid, "VmHWM") - rss_before) * 1024
    assert reply["id"] is None and reply["error"]["code"] == p.PARSE_ERROR
    assert reply["error"]["message"] == (f"frame of {len(frame)} bytes decodes into more than "
                                         f"{p.MAX_REQUEST_OBJECTS} objects, the limit per request frame")
    assert grown < 10 * len(frame), f"decoding grew the daemon by {grown / len(frame):.0f}x the frame"
    assert c.call("hello")["result"]["pid"] == pid
    c.close()


def test_a_16_mib_task_folder_still_travels(daemon_pool, tmp_path):
    """A task folder of exactly the shipping limit, in 1,000 files and one large one, goes to a real
    daemon in its evaluate job's frame, is decoded, unpacked on the worker and evaluated from there."""
    import shutil

    from harness import plan as planner
    from harness.coordinator import Job
    from harness.run import wire_spec
    from harness.suite import load as load_suite
    from moe_schema.taskfiles import SHIP_LIMIT

    folder = tmp_path / "tasks"
    shutil.copytree(REPO / "suites" / "tasks", folder, ignore=shutil.ignore_patterns("__pycache__"))
    for i in range(1000):
        (folder / "data" / f"extra-{i:04d}.txt").write_bytes(b"%d\n" % i)
    used = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    (folder / "data" / "padding.bin").write_bytes(os.urandom(SHIP_LIMIT - used))
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""
name: big-folder
models:
  - name: tiny
    config: {{model_type: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
             num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128}}
tasks:
  - {{path: {folder / "smoke_mc.yaml"}, limit: 2, num_fewshot: 0}}
""")
    _, jobs = planner.expand(load_suite(suite))
    spec = next(j for j in jobs if j.kind == "evaluate").spec
    sent = wire_spec(spec, {})
    files = sent["task"]["files"]
    assert len(files) > 1000 and sum(map(len, files.values())) == SHIP_LIMIT  # shipped, not left behind
    frame = p.pack(p.request("evaluate", sent))
    assert len(frame) > SHIP_LIMIT and p.count_objects(frame, p.MAX_REQUEST_OBJECTS) < p.MAX_REQUEST_OBJECTS
    elsewhere = {**sent, "task": {**sent["task"], "path": "/no/such/host/tasks/smoke_mc.yaml"}}
    outcomes = {}
    with Coordinator(daemon_pool.endpoints, heartbeat_s=0.25, timeout_s=30.0) as coord:
        coord.run([Job("shipped", elsewhere)], lambda job, outcome: outcomes.__setitem__(job.key, outcome))
    assert outcomes["shipped"]["status"] == "ok", outcomes["shipped"]
    unpacked = Path(os.environ["MOE_HARNESS_HOME"]) / "tasks" / sent["task"]["digest"] / "data" / "padding.bin"
    assert unpacked.read_bytes() == (folder / "data" / "padding.bin").read_bytes()


def test_no_pickle_on_the_wire():
    pattern = re.compile(r"import pickle|pickle\.|_pyobj\(|import marshal|marshal\.")
    wire = ["harness/coordinator.py", "harness/local.py", "workers/daemon.py", "moe_schema/protocol.py"]
    for path in (REPO / name for name in wire):
        assert not pattern.search(path.read_text()), f"{path} mentions pickle"
