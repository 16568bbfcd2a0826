"""What each side of the wire reads when a message is refused (moe_schema.protocol): the JSON-RPC code,
the one-line message, the id it is answered with and whether it is answered at all; the messages the
builders make; the object walk's count on frames with trailing bytes (so no container header can hide
objects from the bound); batch and frame limits at their boundary."""

from __future__ import annotations

import msgpack
import pytest

from moe_schema import protocol as p

METHODS = "describe, evaluate, probe, train, hello, status, cancel, shutdown, heartbeat"


def refused(msg, check=p.check_request) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as info:
        check(msg)
    return info.value


@pytest.mark.parametrize("msg, code, message, id, note", [
    ([1], p.INVALID_REQUEST, "expected a map, got list", None, False),
    ({"jsonrpc": "2.0", "id": True, "method": "hello"}, p.INVALID_REQUEST, "id must be a string, an integer or null",
     None, False),
    ({"id": 7, "method": "hello"}, p.INVALID_REQUEST, "missing or wrong 'jsonrpc' (expected '2.0')", 7, False),
    ({"jsonrpc": "2.0", "id": "a", "method": ["hello"]}, p.INVALID_REQUEST, "'method' must be a string", "a", False),
    ({"jsonrpc": "2.0", "id": 3, "method": "hello", "params": [1]}, p.INVALID_PARAMS, "'params' must be a map", 3, False),
    ({"jsonrpc": "2.0", "method": "hello", "params": "x"}, p.INVALID_PARAMS, "'params' must be a map", None, True),
    ({"jsonrpc": "2.0", "id": 4, "method": "sleep"}, p.METHOD_NOT_FOUND, f"no such method 'sleep'; known: {METHODS}",
     4, False),
    ({"jsonrpc": "2.0", "method": "sleep"}, p.METHOD_NOT_FOUND, f"no such method 'sleep'; known: {METHODS}", None, True),
])
def test_a_refused_request_carries_its_code_message_id_and_whether_to_answer(msg, code, message, id, note):
    err = refused(msg)
    assert (err.code, err.message, str(err), err.id, err.notification) == (code, message, message, id, note)


def test_a_request_without_params_gets_an_empty_map():
    msg = p.check_request({"jsonrpc": "2.0", "id": 1, "method": "status"})
    assert msg["params"] == {} and msg["id"] == 1


@pytest.mark.parametrize("msg, code, message", [
    ([1], p.INVALID_REQUEST, "not a JSON-RPC 2.0 message"),
    ({"id": 1, "result": 1}, p.INVALID_REQUEST, "not a JSON-RPC 2.0 message"),
    ({"jsonrpc": "2.0", "method": "progress", "params": [1]}, p.INVALID_PARAMS, "notification params must be a map"),
    ({"jsonrpc": "2.0", "id": 1}, p.INVALID_REQUEST, "a reply holds exactly one of 'result' and 'error'"),
    ({"jsonrpc": "2.0", "id": 1, "result": 1, "error": {"code": 1}}, p.INVALID_REQUEST,
     "a reply holds exactly one of 'result' and 'error'"),
    ({"jsonrpc": "2.0", "id": 1, "error": "bad"}, p.INVALID_REQUEST, "malformed error object"),
    ({"jsonrpc": "2.0", "id": 1, "error": {"code": "busy"}}, p.INVALID_REQUEST, "malformed error object"),
])
def test_a_refused_reply_carries_its_code_and_message(msg, code, message):
    err = refused(msg, p.check_reply)
    assert (err.code, err.message) == (code, message)


def test_notifications_and_replies_a_coordinator_accepts():
    note = {"jsonrpc": "2.0", "method": "progress", "params": {"id": 3, "done": 1}}
    assert p.check_reply(note) is note
    assert p.check_reply({"jsonrpc": "2.0", "method": "heartbeat"})["method"] == "heartbeat"
    assert p.parse_reply(p.pack(p.result(2, [1]))) == {"jsonrpc": "2.0", "id": 2, "result": [1]}


def test_an_error_reply_raises_with_the_sides_code_and_message():
    with pytest.raises(p.RemoteError) as info:
        p.raise_for_error(p.error(9, p.BUSY, "worker busy", {"job": 1}))
    assert str(info.value) == f"worker busy (code {p.BUSY})"
    assert (info.value.code, info.value.message, info.value.data) == (p.BUSY, "worker busy", {"job": 1})


