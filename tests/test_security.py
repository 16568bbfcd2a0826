"""CURVE keys, authentication, refused binds and the no-pickle rule."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys

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


def test_non_loopback_bind_needs_keys_unless_insecure():
    ep = f"tcp://0.0.0.0:{_free_port()}"
    refused = _daemon("--bind", ep)
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert err.strip() == (f"harness worker: --bind {ep}: refusing a non-loopback address without --keys "
                           "(CURVE); pass --insecure to serve it in plaintext")
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


def test_no_pickle_on_the_wire():
    pattern = re.compile(r"import pickle|pickle\.|_pyobj\(|import marshal|marshal\.")
    wire = ["harness/coordinator.py", "harness/local.py", "workers/daemon.py", "moe_schema/protocol.py"]
    for path in (REPO / name for name in wire):
        assert not pattern.search(path.read_text()), f"{path} mentions pickle"
