"""Fuzz a real daemon with random and mutated frames, batches, and frames that would decode into too
many objects: each gets one reply (an array for a batch) or is dropped, and the daemon keeps
serving. Each frame is followed by a sentinel request, so "dropped" is observable without waiting
for a timeout."""

from __future__ import annotations

import itertools

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fault_jobs import RawClient
from moe_schema import protocol as p

SETTINGS = settings(max_examples=1200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SAFE = {"hello", "status", "heartbeat", "cancel"}  # a valid request for these is harmless to send
_sentinels = itertools.count()

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True),
                    st.text(max_size=20), st.binary(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12)
methods = st.one_of(st.sampled_from(p.METHODS + ("sleep", "", "HELLO")), st.text(max_size=12), scalars)
requests = st.fixed_dictionaries(
    {}, optional={"jsonrpc": st.one_of(st.just("2.0"), scalars), "id": st.one_of(st.integers(), st.text(max_size=8), scalars),
                  "method": methods, "params": st.one_of(st.dictionaries(st.text(max_size=8), values, max_size=4), values),
                  "extra": values})


@st.composite
def mutated(draw):
    """A valid request's bytes, then flipped, cut or extended."""
    frame = bytearray(p.pack(p.request(draw(st.sampled_from(p.METHODS)), draw(st.dictionaries(
        st.text(max_size=6), values, max_size=3)), id=draw(st.integers(0, 1000)))))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        i = draw(st.integers(0, max(0, len(frame) - 1)))
        if op == "flip" and frame:
            frame[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del frame[i:i + draw(st.integers(1, 8))]
        else:
            frame[i:i] = draw(st.binary(min_size=1, max_size=8))
    return bytes(frame)


def _harmless(frames: list[bytes]) -> bool:
    """Skip what would start a job or shut the shared daemon down (that is tested elsewhere),
    alone or in a batch."""
    if len(frames) != 1:
        return True
    try:
        msg = p.parse_incoming(frames[0])
    except p.ProtocolError:
        return True
    members = msg if isinstance(msg, list) else [msg]
    return all(isinstance(m, p.ProtocolError) or m["method"] in SAFE for m in members)


@pytest.fixture(scope="module")
def client(daemon_pool):
    c = RawClient(daemon_pool.endpoints[1])
    yield c
    c.close()


def _replies(client: RawClient) -> list:
    """What the daemon answered to the frames just sent, up to its reply to a fresh sentinel request."""
    sentinel = f"sentinel-{next(_sentinels)}"
    client.request("heartbeat", id=sentinel)
    replies = []
    while (msg := client.recv(10)) is not None and not (isinstance(msg, dict) and msg.get("id") == sentinel):
        replies.append(msg)
    assert msg is not None, "daemon stopped answering"
    return replies


def _well_formed(reply: dict) -> None:
    if "error" in reply:
        err = reply["error"]
        assert err["code"] in p.ERROR_NAMES and isinstance(err["message"], str) and "\n" not in err["message"]


def _check(client: RawClient, frames: list[bytes]) -> list:
    if not _harmless(frames):
        return []
    client.send(*frames)
    replies = _replies(client)
    assert len(replies) <= 1, f"{len(replies)} replies to one message {frames!r}"
    for reply in replies:
        for member in reply if isinstance(reply, list) else [reply]:
            _well_formed(member)
    return replies


def _needs_reply(member) -> bool:
    """JSON-RPC 2.0: every batch member is answered except a notification (a request object, with
    "jsonrpc": "2.0" and a string method, that has no "id")."""
    return not (isinstance(member, dict) and "id" not in member and member.get("jsonrpc") == "2.0"
                and isinstance(member.get("method"), str))


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes(client, frame):
    _check(client, [frame])


@SETTINGS
@given(requests)
def test_random_maps(client, message):
    try:
        frame = msgpack.packb(message, use_bin_type=True)
    except (OverflowError, ValueError):
        return
    _check(client, [frame])


@SETTINGS
@given(mutated(), st.lists(st.binary(max_size=30), max_size=2))
def test_mutated_requests_and_extra_frames(client, frame, extra):
    _check(client, [frame, *extra])


# --- batches --------------------------------------------------------------------------------------
safe_requests = st.builds(lambda method, id: p.request(method, id=id), st.sampled_from(sorted(SAFE - {"cancel"})),
                          st.one_of(st.integers(0, 2**31), st.text(min_size=1, max_size=8)))
safe_notes = st.builds(p.notification, st.sampled_from(sorted(SAFE) + ["nope", "progress"]))
members = st.one_of(safe_requests, safe_notes, requests, scalars, st.lists(scalars, max_size=2))


@settings(SETTINGS, max_examples=600)
@given(st.lists(members, max_size=8))
def test_random_batches(client, batch):
    try:
        frame = msgpack.packb(batch, use_bin_type=True)
    except (OverflowError, ValueError):
        return
    if not _harmless([frame]):
        return
    replies = _check(client, [frame])
    needed = [m for m in batch if _needs_reply(m)]
    if not batch:  # an empty array: one error, not an array
        assert len(replies) == 1 and replies[0]["error"]["code"] == p.INVALID_REQUEST
    elif not needed:  # notifications only: nothing at all
        assert replies == []
    else:
        (reply,) = replies
        assert isinstance(reply, list) and len(reply) == len(needed), (batch, reply)
        answered = {r["id"] for r in reply if isinstance(r["id"], (str, int))}
        asked = {m["id"] for m in needed if isinstance(m, dict) and m.get("method") in SAFE
                 and m.get("jsonrpc") == "2.0" and isinstance(m.get("id"), (str, int))
                 and not isinstance(m.get("id"), bool) and isinstance(m.get("params", {}), dict)}
        assert asked <= answered


@settings(SETTINGS, max_examples=400)
@given(st.lists(st.one_of(safe_requests, safe_notes), min_size=1, max_size=6), st.data())
def test_mutated_batches(client, batch, data):
    frame = bytearray(p.pack(batch))
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] ^= 1 << data.draw(st.integers(0, 7))
    _check(client, [bytes(frame)])


