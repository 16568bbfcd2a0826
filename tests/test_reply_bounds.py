"""A coordinator decodes a worker's reply within bounds, and a reply it refuses fails its job once
(issue 32 §3).

One 8 MiB reply of empty maps grew a coordinator from 46 to 620 MiB (the daemon's side was bounded,
the coordinator's was not); a reply over the frame limit from a peer that does not check what it
sends was dropped by ZeroMQ, the worker looked restarted, and the job ran again ("no worker
left: all 2 lost"). The coordinator runs here in a process of its own, so its memory is its own;
the worker is a scripted peer (tests/scripted_peer.py) sending those frames as they are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import msgpack
from scripted_peer import Peer

from moe_schema import protocol

REPO = Path(__file__).resolve().parent.parent
MAPS = 8 << 20  # 8 MiB of empty maps: 8,388,608 objects
BIG = protocol.MAX_MESSAGE_BYTES + (1 << 20)  # one MiB over the frame limit

COORDINATOR = r"""
import json, sys
from harness.coordinator import Coordinator, Job

def kib(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field + ":"))

endpoints, names = sys.argv[1].split(","), sys.argv[2].split(",")
outcomes = {}
with Coordinator(endpoints, heartbeat_s=0.2, timeout_s=20.0, check_result=None) as c:
    c.hello(timeout_s=10)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak resident size (VmHWM) starts again from now
    before = kib("VmRSS")
    summary = c.run([Job(n, {"kind": "probe", "variant": {"name": n}, "n": n}) for n in names],
                    lambda job, o: outcomes.__setitem__(job.key, o), deadline_s=120)
    grown = kib("VmHWM") - before
print(json.dumps({"outcomes": outcomes, "lost": summary.lost, "grown_kib": grown}))
"""


def _empty_maps(rid: str) -> bytes:
    head = msgpack.packb({"jsonrpc": "2.0", "id": rid})  # a map of 2: made a map of 3 below
    return b"\x83" + head[1:] + msgpack.packb("result") + b"\xdd" + MAPS.to_bytes(4, "big") + b"\x80" * MAPS


def _over_limit(rid: str) -> bytes:
    return msgpack.packb({"jsonrpc": "2.0", "id": rid, "result": {"blob": b"\0" * BIG}}, use_bin_type=True)


def on_job(params):
    return {"maps": ("raw", _empty_maps), "big": ("raw", _over_limit)}.get(
        params["n"], ("result", {"n": params["n"]}))


def _coordinate(endpoints: list[str], names: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", COORDINATOR, ",".join(endpoints), ",".join(names)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


def test_a_reply_of_8_mib_of_empty_maps_fails_its_job_and_the_coordinator_stays_small(endpoints, peers):
    """Refused before one map is built: the job fails once naming the limit and the size, the
    coordinator's peak memory grows by well under 100 MiB (it was 570 MiB), the worker stays and
    runs the next job."""
    peer = Peer(endpoints[0], on_job)
    peers.append(peer)
    got = _coordinate(endpoints[:1], ["maps", "next"])
    maps = got["outcomes"]["maps"]
    assert maps["status"] == "failed" and maps["attempts"] == 1, maps
    assert maps["error"].startswith(f"reply from {endpoints[0]} refused: frame of ")
    assert maps["error"].endswith(f"bytes decodes into more than {protocol.MAX_REPLY_OBJECTS} objects, "
                                  "the limit per reply frame"), maps
    assert got["outcomes"]["next"]["status"] == "ok" and got["lost"] == []
    assert [j["n"] for j in peer.jobs] == ["maps", "next"]  # each ran once
    assert got["grown_kib"] < 100 << 10, f"the coordinator grew by {got['grown_kib'] >> 10} MiB"


def test_a_reply_just_under_the_object_limit_is_decoded(endpoints, peers):
    """The neighbouring case: a reply of MAX_REPLY_OBJECTS objects is an ordinary result."""
    n = protocol.MAX_REPLY_OBJECTS - 7  # the reply map, its 3 keys, 2 values besides the array, the array
    frame = lambda rid: (b"\x83" + msgpack.packb({"jsonrpc": "2.0", "id": rid})[1:] + msgpack.packb("result")  # noqa: E731
                         + b"\xdd" + n.to_bytes(4, "big") + b"\x80" * n)
    assert protocol.count_objects(frame("x:probe:1"), protocol.MAX_REPLY_OBJECTS + 1) == protocol.MAX_REPLY_OBJECTS
    peers.append(Peer(endpoints[0], lambda params: ("raw", frame)))
    got = _coordinate(endpoints[:1], ["under"])
    assert got["outcomes"]["under"]["status"] == "ok", got


def test_a_reply_over_the_frame_limit_fails_its_job_once_and_keeps_both_workers(endpoints, peers):
    """A peer sends a reply one MiB over the frame limit without checking: the job fails once
    with the size and the limit; no worker is lost, and the other jobs run (before: the reply was
    dropped, the job ran again on the other worker, and both were lost)."""
    for ep in endpoints[:2]:
        peers.append(Peer(ep, on_job))
    got = _coordinate(endpoints[:2], ["big", "a", "b"])
    big = got["outcomes"]["big"]
    assert big["status"] == "failed" and big["attempts"] == 1, big
    size = len(_over_limit(""))  # without the request id, a few dozen bytes
    assert big["error"].startswith(f"reply from {big['worker']} refused: frame of ")
    assert big["error"].endswith(f" bytes exceeds {protocol.MAX_MESSAGE_BYTES}")
    assert size < int(big["error"].split("frame of ")[1].split()[0]) < size + 64
    assert got["outcomes"]["a"]["status"] == got["outcomes"]["b"]["status"] == "ok"
    assert got["lost"] == []
    assert sorted(j["n"] for p in peers for j in p.jobs) == ["a", "b", "big"]  # nothing ran twice
