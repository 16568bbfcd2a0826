"""moe_schema.protocol: JSON-RPC 2.0 over msgpack, bounded unpacking, batches, endpoints and key files."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moe_schema import protocol as p


def test_round_trip_and_request_shape():
    req = p.request("hello", {"a": [1, 2.5, "x", None, b"\x00"]})
    assert req["jsonrpc"] == "2.0" and isinstance(req["id"], int)
    assert p.parse_request(p.pack(req)) == req
    reply = p.result(req["id"], {"ok": True})
    assert p.raise_for_error(p.parse_reply(p.pack(reply))) == {"ok": True}


def test_error_reply_raises_remote_error():
    msg = p.parse_reply(p.pack(p.error(7, p.BUSY, "worker busy", {"job": 3})))
    with pytest.raises(p.RemoteError) as info:
        p.raise_for_error(msg)
    assert info.value.code == p.BUSY and info.value.data == {"job": 3}


@pytest.mark.parametrize("frame, code", [
    (b"", p.PARSE_ERROR),
    (b"\xc1", p.PARSE_ERROR),                                  # a byte msgpack never uses
    (msgpack.packb([1, 2]), p.INVALID_REQUEST),                # not a map
    (msgpack.packb({"jsonrpc": "1.0", "id": 1, "method": "hello"}), p.INVALID_REQUEST),
    (msgpack.packb({"jsonrpc": "2.0", "id": 1.5, "method": "hello"}), p.INVALID_REQUEST),
    (msgpack.packb({"jsonrpc": "2.0", "id": 1, "method": 3}), p.INVALID_REQUEST),
    (msgpack.packb({"jsonrpc": "2.0", "id": 1, "method": "hello", "params": [1]}), p.INVALID_PARAMS),
    (msgpack.packb({"jsonrpc": "2.0", "id": 1, "method": "sleep"}), p.METHOD_NOT_FOUND),
    (msgpack.packb({1: 2}), p.PARSE_ERROR),                    # non-string map keys refused
    (msgpack.packb(msgpack.ExtType(1, b"x")), p.PARSE_ERROR),  # no extension types at all
    (b"\x91" * 5000 + b"\xc0", p.PARSE_ERROR),                # nested deeper than msgpack's stack
])
def test_bad_frames_get_the_right_code(frame, code):
    with pytest.raises(p.ProtocolError) as info:
        p.parse_request(frame)
    assert info.value.code == code
    assert "\n" not in info.value.message and not info.value.message.endswith(":")


def test_error_keeps_the_id_and_knows_notifications():
    with pytest.raises(p.ProtocolError) as info:
        p.parse_request(p.pack({"jsonrpc": "2.0", "id": "a-1", "method": "nope"}))
    assert info.value.id == "a-1" and not info.value.notification
    with pytest.raises(p.ProtocolError) as info:
        p.parse_request(p.pack({"jsonrpc": "2.0", "method": "nope"}))
    assert info.value.notification  # JSON-RPC: never reply to a notification


def test_unpack_is_bounded(monkeypatch):
    monkeypatch.setattr(p, "MAX_MESSAGE_BYTES", 100)
    with pytest.raises(p.ProtocolError, match="exceeds"):
        p.unpack(b"\x00" * 101)
    huge_array = b"\xdd\xff\xff\xff\xff"  # claims 4 billion items in 5 bytes
    with pytest.raises(p.ProtocolError):
        p.unpack(huge_array)


def test_parse_reply_rejects_ambiguous_messages():
    for msg in ({"jsonrpc": "2.0", "id": 1}, {"jsonrpc": "2.0", "id": 1, "result": 1, "error": {}},
                {"jsonrpc": "2.0", "id": 1, "error": "bad"}, {"id": 1, "result": 2}):
        with pytest.raises(p.ProtocolError):
            p.parse_reply(p.pack(msg))


@pytest.mark.parametrize("endpoint, loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.2.1:1", True), ("tcp://localhost:80", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/w.sock", True), ("tcp://*:5555", False),
    ("tcp://0.0.0.0:5555", False), ("tcp://10.0.0.5:5555", False), ("tcp://node07:5555", False),
    ("tcp://127.1:5555", True),                  # what the resolver (and ZeroMQ) make of it: 127.0.0.1
    ("tcp://::ffff:127.0.0.1:5555", True),       # IPv4-mapped loopback (ZeroMQ binds it unbracketed)
    ("tcp://[::ffff:10.0.0.1]:5555", False), ("tcp://[::]:5555", False), ("tcp://*:*", False),
    ("tcp://127.0.0.1:0;127.0.0.2:5555", True),  # ZeroMQ's SOURCE;DESTINATION, both loopback
    ("tcp://127.0.0.1:0;0.0.0.0:5555", False),   # a bind listens on the destination
    ("tcp://0.0.0.0:0;127.0.0.1:5555", False),   # every part is checked
    ("tcp://127.attacker.example:5555", False),  # a host name, not an address: does not resolve here
])
def test_is_loopback(endpoint, loopback):
    assert p.is_loopback(endpoint) is loopback


@pytest.mark.parametrize("endpoint", ["127.0.0.1:5555", "udp://1.2.3.4:5", "http://x", "tcp://node07",
                                      "tcp://:5555", "tcp://127.0.0.1:5555;", "tcp://[::1]5555",
                                      "tcp://127.0.0.1:http"])
def test_bad_endpoints_are_named(endpoint):
    with pytest.raises(ValueError, match="endpoint"):
        p.is_loopback(endpoint)


def test_the_refused_part_is_named():
    assert p.loopback_refusal("tcp://127.0.0.1:0;0.0.0.0:5555") == \
        "0.0.0.0 is not a loopback address (part 2 of 2, 0.0.0.0:5555)"
    assert p.loopback_refusal("tcp://*:5555") == "'*' is every interface"
    assert p.loopback_refusal("tcp://127.0.0.1:5555") is None and p.loopback_refusal("ipc:///x") is None


@pytest.mark.parametrize("addresses, refusal", [
    ({"127.0.0.1", "::1"}, None),
    ({"127.0.0.1", "203.0.113.9"}, "'127.attacker.example' resolves to 203.0.113.9, not loopback"),
    ({"203.0.113.9"}, "'127.attacker.example' resolves to 203.0.113.9, not loopback"),
    (set(), "'127.attacker.example' is not an IP address and does not resolve"),
])
def test_a_host_name_is_loopback_only_if_every_address_it_resolves_to_is(monkeypatch, addresses, refusal):
    looked_up = []
    monkeypatch.setattr(p, "_resolve", lambda host: looked_up.append(host) or addresses)
    assert p.loopback_refusal("tcp://127.attacker.example:5555") == refusal
    assert looked_up == ["127.attacker.example"]  # resolved, never judged by its spelling
    p.loopback_refusal("tcp://127.0.0.1:5555;[::1]:5")  # literals are parsed, not looked up
    assert looked_up == ["127.attacker.example"]


# --- the decode bound ------------------------------------------------------------------------------
def _objects(value) -> int:
    """How many objects ``value`` decodes into, counted the slow obvious way (the walk's reference)."""
    if isinstance(value, list):
        return 1 + sum(_objects(v) for v in value)
    if isinstance(value, dict):
        return 1 + sum(1 + _objects(v) for v in value.values())
    return 1


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=False, width=32),
                     st.text(max_size=40), st.binary(max_size=40), st.text(min_size=256, max_size=300),
                     st.binary(min_size=256, max_size=300))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=10), st.dictionaries(st.text(max_size=8), inner, max_size=10)), max_leaves=25)


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(_values, st.booleans())
def test_count_objects_matches_the_decoded_structure(value, single_float):
    frame = msgpack.packb(value, use_bin_type=True, use_single_float=single_float)
    n = _objects(value)
    assert p.count_objects(frame, 10**9) == n
    assert p.count_objects(frame, n - 1) == n  # stops one past the limit
    assert p.unpack(frame, max_objects=n) == msgpack.unpackb(frame, raw=False)
    if len(frame) > n - 1:
        with pytest.raises(p.ProtocolError, match=f"more than {n - 1} objects"):
            p.unpack(frame, max_objects=n - 1)


