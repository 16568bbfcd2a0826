"""The endpoints file: how a cluster job tells `harness run` where its worker daemons listen.

    harness launch slurm --out slurm/ ... --submit      # the job writes slurm/endpoints.txt once up
    harness run suite.yaml --workers @slurm/endpoints.txt

Only a file owned by you and writable by nobody else is read (``read_trusted``): one another user
wrote, or could have, is refused in one line.

Written by the job (``harness endpoints collect``, called from the sbatch script) only once its
daemons are up, and only with the daemons that answered hello; removed by the job when it ends.
Its first line names the job, so a file left behind by a job that died hard is recognised::

    # moe-harness endpoints: slurm job 1234, 2 of 2 daemons answered hello at 2026-12-01T07:30:00Z
    tcp://node1:41235
    tcp://node2:40817

Each daemon binds a port the OS picks (``tcp://0.0.0.0:*``: two jobs on one node cannot collide) and
prints ``worker ready: tcp://0.0.0.0:PORT`` as the first line of its own log,
``daemon-<job>-<node>-<task>.log``; the collector reads the port there and the node from the name.

The reading side (``read_for_run``) waits for a file that is not there yet, and refuses, in one
line (:class:`EndpointsError`), a file that is empty or stale (its job is not running, or none of
its daemons answers).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.suite import SuiteError
from harness.store import write_atomic

HEADER = "# moe-harness endpoints: slurm job {job}, {up} of {want} daemons answered hello at {when}"
_HEADER_JOB = re.compile(r"^# moe-harness endpoints: slurm job (\S+),")
_LOG = re.compile(r"^daemon-(?P<job>[^-]+)-(?P<node>.+)-(?P<task>\d+)\.log$")
_READY = re.compile(r"^worker ready: (tcp://\S+)")
_ANY_HOST = ("0.0.0.0", "*", "[::]", "::")
HELLO_TIMEOUT_S = 10.0  # a live daemon answers hello in milliseconds; a stale endpoint never does


class EndpointsError(SuiteError):
    """Workers that cannot be used: an endpoints file missing after the wait, empty or stale, a
    malformed endpoint. One line; the command exits 2 (a SuiteError: every command reports it so)."""

    def __init__(self, message: str):
        super().__init__("", message)


def log_name(job: str, node: str, task: int) -> str:
    """A daemon's log file name; the sbatch script asks srun for ``daemon-%j-%N-%t.log``."""
    return f"daemon-{job}-{node}-{task}.log"


def ready_endpoint(log: Path, node: str) -> str | None:
    """The endpoint a daemon's log says it serves, with a wildcard host replaced by its node's name."""
    try:
        with open(log, errors="replace") as f:
            for line in f:
                m = _READY.match(line.strip())
                if m:
                    host, _, port = m.group(1)[len("tcp://"):].rpartition(":")
                    return f"tcp://{node if host in _ANY_HOST else host}:{port}"
    except OSError:
        return None
    return None


def answering(endpoints: list[str], keys: Path | None, timeout_s: float) -> list[str]:
    """The endpoints whose daemon answers within ``timeout_s`` (asked all at once), in order: hello,
    over CURVE for tcp when ``keys`` holds a client pair; with a server folder only (the job's
    collector: worker hosts hold no client secret) a CURVE handshake that only a daemon holding the
    server secret can complete as far as its authenticator's refusal of our throwaway key."""
    import zmq

    from harness.local import ask
    from moe_schema.protocol import CLIENT_KEY, key_folder, needs_keys, server_public_key

    if not endpoints:
        return []
    server_only = keys is not None and not (key_folder(keys, CLIENT_KEY) / f"{CLIENT_KEY}.key_secret").exists()
    server_public = server_public_key(keys) if server_only else None
    ctx = zmq.Context()
    try:
        def one(ep: str) -> bool:
            if server_only and needs_keys(ep):
                return curve_daemon_answers(ep, server_public, timeout_s, ctx)
            use_keys = keys if keys is not None and needs_keys(ep) else None
            reply = ask(ep, "hello", timeout_s=timeout_s, ctx=ctx, keys=use_keys)
            return reply is not None and "result" in reply

        with ThreadPoolExecutor(max_workers=min(32, len(endpoints))) as pool:
            ok = list(pool.map(one, endpoints))
    finally:
        ctx.term()
    return [ep for ep, up in zip(endpoints, ok) if up]


