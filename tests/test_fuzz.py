"""Fuzz a real daemon with random and mutated frames: each gets one error reply or is dropped, and
the daemon keeps serving. Each frame is followed by a sentinel request, so "dropped" is observable
without waiting for a timeout."""

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
    """Skip what would start a job or shut the shared daemon down (that is tested elsewhere)."""
    if len(frames) != 1:
        return True
    try:
        msg = p.parse_request(frames[0])
    except p.ProtocolError:
        return True
    return msg["method"] in SAFE


@pytest.fixture(scope="module")
def client(daemon_pool):
    c = RawClient(daemon_pool.endpoints[1])
    yield c
    c.close()


def _check(client: RawClient, frames: list[bytes]) -> None:
    if not _harmless(frames):
        return
    client.send(*frames)
    sentinel = f"sentinel-{next(_sentinels)}"
    client.request("heartbeat", id=sentinel)
    replies = []
    while (msg := client.recv(10)) is not None and msg.get("id") != sentinel:
        replies.append(msg)
    assert msg is not None, f"daemon stopped answering after {frames!r}"
    assert len(replies) <= 1, f"{len(replies)} replies to one message"
    if replies and "error" in replies[0]:
        err = replies[0]["error"]
        assert err["code"] in p.ERROR_NAMES and isinstance(err["message"], str) and "\n" not in err["message"]


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


def test_daemon_still_serves_after_the_fuzz(client):
    reply = client.call("status")
    assert reply["result"]["busy"] is False and reply["result"]["stopping"] is None
    assert client.call("hello")["result"]["device"] == "cpu"