def test_count_objects_of_wide_headers_ext_types_and_truncated_frames():
    wide = ["s" * 70000, b"b" * 70000, [None] * 70000, {str(i): i for i in range(70000)}, [0] * 20]
    assert p.count_objects(msgpack.packb(wide, use_bin_type=True), 10**9) == _objects(wide)
    for ext in (msgpack.ExtType(1, b"x" * k) for k in (1, 2, 4, 8, 16, 3, 300, 70000)):
        assert p.count_objects(msgpack.packb([ext, 1]), 100) == 3
    assert p.count_objects(b"\xdd\xff\xff\xff\xff", 100) == 1  # claims 4 billion items, holds none
    assert p.count_objects(b"\x92\x80", 100) == 2                 # one of two items missing


def test_four_million_empty_maps_are_refused_naming_the_limit():
    frame = b"\xdd" + (4_000_000).to_bytes(4, "big") + b"\x80" * 4_000_000
    with pytest.raises(p.ProtocolError) as info:
        p.parse_request(frame)
    assert info.value.code == p.PARSE_ERROR
    assert info.value.message == (f"frame of {len(frame)} bytes decodes into more than "
                                  f"{p.MAX_REQUEST_OBJECTS} objects, the limit per request frame")
    nested = msgpack.packb([[{}] * 50_000] * 80)  # the same count, no container over msgpack's limits
    with pytest.raises(p.ProtocolError, match="the limit per request frame"):
        p.parse_incoming(nested)


