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
import zmq.auth

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


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_layout_and_modes(keys, capsys):
    """One folder per side (finding 12 of issue 25): server/ for worker hosts holds no client secret,
    each client's folder no server secret; secrets 0600, folders made here 0700."""
    assert sorted(f.name for f in keys.iterdir()) == ["client", "laptop", "server"]
    assert sorted(f.name for f in (keys / "server").iterdir()) == ["authorized", "server.key", "server.key_secret"]
    assert sorted(f.name for f in (keys / "server" / "authorized").iterdir()) == ["client.key", "laptop.key"]
    for client in ("client", "laptop"):
        assert sorted(f.name for f in (keys / client).iterdir()) == ["client.key", "client.key_secret", "server.key"]
        assert (keys / client / "server.key").read_bytes() == (keys / "server" / "server.key").read_bytes()
    assert not list((keys / "server").rglob("client.key_secret"))
    for f in keys.rglob("*.key_secret"):
        assert _mode(f) == 0o600, f
    for d in (keys, keys / "server", keys / "server" / "authorized", keys / "client", keys / "laptop"):
        assert _mode(d) == 0o700, d
    assert harness(["keys", str(keys)]) == 2  # never overwritten silently
    assert f"{keys / 'server' / 'server.key_secret'} exists; pass --force" in capsys.readouterr().err


def test_keys_in_an_existing_folder_leave_its_mode_alone(tmp_path):
    """Finding 12: `harness keys DIR` on a shared 1777 folder turned it 0700."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    assert harness(["keys", str(shared)]) == 0
    assert _mode(shared) == 0o1777 and _mode(shared / "server") == 0o700


def test_force_never_puts_a_new_secret_where_others_can_read_it(tmp_path):
    """Finding 12: --force rewrote a secret in place, so a file others could read (a 0644 secret, a
    hard link made to it) held the new secret. Now each secret is a fresh 0600 file renamed in."""
    d = tmp_path / "k"
    assert harness(["keys", str(d)]) == 0
    (secret,) = d.rglob("server.key_secret")
    secret.chmod(0o644)
    leak = tmp_path / "leak"
    os.link(secret, leak)  # what another user could still read, had they a way in
    old = leak.read_bytes()
    assert harness(["keys", str(d), "--force"]) == 0
    assert leak.read_bytes() == old and secret.read_bytes() != old
    assert _mode(secret) == 0o600 and secret.stat().st_ino != leak.stat().st_ino
    assert not [f for f in d.rglob(".*.tmp")]


def test_an_old_one_folder_layout_is_refused_and_split_in_place(tmp_path, capsys):
    """Old key folders (both secrets together) are refused by daemons and clients with the way out;
    `harness keys DIR --split` moves the same keys into server/ and client/."""
    import zmq.auth

    old = tmp_path / "old"
    old.mkdir(mode=0o700)
    for name in ("server", "client", "laptop"):
        zmq.auth.create_certificates(old, name)
        (old / f"{name}.key_secret").chmod(0o600)
    (old / "authorized").mkdir(mode=0o700)
    for name in ("client", "laptop"):
        (old / "authorized" / f"{name}.key").write_bytes((old / f"{name}.key").read_bytes())
    client_pair = zmq.auth.load_certificate(old / "client.key_secret")
    proc = _daemon("--bind", f"tcp://127.0.0.1:{_free_port()}", "--keys", str(old))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip() == (f"harness worker: --keys: {old}: holds both server.key_secret and client.key_secret (the "
                           "old one-folder layout, which puts a client secret on every worker host); split it with "
                           f"`harness keys {old} --split`, then copy only its server/ to worker hosts")
    assert harness(["keys", str(old), "--split"]) == 0
    assert p.client_keys(old)[:2] == client_pair and p.client_keys(old / "laptop")[2] == p.server_keys(old)[0]
    assert sorted(f.name for f in (old / "server").iterdir()) == ["authorized", "server.key", "server.key_secret"]


@pytest.mark.parametrize("name, mode, said", [  # found wherever the layout puts them (so also in the old one)
    ("server.key_secret", 0o644, "server/server.key_secret: a secret readable by others (mode 0644)"),
    ("authorized", 0o777, "server/authorized: writable by group or others (mode 0777)"),
    ("client.key", 0o666, "server/authorized/client.key: writable by group or others (mode 0666)"),
])
def test_a_daemon_refuses_keys_others_could_read_or_replace(tmp_path, name, mode, said):
    """Finding 12: a daemon started without a word on a 0644 secret and a 0777 authorized/ folder."""
    k = tmp_path / "k"
    assert harness(["keys", str(k)]) == 0
    next(f for f in k.rglob(name) if name != "client.key" or f.parent.name == "authorized").chmod(mode)
    proc = _daemon("--bind", f"tcp://127.0.0.1:{_free_port()}", "--keys", str(k))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    (line,) = err.strip().splitlines()
    assert line.startswith(f"harness worker: --keys: {k}/{said}; `chmod "), line


def _daemon(*args, **popen):
    e = dict(os.environ, **env())
    return subprocess.Popen([sys.executable, "-m", "workers.daemon", *args], env=e, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


@pytest.fixture(scope="module")
def curve_daemon(keys):
    """One real daemon on loopback tcp with keys, as README starts one; it runs fault_jobs' test probes."""
    ep = f"tcp://127.0.0.1:{_free_port()}"
    proc = _daemon("--bind", ep, "--keys", str(keys / "server"), "--heartbeat-s", "0.2")
    yield ep, proc
    proc.terminate()
    assert proc.wait(timeout=20) == 0


