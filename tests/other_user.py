"""A second local user for the trust tests (issue 25, findings 1 and 2): ``nobody``, through
``runuser``, which needs root (as in CI). It gets a 0755 folder under /tmp holding a copy of
pyzmq and msgpack (the interpreter's own site-packages may sit in a home folder it cannot read)
and the scripts it runs: what a neighbour with only ``python3`` and those two packages can do.

``other_user()`` returns an ``OtherUser``, or the reason there is none here (the caller skips
with it).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

NAME = "nobody"

# A request a neighbour sends to a daemon: a job whose code writes a marker (tests/fault_jobs.py's
# test-touch probe stands for a task's `!function`). Prints "reply" or "no reply". With a key pair
# and the server's public key (z85, argv[4:7]) it speaks CURVE.
SEND_JOB = r'''
import sys, msgpack, zmq
endpoint, marker, wait_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
sock = zmq.Context().socket(zmq.DEALER)
sock.linger = 0
if len(sys.argv) > 4:
    sock.curve_publickey, sock.curve_secretkey, sock.curve_serverkey = (k.encode() for k in sys.argv[4:7])
sock.connect(endpoint)
variant = {"name": "tiny", "model": "tiny", "build": {"checkpoint": "/nonexistent"}, "routing": None,
           "dtype": "float32", "trust_remote_code": False, "experts_implementation": None}
job = {"kind": "probe", "variant": variant, "probe": {"name": "test-touch", "params": {"path": marker}}}
sock.send(msgpack.packb({"jsonrpc": "2.0", "id": 1, "method": "probe", "params": job}))
print("reply" if sock.poll(wait_s * 1000) else "no reply", flush=True)
'''

# A neighbour makes a CURVE pair of its own, puts its public certificate at argv[1] (a daemon's
# authorized/ folder it can write to) and prints the pair (z85).
PLANT_KEY = r'''
import sys, zmq
public, secret = zmq.curve_keypair()
with open(sys.argv[1], "w") as f:
    f.write(f'metadata\ncurve\n    public-key = "{public.decode()}"\n')
print(public.decode(), secret.decode())
'''

# A 20-line fake daemon on a loopback port the OS picks (printed first): it answers hello, and
# every job with forged parameter counts.
FAKE_DAEMON = r'''
import os, msgpack, zmq
sock = zmq.Context().socket(zmq.ROUTER)
port = sock.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
FORGED = {"params": {"total": 123456789, "active": 42, "total_no_embed": 1, "active_no_embed": 1,
                     "num_experts": None, "experts_per_token": None, "active_measured": False},
          "build": {"moe": False}, "timings": {"load_s": 0.0, "run_s": 0.0, "model_cached": False}}
while True:
    ident, frame = sock.recv_multipart()
    msg = msgpack.unpackb(frame, raw=False)
    if not isinstance(msg, dict) or "id" not in msg:
        continue
    method = msg.get("method")
    if method == "hello":
        result = {"device": "cpu", "busy": None, "holds": {}, "pid": os.getpid()}
    elif method in ("describe", "evaluate", "probe", "train"):
        result = FORGED
    else:
        result = {"busy": None}
    sock.send_multipart([ident, msgpack.packb({"jsonrpc": "2.0", "id": msg["id"], "result": result})])
'''


class OtherUser:
    def __init__(self, home: Path, python: str):
        self.home, self.python = home, python
        self.uid = pwd.getpwnam(NAME).pw_uid

    def command(self, script: str, *args) -> list[str]:
        path = self.home / f"script-{hashlib.sha1(script.encode()).hexdigest()[:12]}.py"
        if not path.exists():
            path.write_text(script)
            path.chmod(0o644)
        return ["runuser", "-u", NAME, "--", "env", "-i", f"PYTHONPATH={self.home / 'site'}", "PATH=/usr/bin:/bin",
                self.python, str(path), *map(str, args)]

    def run(self, script: str, *args, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(script, *args), capture_output=True, text=True, timeout=timeout,
                              cwd=self.home)

    def popen(self, script: str, *args) -> subprocess.Popen:
        return subprocess.Popen(self.command(script, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=self.home)

    def close(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


def other_user() -> OtherUser | str:
    """A second user ready to run scripts, or why not."""
    if os.geteuid() != 0:
        return "not root: cannot act as a second local user (runuser needs root)"
    if shutil.which("runuser") is None:
        return "no runuser here"
    try:
        pwd.getpwnam(NAME)
    except KeyError:
        return f"no user {NAME!r} here"
    import msgpack
    import zmq

    home = Path(tempfile.mkdtemp(prefix="moe-other-user-", dir="/tmp"))
    home.chmod(0o755)
    site = home / "site"
    site.mkdir()
    for package, extra in ((zmq, "pyzmq.libs"), (msgpack, None)):
        folder = Path(package.__file__).parent
        for src in (folder, folder.parent / extra if extra else None):
            if src is not None and src.is_dir():
                shutil.copytree(src, site / src.name, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    for root, dirs, files in os.walk(home):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644 if not f.endswith(".so") else 0o755)
    tried = []
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3", shutil.which("python3") or ""]):
        if not python:
            continue
        user = OtherUser(home, python)
        probe = user.run("import zmq, msgpack, os; print(os.getuid())\n", timeout=30)
        if probe.returncode == 0 and probe.stdout.strip() == str(user.uid):
            return user
        tried.append(f"{python}: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    shutil.rmtree(home, ignore_errors=True)
    return f"no python {NAME} can run with pyzmq and msgpack ({'; '.join(tried)})"