# --- frames that would decode into too many objects ---------------------------------------------
LEAVES = {"empty map": b"\x80", "empty array": b"\x90", "nil": b"\xc0", "one-char string": b"\xa1a",
          "map of an empty map": b"\x81\xa0\x80"}


def _array(items: list[bytes] | bytes, count: int | None = None) -> bytes:
    body = items if isinstance(items, bytes) else b"".join(items)
    return b"\xdd" + (count if count is not None else len(items)).to_bytes(4, "big") + body


def _flat(leaf: bytes, count: int) -> bytes:
    return _array(leaf * count, count)


def _nested(leaf: bytes, count: int) -> bytes:
    """``count`` leaves in arrays of 1,000 inside one array: no container over msgpack's own limits."""
    inner = _array(leaf * 1000, 1000)
    return _array(inner * (count // 1000), count // 1000)


def _in_a_request(leaf: bytes, count: int) -> bytes:
    """A valid hello whose params hold the leaves: the bound holds whatever the frame's shape."""
    head = p.pack({"jsonrpc": "2.0", "id": "big", "method": "hello"})
    return bytes([head[0] + 1]) + head[1:] + p.pack("params") + b"\x81" + p.pack("x") + _flat(leaf, count)


@pytest.mark.parametrize("leaf", LEAVES.values(), ids=LEAVES.keys())
@pytest.mark.parametrize("shape", [_flat, _nested, _in_a_request])
@pytest.mark.parametrize("count", [p.MAX_REQUEST_OBJECTS + 1000, 4_000_000])
def test_frames_over_the_object_bound_are_refused(client, leaf, shape, count):
    frame = shape(leaf, count)
    client.send(frame)
    (reply,) = _replies(client)
    # a request's id is read without decoding the rest, so the refusal answers that request
    assert reply["id"] == ("big" if shape is _in_a_request else None) and reply["error"]["code"] == p.PARSE_ERROR
    assert reply["error"]["message"] == (f"frame of {len(frame)} bytes decodes into more than "
                                         f"{p.MAX_REQUEST_OBJECTS} objects, the limit per request frame")


def test_a_frame_at_the_object_bound_is_served(client):
    head_objects = 1 + 2 * 4 + 2  # the request map, its 4 keys and values, params' one key and value
    frame = _in_a_request(b"\xc0", p.MAX_REQUEST_OBJECTS - head_objects)
    assert p.count_objects(frame, 10**9) == p.MAX_REQUEST_OBJECTS
    client.send(frame)
    (reply,) = _replies(client)
    assert reply["id"] == "big" and reply["result"]["device"] == "cpu"


def test_daemon_still_serves_after_the_fuzz(client):
    reply = client.call("status")
    assert reply["result"]["busy"] is False and reply["result"]["stopping"] is None
    assert client.call("hello")["result"]["device"] == "cpu"