def test_curve_daemon_answers_only_authorized_clients(curve_daemon, keys, tmp_path):
    ep, proc = curve_daemon
    with Coordinator([ep], client_keys=keys, heartbeat_s=0.2, timeout_s=1.0) as c:
        (info,) = c.hello(timeout_s=60)
        assert info["pid"] == proc.pid
    plain = RawClient(ep, ctx=zmq.Context())  # no keys at all
    assert plain.call("hello", timeout_s=1.0) is None
    plain.close()
    stranger_dir = tmp_path / "stranger"
    assert harness(["keys", str(stranger_dir)]) == 0  # a valid pair the daemon never authorized
    pub, sec, _ = p.client_keys(stranger_dir)
    stranger = RawClient(ep, keys=(pub, sec, p.server_public_key(keys)), ctx=zmq.Context())
    assert stranger.call("hello", timeout_s=1.0) is None
    stranger.close()
    friend = RawClient(ep, keys=p.client_keys(keys / "laptop"), ctx=zmq.Context())  # the extra authorized client
    assert "result" in friend.call("hello", timeout_s=5.0)
    friend.close()


def _touch_job(marker: Path) -> dict:
    from fault_jobs import probe_spec

    return probe_spec("test-touch", path=str(marker))


def test_a_keyless_tcp_daemon_on_loopback_refuses_to_start_so_no_neighbour_runs_code_through_it(other_user):
    """Finding 1 of issue 25: a keyless daemon on tcp://127.0.0.1, as README allowed, ran `nobody`'s job
    as its own user (the marker said "code ran as uid=0"). Now it refuses to start, in one line."""
    keyless = _daemon("--bind", f"tcp://127.0.0.1:{_free_port()}", "--heartbeat-s", "0.2")
    try:
        ready = keyless.stdout.readline()  # "worker ready: ..." from a daemon that started, else EOF
        if ready:  # it serves: what nobody's job does there is the finding itself
            marker = other_user.home / "keyless-marker"
            other_user.run(other_user_script("SEND_JOB"), ready.split()[2], marker, 5)
            assert not marker.exists(), marker.read_text()
        assert keyless.wait(timeout=60) == 2
        assert "refusing a tcp bind without --keys (CURVE): every local user can reach a loopback port" in \
            keyless.stderr.read()
    finally:
        keyless.kill()
        keyless.wait()


