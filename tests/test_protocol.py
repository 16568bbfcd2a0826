"""moe_schema.protocol: JSON-RPC 2.0 over msgpack, bounded unpacking, endpoints and key files."""

from __future__ import annotations

import msgpack
import pytest

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
])
def test_bad_frames_get_the_right_code(frame, code):
    with pytest.raises(p.ProtocolError) as info:
        p.parse_request(frame)
    assert info.value.code == code
    assert "\n" not in info.value.message


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
])
def test_is_loopback(endpoint, loopback):
    assert p.is_loopback(endpoint) is loopback


@pytest.mark.parametrize("endpoint", ["127.0.0.1:5555", "udp://1.2.3.4:5", "http://x"])
def test_bad_endpoints_are_named(endpoint):
    with pytest.raises(ValueError, match="endpoint"):
        p.is_loopback(endpoint)


def test_key_loading_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match="server.key_secret: missing"):
        p.server_keys(tmp_path)
    with pytest.raises(ValueError, match="client.key_secret: missing"):
        p.client_keys(tmp_path)