def test_a_16_mib_task_folder_is_within_the_bound():
    from moe_schema.taskfiles import SHIP_LIMIT

    files = {f"data/part-{i:05d}.jsonl": b"x" * (SHIP_LIMIT // 4000) for i in range(4000)}  # 4,000 files
    frame = p.pack(p.request("evaluate", {"kind": "evaluate", "task": {"name": "t", "files": files}}))
    assert len(frame) > SHIP_LIMIT - 4000
    assert p.parse_request(frame)["params"]["task"]["files"] == files


# --- batches -------------------------------------------------------------------------------------
def test_batches_are_parsed_member_by_member():
    hello = p.request("hello", id=1)
    members = p.parse_incoming(p.pack([hello, 1, p.notification("heartbeat"), {"jsonrpc": "2.0", "method": "x"}]))
    assert members[0] == hello and members[2] == p.notification("heartbeat")
    assert isinstance(members[1], p.ProtocolError) and members[1].code == p.INVALID_REQUEST
    assert not members[1].notification
    assert isinstance(members[3], p.ProtocolError) and members[3].code == p.METHOD_NOT_FOUND
    assert members[3].notification  # never answered
    for frame, text in ((p.pack([]), "empty batch"),
                        (p.pack([hello] * (p.MAX_BATCH + 1)), f"exceeds the limit of {p.MAX_BATCH}")):
        with pytest.raises(p.ProtocolError, match=text) as info:
            p.parse_incoming(frame)
        assert info.value.code == p.INVALID_REQUEST and info.value.id is None
    assert p.parse_incoming(p.pack(hello)) == hello
    with pytest.raises(p.ProtocolError, match="expected a map"):
        p.parse_request(p.pack([hello]))  # the single-request parser still takes no batch


def test_batch_frame_is_an_array_of_the_packed_replies():
    replies = [p.result(1, {"a": [1, 2]}), p.error(None, p.INVALID_REQUEST, "bad"), p.result("x", None)]
    frame = p.batch_frame([p.pack(r) for r in replies])
    assert msgpack.unpackb(frame) == replies
    assert p.parse_batch_reply(frame) == replies
    assert p.parse_batch_reply(p.pack(replies[1])) == [replies[1]]  # a refused batch: one reply


def test_key_loading_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="server.key_secret: missing"):
        p.server_keys(tmp_path)
    with pytest.raises(ValueError, match="client.key_secret: missing"):
        p.client_keys(tmp_path)