def test_the_builders_make_json_rpc_2_messages():
    assert p.request("hello", {"a": 1}, id=0) == {"jsonrpc": "2.0", "id": 0, "method": "hello", "params": {"a": 1}}
    assert p.request("status", id="x") == {"jsonrpc": "2.0", "id": "x", "method": "status", "params": {}}
    first, second = p.request("hello"), p.request("hello")
    assert isinstance(first["id"], int) and second["id"] > first["id"]  # fresh ids
    assert p.notification("heartbeat", {"busy": False}) == {"jsonrpc": "2.0", "method": "heartbeat",
                                                            "params": {"busy": False}}
    assert p.notification("heartbeat") == {"jsonrpc": "2.0", "method": "heartbeat", "params": {}}
    assert p.error(1, p.BUSY, "busy") == {"jsonrpc": "2.0", "id": 1, "error": {"code": p.BUSY, "message": "busy"}}
    assert p.error(1, p.BUSY, "busy", {"k": 2})["error"] == {"code": p.BUSY, "message": "busy", "data": {"k": 2}}


def test_bytes_travel_as_bytes_and_strings_as_strings():
    frame = p.pack({"b": b"\x00\xff", "s": "é"})
    assert frame == msgpack.packb({"b": b"\x00\xff", "s": "é"}, use_bin_type=True)
    assert p.unpack(frame) == {"b": b"\x00\xff", "s": "é"}


@pytest.mark.parametrize("frame, message", [
    (p.pack(1) + p.pack(2), "cannot decode frame: ExtraData: unpack(b) received extra data."),
    (b"\x91" * 5000 + b"\xc0", "cannot decode frame: StackError: containers nested too deep"),
    (msgpack.packb({1: 2}), "cannot decode frame: ValueError: int is not allowed for map key when strict_map_key=True"),
    (msgpack.packb(msgpack.ExtType(1, b"xy")), "cannot decode frame: ValueError: 3 exceeds max_ext_len(0)"),
    (b"\xc1", "cannot decode frame: FormatError"),
    (b"\x92\x01", "cannot decode frame: ValueError: Unpack failed: incomplete input"),
])
def test_an_undecodable_frame_is_a_parse_error_on_one_line(frame, message):
    err = refused(frame, p.unpack)
    assert (err.code, err.message) == (p.PARSE_ERROR, message)


def test_the_frame_size_bound_names_the_size_and_the_code(monkeypatch):
    monkeypatch.setattr(p, "MAX_MESSAGE_BYTES", 8)
    err = refused(p.pack("x" * 8), p.unpack)
    assert (err.code, err.message) == (p.PARSE_ERROR, "frame of 9 bytes exceeds 8")
    assert p.unpack(p.pack("x" * 7)) == "x" * 7  # exactly 8 bytes


def test_exactly_the_object_limit_decodes_and_one_more_is_refused():
    ten = p.pack(["abc"] * 9)  # the array and 9 strings: 10 objects in 37 bytes
    assert p.unpack(ten, max_objects=10) == ["abc"] * 9
    err = refused(p.pack(["abc"] * 10), lambda f: p.unpack(f, max_objects=10))
    assert (err.code, err.message) == (p.PARSE_ERROR, "frame of 41 bytes decodes into more than 10 objects, "
                                                      "the limit per request frame")
    assert p.unpack(p.pack([1] * 20), max_objects=25) == [1] * 20  # fewer bytes than the limit: not walked


def _objects(value) -> int:
    if isinstance(value, dict):
        return 1 + sum(_objects(k) + _objects(v) for k, v in value.items())
    if isinstance(value, list):
        return 1 + sum(_objects(v) for v in value)
    return 1


TRAILER = p.pack([0] * 30)  # 31 objects more, if a walk ran past its message


@pytest.mark.parametrize("value", [
    0, 127, -1, -32, -33, 128, 2 ** 16, 2 ** 32, -(2 ** 15), -(2 ** 31), -(2 ** 40), 1.5, None, True, False,
    "", "x" * 31, "x" * 32, "x" * 300, "x" * 70000, b"", b"b" * 300, b"b" * 70000,
    {}, {"a": 1}, {str(i): i for i in range(15)}, {str(i): [i] for i in range(16)}, {str(i): i for i in range(70000)},
    [], [1, [2, [3]]], [None] * 15, [None] * 16, [0] * 70000,
])
def test_the_walk_counts_one_message_and_stops_there(value):
    """Trailing bytes (which msgpack refuses as ExtraData) are not counted: a header that claimed too
    many items or skipped the wrong number of bytes would run into them."""
    frame = msgpack.packb(value, use_bin_type=True)
    assert p.count_objects(frame + TRAILER, 10**9) == _objects(value)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 8, 16, 300, 70000])
def test_the_walk_skips_ext_payloads_whole(size):
    frame = msgpack.packb([msgpack.ExtType(5, b"\x01" * size), 1, [2]])
    assert p.count_objects(frame + TRAILER, 10**9) == 5