def curve_daemon_answers(endpoint: str, server_public: bytes, timeout_s: float, ctx) -> bool:
    """True when a CURVE server holding the secret of ``server_public`` listens at ``endpoint``: it
    decrypts our handshake and its authenticator refuses our throwaway client key (status 400).
    Anything else (nothing there, plaintext, another key) never gets that far."""
    import zmq
    from zmq.utils.monitor import recv_monitor_message

    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
    sock.curve_serverkey = server_public
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                      | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        sock.connect(endpoint)
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0 and monitor.poll(left * 1000):
            event = recv_monitor_message(monitor)
            if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                return event["value"] == 400
            if event["event"] != zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:  # a wrong key: it retries; so do we
                return False
        return False
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)


def authenticated(endpoint: str | None, curve: bool) -> bool:
    """Whether a result from ``endpoint`` came from a daemon that proved who it is, so it may enter
    the shared cache: tcp or abstract ipc over CURVE (``curve``: a coordinator with keys; a plaintext
    daemon cannot answer a CURVE client), or a file ipc socket owned by us in a folder others cannot
    write to (or one with the sticky bit, where they cannot replace our socket). An --insecure
    daemon, a port or abstract name another process now holds, never qualifies."""
    import stat

    from moe_schema.protocol import needs_keys

    if not endpoint:
        return False
    if needs_keys(endpoint):
        return curve
    if not endpoint.startswith("ipc://"):
        return False
    path = Path(endpoint[len("ipc://"):])
    try:
        sock, folder = path.stat(), path.parent.stat()
    except OSError:
        return False
    me = os.geteuid()
    loose = folder.st_mode & 0o022 and not folder.st_mode & stat.S_ISVTX
    return sock.st_uid == me and folder.st_uid in (me, 0) and not loose


# --- the writing side: inside the job ----------------------------------------------------------------
def collect(logs: Path, job: str, want: int, out: Path, keys: Path | None, timeout_s: float,
            alive=lambda: True, say=print) -> list[str]:
    """Wait until ``want`` daemons of ``job`` printed their endpoint under ``logs`` (or ``timeout_s``
    passes, or ``alive()`` turns false), ask each for hello, write ``out`` with those that answered.
    Returns them; writes nothing when none answered."""
    deadline = time.monotonic() + timeout_s
    found: dict[str, str] = {}
    while True:
        for log in sorted(logs.glob(f"daemon-{job}-*.log")):
            m = _LOG.match(log.name)
            if m and log.name not in found and (ep := ready_endpoint(log, m["node"])):
                found[log.name] = ep
        if len(found) >= want or time.monotonic() > deadline or not alive():
            break
        time.sleep(0.2)
    endpoints = [found[k] for k in sorted(found, key=lambda n: (_LOG.match(n)["node"], int(_LOG.match(n)["task"])))]
    up = answering(endpoints, keys, timeout_s=HELLO_TIMEOUT_S)
    missing = want - len(up)
    if missing:
        say(f"harness endpoints: {missing} of {want} daemons of job {job} did not come up "
            f"(see {logs}/daemon-{job}-*.log)")
    if up:
        write(out, job, up, want)
    return up


def write(path: Path, job: str, endpoints: list[str], want: int) -> None:
    """Write the file whole, 0644 whatever the umask (a reader refuses one others could write), and
    rename it into place: a reader never sees half of it."""
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = HEADER.format(job=job, up=len(endpoints), want=want, when=when) + "\n" + "".join(f"{e}\n" for e in endpoints)
    write_atomic(path, text, mode=0o644)


def job_of(text: str) -> str | None:
    """The Slurm job an endpoints file names in its first line, or None (a hand-written file)."""
    first = text.splitlines()[0] if text else ""
    m = _HEADER_JOB.match(first)
    return m.group(1) if m else None


def remove_if_ours(path: Path, job: str) -> bool:
    """At job end: remove the file if it still names ``job`` (a newer job's file is left alone)."""
    try:
        if job_of(path.read_text()) == job:
            path.unlink()
            return True
    except OSError:
        pass
    return False


