"""The wire's limits at their boundary: a frame of exactly the cap is read, one byte more is refused;
an array or map of exactly its cap of items is read, one more is refused, however small its items.

The caps are read from moe_schema.protocol itself, so the tests follow a change of the numbers and fail
when a limit stops being enforced where it is stated (an off-by-one, or a limit dropped)."""

from __future__ import annotations

import msgpack
import pytest
import zmq

from moe_schema import protocol as p


def framed(n_bytes: int) -> bytes:
    """A valid msgpack frame of exactly ``n_bytes`` bytes (a bin holding padding)."""
    for header in (2, 3, 5):  # bin8, bin16, bin32 headers
        frame = msgpack.packb(b"\x00" * (n_bytes - header), use_bin_type=True)
        if len(frame) == n_bytes:
            return frame
    raise AssertionError(n_bytes)


def test_a_frame_of_exactly_the_cap_is_read_and_one_byte_more_refused(monkeypatch):
    monkeypatch.setattr(p, "MAX_MESSAGE_BYTES", 300)
    assert p.unpack(framed(300)) == b"\x00" * 297
    with pytest.raises(p.ProtocolError, match="frame of 301 bytes exceeds 300") as info:
        p.unpack(framed(301))
    assert info.value.code == p.PARSE_ERROR


def limit(name: str) -> int:
    return p._unpack_limits[name]


def array_frame(n: int) -> bytes:
    """msgpack array32 of ``n`` zeros, built directly (packing a Python list of millions is slow)."""
    return b"\xdd" + n.to_bytes(4, "big") + b"\x00" * n


def map_frame(n: int) -> bytes:
    """msgpack map32 of ``n`` entries "" -> 0 (duplicate keys: the cap is on the stated count)."""
    return b"\xdf" + n.to_bytes(4, "big") + b"\xa0\x00" * n


def test_an_array_of_exactly_the_cap_is_read_and_one_more_item_refused():
    cap = limit("max_array_len")
    assert len(p.unpack(array_frame(cap))) == cap
    with pytest.raises(p.ProtocolError) as info:
        p.unpack(array_frame(cap + 1))
    assert info.value.code == p.PARSE_ERROR and "cannot decode frame" in info.value.message


def test_a_map_of_exactly_the_cap_is_read_and_one_more_entry_refused():
    cap = limit("max_map_len")
    assert p.unpack(map_frame(cap)) == {"": 0}
    with pytest.raises(p.ProtocolError) as info:
        p.unpack(map_frame(cap + 1))
    assert info.value.code == p.PARSE_ERROR


def test_strings_and_bins_are_capped_by_the_frame_only():
    assert limit("max_str_len") >= p.MAX_MESSAGE_BYTES and limit("max_bin_len") >= p.MAX_MESSAGE_BYTES
    big = "x" * 1_000_000
    assert p.unpack(p.pack({"s": big, "b": big.encode()})) == {"s": big, "b": big.encode()}


def test_a_request_with_a_container_over_the_cap_gets_a_parse_error_not_a_crash():
    cap = limit("max_array_len")
    head = p.pack(p.request("hello", {"items": []}, id=5))
    frame = head[:-1] + array_frame(cap + 1)  # the request's last value, its empty list, made too long
    assert head[-1:] == b"\x90"
    with pytest.raises(p.ProtocolError) as info:
        p.parse_request(frame)
    assert info.value.code == p.PARSE_ERROR


def test_every_socket_of_ours_refuses_frames_over_the_cap_before_they_reach_us():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    try:
        p.configure_socket(sock)
        assert sock.getsockopt(zmq.MAXMSGSIZE) == p.MAX_MESSAGE_BYTES
        assert sock.getsockopt(zmq.LINGER) == 0
    finally:  # closed whatever failed: a socket left open makes ctx.term() wait forever
        sock.close(linger=0)
        ctx.term()