def test_a_map16_cannot_hide_its_entries_from_the_bound():
    frame = msgpack.packb({str(i): i for i in range(20)})  # map16 header
    assert frame[0] == 0xde
    assert p.count_objects(frame, 10) == 11  # stops one past the limit
    err = refused(frame, lambda f: p.unpack(f, max_objects=10))
    assert err.code == p.PARSE_ERROR and "more than 10 objects" in err.message


def test_a_batch_of_exactly_the_limit_is_parsed_and_one_more_refused():
    hello = p.request("hello", id=1)
    assert len(p.parse_incoming(p.pack([hello] * p.MAX_BATCH))) == p.MAX_BATCH
    err = refused(p.pack([hello] * (p.MAX_BATCH + 1)), p.parse_incoming)
    assert (err.code, err.message) == (p.INVALID_REQUEST, f"batch of {p.MAX_BATCH + 1} requests exceeds the limit "
                                                          f"of {p.MAX_BATCH}")
    err = refused(p.pack([]), p.parse_incoming)
    assert (err.code, err.message) == (p.INVALID_REQUEST, "empty batch: a batch holds at least one request")


# ---- endpoints and key folders --------------------------------------------------------------------
def test_an_ipv6_scope_is_dropped_before_the_address_is_judged(monkeypatch):
    monkeypatch.setattr(p, "_resolve", lambda host: set())  # nothing resolves: literals must parse
    assert p.loopback_refusal("tcp://[::1%lo]:5555") is None
    assert p.loopback_refusal("tcp://[fe80::1%eth0]:5555") == "fe80::1%eth0 is not a loopback address"


@pytest.mark.parametrize("addresses, refusal", [
    ({"::1%lo", "127.0.0.1"}, None),
    ({"fe80::1%eth0", "127.0.0.1"}, "'box' resolves to fe80::1%eth0, not loopback"),
    ({"10.0.0.2", "10.0.0.1", "127.0.0.1"}, "'box' resolves to 10.0.0.1, 10.0.0.2, not loopback"),
])
def test_a_resolved_name_names_every_address_off_loopback(monkeypatch, addresses, refusal):
    monkeypatch.setattr(p, "_resolve", lambda host: addresses)
    assert p.loopback_refusal("tcp://box:5555") == refusal


def test_key_folders_load_and_name_what_is_wrong(tmp_path):
    import shutil

    import zmq.auth

    server, client = tmp_path / "server", tmp_path / "client"
    for folder, name in ((server, "server"), (client, "client")):
        folder.mkdir(mode=0o700)
        zmq.auth.create_certificates(folder, name)
        (folder / f"{name}.key_secret").chmod(0o600)
    shutil.copy(server / "server.key", client / "server.key")
    (server / "authorized").mkdir()
    with pytest.raises(ValueError, match=rf"^{server / 'authorized'}: no client public keys \(\*\.key\) to accept$"):
        p.server_keys(tmp_path)  # the folder is there, with no key in it
    shutil.copy(client / "client.key", server / "authorized" / "client.key")
    assert p.server_keys(tmp_path)[:2] == p.server_keys(server)[:2] == zmq.auth.load_certificate(server / "server.key_secret")
    public, secret, server_public = p.client_keys(tmp_path)  # DIR picks DIR/client, as DIR/server above
    assert (public, secret) == zmq.auth.load_certificate(client / "client.key_secret")
    assert server_public == zmq.auth.load_certificate(server / "server.key")[0] == p.server_public_key(server)
    (server / "authorized").chmod(0o777)
    with pytest.raises(ValueError, match=rf"^{server / 'authorized'}: writable by group or others \(mode 0777\)"):
        p.server_keys(server)
    (server / "authorized").chmod(0o755)
    shutil.copy(server / "server.key", server / "server.key_secret")  # a public key where the secret belongs
    (server / "server.key_secret").chmod(0o600)
    with pytest.raises(ValueError, match=rf"^{server / 'server.key_secret'}: no secret key in this file$"):
        p.server_keys(server)
    (client / "server.key").unlink()
    with pytest.raises(ValueError, match=rf"^{client / 'server.key'}: missing \(make keys with `harness keys DIR`; "
                                         r"coordinators take DIR or DIR/client\)$"):
        p.client_keys(client)
    shutil.copy(client / "client.key_secret", server / "client.key_secret")  # the old one-folder layout
    with pytest.raises(ValueError, match=rf"^{server}: holds both server.key_secret and client.key_secret \(the old "
                                         rf"one-folder layout.*`harness keys {server} --split`"):
        p.server_keys(server)


def test_ipc_and_inproc_endpoints_have_no_host_to_check():
    assert p.endpoint_parts("inproc://workers") == ("inproc", [])
    assert p.endpoint_parts("ipc:///tmp/run://1/w.sock") == ("ipc", [])  # a path may hold "://"
    assert p.is_loopback("inproc://workers") and p.is_loopback("ipc:///tmp/run://1/w.sock")