# --- the reading side: `harness run --workers @FILE` -------------------------------------------------
def parse(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def slurm_job_state(job: str) -> str | None:
    """``squeue``'s state of ``job`` (RUNNING, PENDING, ...), "" when squeue no longer lists it, None
    when there is no squeue here to ask."""
    if shutil.which("squeue") is None:
        return None
    try:
        done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else ""


def read_trusted(path: Path, where: str) -> str:
    """The file's text, only when nobody else could have written it: owned by us, not writable by
    group or others (an endpoints file decides where jobs go and whose results are stored). Judged
    on the open file, so what is read is what was checked."""
    from moe_schema.protocol import file_refusal

    try:
        with open(path, "rb") as f:
            refusal = file_refusal(path, ours=True, fd=f.fileno())
            if refusal:
                raise EndpointsError(f"{where}: refusing it: {refusal.removeprefix(f'{path}: ')}; anyone who "
                                     "could write it chooses where your jobs go")
            return f.read().decode("utf-8", errors="replace")
    except OSError as exc:
        raise EndpointsError(f"{where}: cannot read it: {exc.strerror or exc}") from None


def read_for_run(path: Path, wait_s: float, keys: Path | None, say=lambda msg: None,
                 hello_timeout_s: float | None = None) -> list[str]:
    """The endpoints ``path`` lists, once it exists (waiting up to ``wait_s``), checked live.

    Raises EndpointsError, one line, for a file still missing after the wait, an empty one, one
    whose Slurm job is not running, or one none of whose daemons answers hello."""
    where = f"--workers @{path}"
    hello_timeout_s = HELLO_TIMEOUT_S if hello_timeout_s is None else hello_timeout_s
    deadline = time.monotonic() + wait_s
    if not path.exists():
        say(f"waiting up to {wait_s:g} s for {path} (written once the job's daemons are up) ...")
        while not path.exists():
            if time.monotonic() > deadline:
                raise EndpointsError(f"{where}: no such file after waiting {wait_s:g} s (is the job running? "
                                     "`squeue --me`; wait longer with --workers-wait SECONDS)")
            time.sleep(0.5)
    text = read_trusted(path, where)
    endpoints = parse(text)
    if not endpoints:
        raise EndpointsError(f"{where}: lists no endpoints (an empty file; refusing to start local daemons instead)")
    job = job_of(text)
    if job is not None:
        state = slurm_job_state(job)
        if state is not None and state != "RUNNING":
            raise EndpointsError(f"{where}: stale: it names slurm job {job}, which is "
                                 f"{state.lower() if state else 'no longer in the queue'}; "
                                 "submit a new job or remove the file")
    up = answering(endpoints, keys, hello_timeout_s)
    if not up:
        what = f"slurm job {job}'s" if job else "its"
        raise EndpointsError(f"{where}: stale: none of {what} {len(endpoints)} daemon(s) answered hello "
                             f"within {hello_timeout_s:g} s" + ("" if keys else " (CURVE daemons need --keys)"))
    return endpoints


# --- `harness endpoints collect`: the sbatch script's helper ------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["collect", "remove"], help="collect: write the file once the daemons are "
                   "up; remove: delete it if it still names this job (both run inside the job)")
    p.add_argument("--file", type=Path, required=True, help="the endpoints file")
    p.add_argument("--job", required=True, help="the Slurm job id")
    p.add_argument("--logs", type=Path, help="folder of the daemons' logs (collect)")
    p.add_argument("--expect", type=int, default=1, help="how many daemons the job starts (collect)")
    p.add_argument("--keys", type=Path, help="CURVE key folder (collect): a client folder says hello over CURVE; "
                   "the server folder alone (what a job holds) checks each daemon by a CURVE handshake")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the daemons (collect)")
    p.add_argument("--pid", type=int, help="stop waiting once this process (srun) has exited (collect)")


def main(args: argparse.Namespace) -> int:
    if args.action == "remove":
        remove_if_ours(args.file, args.job)
        return 0

    def alive() -> bool:
        if args.pid is None:
            return True
        try:
            os.kill(args.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    up = collect(args.logs or args.file.parent, args.job, args.expect, args.file, args.keys, args.timeout,
                 alive=alive, say=lambda m: print(m, file=sys.stderr, flush=True))
    if up:
        print(f"harness endpoints: {len(up)} of {args.expect} daemons up, listed in {args.file}", flush=True)
    return 0 if up else 1