def test_another_local_user_cannot_run_code_through_a_keyed_or_local_daemon(curve_daemon, keys, other_user,
                                                                            daemon_pool):
    """A daemon with keys (as README and launch start them) never runs `nobody`'s job, nor does a local
    ipc daemon (a 0700 folder): the job's marker is never written. The daemon's own authorized client
    runs the same job, so the marker is not absent by chance."""
    ep, _ = curve_daemon
    local_socket = Path(daemon_pool.endpoints[0][len("ipc://"):])
    assert _mode(local_socket.parent) == 0o700 and _mode(local_socket) == 0o600
    for target in (ep, daemon_pool.endpoints[0]):
        marker = other_user.home / f"marker-{target.rpartition('/')[2]}"
        said = other_user.run(other_user_script("SEND_JOB"), target, marker, 1)
        assert said.stdout.strip() == "no reply", said.stderr
        assert not marker.exists()
    marker = other_user.home / "authorized-marker"
    ours = RawClient(ep, keys=p.client_keys(keys), ctx=zmq.Context())
    assert "result" in ours.call("probe", _touch_job(marker), timeout_s=60)
    ours.close()
    assert marker.read_text() == f"code ran as uid={os.geteuid()}\n"


def _abstract_name() -> str:
    return f"ipc://@moe-harness-test-{os.getpid()}-{os.urandom(4).hex()}"


def test_a_keyless_abstract_ipc_daemon_refuses_to_start_so_no_neighbour_runs_code_through_it(other_user):
    """Issue 32: `--bind ipc://@name` (a Linux abstract socket: no file, no permissions) started with
    no keys and no word, and `nobody`'s job ran there as this user. Now it is refused like a tcp bind."""
    bind = _abstract_name()
    keyless = _daemon("--bind", bind, "--heartbeat-s", "0.2")
    try:
        ready = keyless.stdout.readline()
        if ready:
            marker = other_user.home / "abstract-marker"
            other_user.run(other_user_script("SEND_JOB"), ready.split()[2], marker, 5)
            assert not marker.exists(), marker.read_text()
        assert keyless.wait(timeout=60) == 2
        assert keyless.stderr.read().strip() == (
            f"harness worker: --bind {bind}: refusing an abstract ipc bind without --keys (CURVE): every local user "
            "can connect to an abstract socket (it has no file, so no permissions), and whoever reaches it runs code "
            "as this user through its jobs; make keys with `harness keys DIR`, bind a file socket in a private "
            "folder (ipc:///PATH), or pass --insecure to serve it in plaintext anyway")
    finally:
        keyless.kill()
        keyless.wait()


def test_an_abstract_ipc_daemon_with_keys_runs_only_its_clients_jobs(keys, other_user):
    """The way out that keeps it abstract: --keys. `nobody`'s job gets no reply and writes nothing; a
    coordinator with the client keys is answered over CURVE, and its job runs."""
    bind = _abstract_name()
    proc = _daemon("--bind", bind, "--keys", str(keys / "server"), "--heartbeat-s", "0.2")
    try:
        assert proc.stdout.readline().split()[2] == bind
        marker = other_user.home / "abstract-keyed-marker"
        said = other_user.run(other_user_script("SEND_JOB"), bind, marker, 1)
        assert said.stdout.strip() == "no reply", said.stderr
        assert not marker.exists()
        with Coordinator([bind], client_keys=keys, heartbeat_s=0.2, timeout_s=1.0) as c:
            (info,) = c.hello(timeout_s=60)
            assert info["pid"] == proc.pid
        ours = RawClient(bind, keys=p.client_keys(keys), ctx=zmq.Context())
        assert "result" in ours.call("probe", _touch_job(marker), timeout_s=60)
        ours.close()
        assert marker.read_text() == f"code ran as uid={os.geteuid()}\n"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_an_insecure_abstract_ipc_daemon_says_so_and_its_results_are_not_shared():
    """--insecure is the only other way out, said on every start; a coordinator never counts a
    plaintext abstract socket (anyone could have bound its name) as authenticated."""
    from harness.endpoints import authenticated

    bind = _abstract_name()
    proc = _daemon("--bind", bind, "--insecure")
    try:
        assert proc.stdout.readline().split()[2] == bind
        c = RawClient(bind, ctx=zmq.Context())
        assert c.call("shutdown", timeout_s=60)["result"]["ok"]
        c.close()
        assert proc.wait(timeout=20) == 0
        (warning,) = [line for line in proc.stderr.read().splitlines() if line.strip()]
        assert warning.startswith(f"harness worker: --insecure: {bind} serves without authentication: anyone who ")
    finally:
        proc.kill()
        proc.wait()
    assert not authenticated(bind, curve=False) and authenticated(bind, curve=True)


