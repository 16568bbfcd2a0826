"""What one hostile frame costs a daemon to decode, before and after the object bound (issue 17).

    python benchmarks/wire_decode.py

4 MB of ``0x80`` bytes after an array header is 4,000,000 empty maps. "before" decodes with
msgpack's per-container limits only (what ``moe_schema.protocol.unpack`` did until the bound);
"after" is ``moe_schema.protocol.unpack(frame, MAX_REQUEST_OBJECTS)``, what the daemon does now. Each
case runs in a fresh child process; memory is the growth of its peak resident size (VmHWM, reset
just before the decode) over the frame's size, time is the decode (or refusal) alone. A 16 MiB task
folder frame (1,000 files and one large one) shows that legitimate traffic keeps its cost.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from moe_schema import protocol  # noqa: E402  (torch-free)

CHILD = r"""
import json, os, sys, time
import msgpack
from moe_schema import protocol

frame = open(sys.argv[1], "rb").read()
mode = sys.argv[2]
pid = os.getpid()

def kib(field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

with open(f"/proc/{pid}/clear_refs", "w") as f:
    f.write("5")  # peak resident size := current
rss = kib("VmRSS")
t0 = time.perf_counter()
try:
    if mode == "before":
        value = msgpack.unpackb(frame, raw=False, strict_map_key=True, **protocol._unpack_limits)
    else:
        value = protocol.unpack(frame, protocol.MAX_REQUEST_OBJECTS)
    outcome = "decoded"
except protocol.ProtocolError as exc:
    outcome = f"refused: {exc.message}"
seconds = time.perf_counter() - t0
print(json.dumps({"grown": (kib("VmHWM") - rss) * 1024, "seconds": seconds, "outcome": outcome}))
"""


def _array(body: bytes, count: int) -> bytes:
    return b"\xdd" + count.to_bytes(4, "big") + body


def frames() -> dict[str, bytes]:
    from moe_schema.taskfiles import SHIP_LIMIT

    files = {f"data/extra-{i:04d}.txt": b"%d\n" % i for i in range(1000)}
    files["data/padding.bin"] = os.urandom(SHIP_LIMIT - sum(map(len, files.values())))
    task = {"name": "t", "path": "/x/t.yaml", "digest": "0" * 24, "files": files}
    inner = _array(b"\x80" * 1000, 1000)
    return {
        "4,000,000 empty maps": _array(b"\x80" * 4_000_000, 4_000_000),
        "4,000,000 empty maps, nested 4000 x 1000": _array(inner * 4000, 4000),
        f"{protocol.MAX_REQUEST_OBJECTS - 1:,} empty maps (at the bound)":
            _array(b"\x80" * (protocol.MAX_REQUEST_OBJECTS - 1), protocol.MAX_REQUEST_OBJECTS - 1),
        "16 MiB task folder (evaluate job)": protocol.pack(protocol.request("evaluate", {"kind": "evaluate",
                                                                                        "task": task})),
    }


def measure(frame: bytes, mode: str, repeats: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".msgpack") as f:
        f.write(frame)
        f.flush()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD, f.name, mode], env=env, check=True,
                                          capture_output=True, text=True).stdout) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "grown": max(r["grown"] for r in runs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="child runs per case (best time, worst memory)")
    args = parser.parse_args()
    if not Path("/proc/self/clear_refs").exists():
        print("needs Linux /proc/<pid>/clear_refs to reset the peak resident size", file=sys.stderr)
        return 2
    print(f"object bound: MAX_REQUEST_OBJECTS = {protocol.MAX_REQUEST_OBJECTS:,}; "
          f"frame limit {protocol.MAX_MESSAGE_BYTES >> 20} MiB")
    print(f"{'frame':44} {'bytes':>11} {'':7} {'memory':>9} {'time':>9}  outcome")
    for name, frame in frames().items():
        for mode in ("before", "after"):
            r = measure(frame, mode, args.repeats)
            outcome = r["outcome"] if len(r["outcome"]) < 60 else r["outcome"][:57] + "..."
            print(f"{name:44} {len(frame):>11,} {mode:7} {r['grown'] / len(frame):>8.2f}x "
                  f"{r['seconds'] * 1000:>7.1f} ms  {outcome}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