def _keys_others_can_reach(other_user) -> Path:
    """`harness keys` output in a folder `nobody` may traverse (pytest's own tmp folders are 0700)."""
    k = other_user.home / f"keys-{os.urandom(4).hex()}"
    assert harness(["keys", str(k)]) == 0
    for d in (k, k / "server"):
        d.chmod(0o755)
    return k


def _not_yours(path: Path, uid: int) -> str:
    return (f"{path}: owned by uid {uid}, not by you (uid {os.geteuid()}); its owner decides what it holds: "
            "make keys of your own with `harness keys DIR`")


def test_a_client_key_planted_by_another_user_in_their_authorized_folder_never_runs_their_job(other_user):
    """Issue 32: an authorized/ folder owned by `nobody` (0700 or 0755: nothing looked loose) held a key
    they planted; the daemon accepted it and ran their job as this user. Now it refuses to start."""
    k = _keys_others_can_reach(other_user)
    authorized = k / "server" / "authorized"
    os.chown(authorized, other_user.uid, -1)  # as if they had made it before `harness keys` filled it
    planted = other_user.run(other_user_script("PLANT_KEY"), authorized / "neighbour.key")
    public, secret = planted.stdout.split()
    server_public = zmq.auth.load_certificate(k / "server" / "server.key")[0].decode()
    ep = f"tcp://127.0.0.1:{_free_port()}"
    proc = _daemon("--bind", ep, "--keys", str(k / "server"), "--heartbeat-s", "0.2")
    try:
        if proc.stdout.readline():  # it serves: what nobody's job does there is the finding itself
            marker = other_user.home / "planted-key-marker"
            other_user.run(other_user_script("SEND_JOB"), ep, marker, 5, public, secret, server_public)
            assert not marker.exists(), marker.read_text()
        assert proc.wait(timeout=60) == 2
        assert proc.stderr.read().strip() == f"harness worker: --keys: {_not_yours(authorized, other_user.uid)}"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("theirs", ["server", "server/server.key_secret", "server/authorized/client.key"])
def test_a_daemon_refuses_key_folders_and_files_another_user_owns(other_user, theirs):
    """What ssh's StrictModes does for ~/.ssh: a key folder or file owned by someone else is refused
    whatever its mode (its owner can chmod it, or read the secret); the same files, ours, start a
    daemon (the curve_daemon fixture)."""
    k = _keys_others_can_reach(other_user)
    os.chown(k / theirs, other_user.uid, -1)
    proc = _daemon("--bind", f"tcp://127.0.0.1:{_free_port()}", "--keys", str(k / "server"))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.strip() == f"harness worker: --keys: {_not_yours(k / theirs, other_user.uid)}"


@pytest.mark.parametrize("theirs", ["client", "client/client.key_secret", "client/server.key"])
def test_a_coordinator_refuses_key_folders_and_files_another_user_owns(other_user, tmp_path, capsys, theirs):
    """The coordinator's side: client/, its secret and server.key (which decides which daemon is ours)
    owned by `nobody` end `harness run --keys` in one line before anything runs; ours, they load."""
    k = _keys_others_can_reach(other_user)
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nmodels:\n  - name: m\n    config: {model_type: llama, hidden_size: 16, "
                     "intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2}\n")
    args = ["run", str(suite), "--out", str(tmp_path / "run"), "--keys", str(k / "client"),
            "--workers", f"tcp://127.0.0.1:{_free_port()}"]
    os.chown(k / theirs, other_user.uid, -1)
    assert harness(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"harness run: --keys: {_not_yours(k / theirs, other_user.uid)}"
    assert not (tmp_path / "run").exists()
    os.chown(k / theirs, os.geteuid(), -1)
    assert p.client_keys(k / "client")[2] == p.server_public_key(k / "server")


def test_harness_keys_refuses_to_fill_a_folder_another_user_made(other_user, capsys):
    """Issue 32: `harness keys DIR` kept a DIR/server/authorized/ that `nobody` had made in a shared
    folder, so their later key was accepted. Now it writes nothing there and says why in one line; the
    same folders made by us are filled (and keep their modes)."""
    for who in ("nobody", "us"):
        shared = other_user.home / f"shared-{who}"
        shared.mkdir()
        shared.chmod(0o1777)
        authorized = shared / "server" / "authorized"
        if who == "nobody":
            made = other_user.run("import os, sys; os.makedirs(sys.argv[1], 0o755)\n", authorized)
            assert made.returncode == 0, made.stderr
        else:
            authorized.mkdir(mode=0o755, parents=True)
        code = harness(["keys", str(shared)])
        err = capsys.readouterr().err.strip()
        if who == "nobody":
            assert code == 2 and err == (f"harness keys: {shared / 'server'}: owned by uid {other_user.uid}, not by "
                                         f"you (uid {os.geteuid()}): refusing to write keys into it (its owner can "
                                         "add or replace them); remove it or pick another folder")
            assert not [f for f in shared.rglob("*") if f.is_file()]
        else:
            assert code == 0 and _mode(authorized) == 0o755 and (authorized / "client.key").is_file()


def other_user_script(name: str) -> str:
    import other_user

    return getattr(other_user, name)


def _refused(bind: str, reason: str) -> str:
    return (f"harness worker: --bind {bind}: refusing a tcp bind without --keys (CURVE): {reason}, and whoever "
            "reaches it runs code as this user through its jobs; make keys with `harness keys DIR`, or pass "
            "--insecure to serve it in plaintext anyway")


def test_a_tcp_bind_needs_keys_unless_insecure_which_says_so_on_every_start():
    ep = f"tcp://127.0.0.1:{_free_port()}"
    refused = _daemon("--bind", ep)
    _, err = refused.communicate(timeout=60)
    assert refused.returncode == 2
    assert err.strip() == _refused(ep, "every local user can reach a loopback port")
    allowed = _daemon("--bind", ep, "--insecure")
    try:
        c = RawClient(ep, ctx=zmq.Context())
        assert "result" in c.call("hello", timeout_s=60)
        assert c.call("shutdown")["result"]["ok"]
        c.close()
        assert allowed.wait(timeout=20) == 0
        (warning,) = [line for line in allowed.stderr.read().splitlines() if line.strip()]
        assert warning == (f"harness worker: --insecure: {ep} serves without authentication: anyone who can reach "
                           f"it runs code as uid {os.geteuid()} through its jobs (task !function, trust_remote_code); "
                           "coordinators keep its results out of the shared cache")
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
def test_a_keyless_bind_names_what_it_would_expose(bind, reason):
    port = _free_port()
    bind, reason = bind.format(port=port), reason.format(port=port)
    proc = _daemon("--bind", bind)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.strip() == _refused(bind, reason)
    assert _nothing_listens(port)


def test_keys_folder_without_server_secret_is_refused(tmp_path):
    proc = _daemon("--bind", f"tcp://127.0.0.1:{_free_port()}", "--keys", str(tmp_path))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "server.key_secret: missing" in err
    assert harness(["keys", str(tmp_path / "k")]) == 0
    proc = _daemon("--bind", f"tcp://127.0.0.1:{_free_port()}", "--keys", str(tmp_path / "k" / "client"))
    _, err = proc.communicate(timeout=60)  # a client's folder on a worker host: no server secret there
    assert proc.returncode == 2 and f"{tmp_path / 'k' / 'client' / 'server.key_secret'}: missing" in err


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
