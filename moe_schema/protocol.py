"""The wire between coordinator and worker daemons: JSON-RPC 2.0 messages, msgpack-encoded.

This is the one module both sides import, so it must never import torch, transformers or lm-eval.

A message is one ZeroMQ frame holding one msgpack map, or an array of them (a JSON-RPC 2.0
batch, section 7 of the spec: answered by one array of replies, nothing for a batch of
notifications only). Requests carry ``id``; notifications (progress, heartbeats) carry none.

Unpacking is bounded. A frame larger than ``MAX_MESSAGE_BYTES`` is refused by ZeroMQ
(``MAXMSGSIZE``) before it reaches us. msgpack's own limits cap each container and string, but not
the total: 4 MB of ``0x80`` bytes is 4,000,000 empty maps, about 290 MB of Python dicts. So a frame
sent to a daemon is first walked (``count_objects``, no objects built) and refused with a parse
error past ``MAX_REQUEST_OBJECTS``; a frame that holds many bytes in few objects (a 16 MiB task
folder) still travels. A reply the coordinator receives is bounded the same way, by
``MAX_REPLY_OBJECTS``, and its sockets take frames up to ``MAX_RECEIVED_BYTES`` so that a reply
over ``MAX_MESSAGE_BYTES`` reaches it and fails its job naming the size (ZeroMQ would drop it
silently, and the job would look lost). A refused frame's ``id`` is read without decoding the
rest (``peek_id``), so the refusal answers, or fails, the request it was. Nothing on the wire is
ever pickled.
"""

from __future__ import annotations

import io
import ipaddress
import itertools
import socket
from typing import Any

import msgpack

JSONRPC = "2.0"
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # ZeroMQ MAXMSGSIZE on every socket of ours

# JSON-RPC 2.0 standard codes
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# the harness's own, in the server-error range -32000..-32099
OUT_OF_MEMORY = -32000
MODEL_LOAD_FAILED = -32001
JOB_CANCELLED = -32002
JOB_FAILED = -32003
BUSY = -32004
UNSUPPORTED = -32005  # e.g. a non-causal routing strategy asked to generate

ERROR_NAMES = {
    PARSE_ERROR: "parse error",
    INVALID_REQUEST: "invalid request",
    METHOD_NOT_FOUND: "method not found",
    INVALID_PARAMS: "invalid params",
    INTERNAL_ERROR: "internal error",
    OUT_OF_MEMORY: "out of memory",
    MODEL_LOAD_FAILED: "model failed to load",
    JOB_CANCELLED: "job cancelled",
    JOB_FAILED: "job failed",
    BUSY: "worker busy",
    UNSUPPORTED: "unsupported",
}

# Methods a daemon serves. Job methods run a job; the rest answer at once.
JOB_METHODS = ("describe", "evaluate", "probe", "train")
CONTROL_METHODS = ("hello", "status", "cancel", "shutdown", "heartbeat")
METHODS = JOB_METHODS + CONTROL_METHODS

# Notification methods a daemon sends while a job runs (no id, no reply expected).
NOTIFY_PROGRESS = "progress"    # params: {"id": request id, "done": int, "total": int, "note": str}
NOTIFY_HEARTBEAT = "heartbeat"  # params: {"id": request id or None, "busy": bool}

# The most objects (maps, arrays, strings, numbers... each counts one) a frame sent to a daemon may
# decode into. A job request is a few hundred objects; a shipped task folder adds two per file.
# 100,000 empty maps decode into ~7 MB, and walking that many costs ~35 ms of the main loop.
MAX_REQUEST_OBJECTS = 100_000
# The most objects a reply frame may decode into. An evaluation's result holds about 8 objects per
# document (its per-document samples), so this is over 100,000 documents in one job (split larger
# ones with shards); 1,000,000 empty maps, the worst case, decode into ~70 MB.
MAX_REPLY_OBJECTS = 1_000_000
# What a coordinator's socket accepts (ZeroMQ MAXMSGSIZE): past MAX_MESSAGE_BYTES, so that a peer
# that sends a larger reply without checking has it refused by name; beyond this, ZeroMQ drops it.
MAX_RECEIVED_BYTES = 2 * MAX_MESSAGE_BYTES
MAX_BATCH = 64  # requests in one batch: each is answered before the main loop moves on

_unpack_limits = dict(  # the frame's own size is checked first (and by ZeroMQ's MAXMSGSIZE)
    max_str_len=MAX_MESSAGE_BYTES,
    max_bin_len=MAX_MESSAGE_BYTES,
    max_array_len=4_000_000,
    max_map_len=1_000_000,
    max_ext_len=0,  # no extension types: nothing but plain data crosses the wire
)


class ProtocolError(Exception):
    """A frame that is not a valid JSON-RPC 2.0 message. ``code`` is the JSON-RPC error code."""

    def __init__(self, code: int, message: str, id: Any = None, notification: bool = False,
                 over_limit: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id
        self.notification = notification  # a well-formed notification: JSON-RPC says never reply
        self.over_limit = over_limit  # refused for its size or object count (``unpack``), not malformed


class RemoteError(Exception):
    """An error reply received from the other side."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


def pack(message: dict) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


# For the type bytes 0xc0..0xdf: (bytes of the length field, what follows). What follows is a
# payload of that length ("bytes"), an ext payload ("ext": one type byte more), "array"/"map" items,
# or, with no length field, a fixed payload of that many bytes.
_TYPE_TAIL: list[tuple[int, Any]] = [
    (0, 0), (0, 0), (0, 0), (0, 0),               # nil, (never used), false, true
    (1, "bytes"), (2, "bytes"), (4, "bytes"),     # bin 8/16/32
    (1, "ext"), (2, "ext"), (4, "ext"),           # ext 8/16/32
    (0, 4), (0, 8),                               # float 32/64
    (0, 1), (0, 2), (0, 4), (0, 8),               # uint 8/16/32/64
    (0, 1), (0, 2), (0, 4), (0, 8),               # int 8/16/32/64
    (0, 2), (0, 3), (0, 5), (0, 9), (0, 17),      # fixext 1/2/4/8/16 (type byte + payload)
    (1, "bytes"), (2, "bytes"), (4, "bytes"),     # str 8/16/32
    (2, "array"), (4, "array"), (2, "map"), (4, "map"),
]


def count_objects(frame: bytes, limit: int) -> int:
    """How many objects ``frame`` holds, counting no further than ``limit + 1``; builds none.

    msgpack is prefix-encoded, so a walk needs no stack: ``pending`` is how many objects are still
    owed by the containers opened so far. The walk costs one step per object, at most ``limit + 1``
    steps, and skips string and binary payloads by their length. A truncated frame stops the walk
    early; msgpack itself then reports it.
    """
    pos, pending, count, end = 0, 1, 0, len(frame)
    while pending and pos < end:
        count += 1
        if count > limit:
            break
        pending -= 1
        b = frame[pos]
        if b < 0x80 or b >= 0xe0:  # positive / negative fixint
            pos += 1
        elif b < 0x90:  # fixmap
            pending += 2 * (b & 0x0f)
            pos += 1
        elif b < 0xa0:  # fixarray
            pending += b & 0x0f
            pos += 1
        elif b < 0xc0:  # fixstr
            pos += 1 + (b & 0x1f)
        else:
            width, tail = _TYPE_TAIL[b - 0xc0]
            if not width:
                pos += 1 + tail
                continue
            length = int.from_bytes(frame[pos + 1:pos + 1 + width], "big")
            pos += 1 + width
            if tail == "array":
                pending += length
            elif tail == "map":
                pending += 2 * length
            else:
                pos += length + (tail == "ext")
    return count


def unpack(frame: bytes, max_objects: int | None = None, what: str = "request") -> Any:
    """Decode one frame with bounded limits; raise ProtocolError(PARSE_ERROR) on anything malformed.

    With ``max_objects``, a frame that would decode into more objects is refused before any is
    built (a frame of N bytes holds at most N objects, so a short frame is not walked at all).
    A frame refused for its size or object count carries its ``id`` where one can be read
    (``peek_id``) and ``over_limit``.
    """
    if len(frame) > MAX_MESSAGE_BYTES:
        raise ProtocolError(PARSE_ERROR, f"frame of {len(frame)} bytes exceeds {MAX_MESSAGE_BYTES}",
                            peek_id(frame), over_limit=True)
    if max_objects is not None and len(frame) > max_objects and count_objects(frame, max_objects) > max_objects:
        raise ProtocolError(PARSE_ERROR, f"frame of {len(frame)} bytes decodes into more than {max_objects} "
                                         f"objects, the limit per {what} frame", peek_id(frame), over_limit=True)
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=True, **_unpack_limits)
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        detail = " ".join(str(exc).split())
        if isinstance(exc, msgpack.StackError):
            detail = "containers nested too deep"
        raise ProtocolError(PARSE_ERROR, f"cannot decode frame: {type(exc).__name__}"
                                         + (f": {detail}" if detail else "")) from None


def peek_id(frame: bytes) -> str | int | None:
    """The ``id`` of a message frame read without decoding the rest: the keys before it are read
    and their values skipped (``pack`` writes ``jsonrpc`` then ``id`` first, so it is the second
    key); None for a batch, a message without one, or anything unreadable."""
    # read from the frame in small pieces (not fed whole: that would copy a frame of 64 MiB)
    unpacker = msgpack.Unpacker(io.BytesIO(frame), raw=False, strict_map_key=True, read_size=4096,
                                **_unpack_limits)
    try:
        for _ in range(min(unpacker.read_map_header(), 8)):
            if unpacker.unpack() == "id":
                value = unpacker.unpack()
                return value if _valid_id(value) else None
            unpacker.skip()
    except Exception:  # not a map, truncated, over a container limit: no id to tell
        return None
    return None


_ids = itertools.count(1)


def new_id() -> int:
    return next(_ids)


def request(method: str, params: dict | None = None, id: Any = None) -> dict:
    return {"jsonrpc": JSONRPC, "id": new_id() if id is None else id, "method": method,
            "params": params or {}}


def notification(method: str, params: dict | None = None) -> dict:
    return {"jsonrpc": JSONRPC, "method": method, "params": params or {}}


def result(id: Any, value: Any) -> dict:
    return {"jsonrpc": JSONRPC, "id": id, "result": value}


def error(id: Any, code: int, message: str, data: Any = None) -> dict:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": JSONRPC, "id": id, "error": err}


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, (str, int)) and not isinstance(value, bool))


def check_request(msg: Any) -> dict:
    """Validate one decoded request or notification sent to a daemon (a frame, or a batch member).

    Returns the message dict (``id`` absent for notifications). Raises ProtocolError with the
    JSON-RPC code to reply with; its ``id`` is the request's id where one could be read.
    """
    if not isinstance(msg, dict):
        raise ProtocolError(INVALID_REQUEST, f"expected a map, got {type(msg).__name__}")
    id = msg.get("id")
    if not _valid_id(id):
        raise ProtocolError(INVALID_REQUEST, "id must be a string, an integer or null")
    if msg.get("jsonrpc") != JSONRPC:
        raise ProtocolError(INVALID_REQUEST, "missing or wrong 'jsonrpc' (expected '2.0')", id)
    method = msg.get("method")
    if not isinstance(method, str):
        raise ProtocolError(INVALID_REQUEST, "'method' must be a string", id)
    is_note = "id" not in msg
    params = msg.get("params", {})
    if not isinstance(params, dict):
        raise ProtocolError(INVALID_PARAMS, "'params' must be a map", id, is_note)
    msg["params"] = params
    if method not in METHODS:
        raise ProtocolError(METHOD_NOT_FOUND, f"no such method {method!r}; known: {', '.join(METHODS)}",
                            id, is_note)
    return msg


def parse_request(frame: bytes) -> dict:
    """Decode and validate one request or notification (not a batch); see ``check_request``."""
    return check_request(unpack(frame, MAX_REQUEST_OBJECTS))


def parse_incoming(frame: bytes) -> dict | list:
    """Decode a frame sent to a daemon: one request (a dict), or a batch.

    A batch comes back as a list with, per member, its validated message or the ProtocolError to
    answer it with (or not, for a notification). Raises ProtocolError for a frame that cannot be
    answered member by member: undecodable, over the object bound, a single invalid request, an
    empty batch or one longer than ``MAX_BATCH`` (JSON-RPC 2.0 section 7: one error, not an array).
    """
    msg = unpack(frame, MAX_REQUEST_OBJECTS)
    if not isinstance(msg, list):
        return check_request(msg)
    if not msg:
        raise ProtocolError(INVALID_REQUEST, "empty batch: a batch holds at least one request")
    if len(msg) > MAX_BATCH:
        raise ProtocolError(INVALID_REQUEST, f"batch of {len(msg)} requests exceeds the limit of {MAX_BATCH}")
    members: list = []
    for item in msg:
        try:
            members.append(check_request(item))
        except ProtocolError as exc:
            members.append(exc)
    return members


def batch_frame(frames: list[bytes]) -> bytes:
    """One msgpack array of already packed replies (a batch reply), without decoding them again."""
    return msgpack.Packer().pack_array_header(len(frames)) + b"".join(frames)


def parse_reply(frame: bytes) -> dict:
    """Decode a reply or notification sent by a daemon; raise ProtocolError if it is neither.

    Bounded by ``MAX_REPLY_OBJECTS``, above any request's bound: a job's result (per-document
    metrics) holds far more objects than a request, but not without end (a reply of 8 MiB of
    empty maps grew a coordinator by 570 MB).
    """
    return check_reply(unpack(frame, MAX_REPLY_OBJECTS, what="reply"))


def check_reply(msg: Any) -> dict:
    """Validate one decoded reply or notification (a frame, or a batch reply's member)."""
    if not isinstance(msg, dict) or msg.get("jsonrpc") != JSONRPC:
        raise ProtocolError(INVALID_REQUEST, "not a JSON-RPC 2.0 message")
    if "method" in msg:
        if not isinstance(msg.get("params", {}), dict):
            raise ProtocolError(INVALID_PARAMS, "notification params must be a map")
        return msg
    if ("result" in msg) == ("error" in msg):
        raise ProtocolError(INVALID_REQUEST, "a reply holds exactly one of 'result' and 'error'")
    if "error" in msg:
        err = msg["error"]
        if not isinstance(err, dict) or not isinstance(err.get("code"), int):
            raise ProtocolError(INVALID_REQUEST, "malformed error object")
    return msg


def parse_batch_reply(frame: bytes) -> list[dict]:
    """Decode a daemon's answer to a batch: an array of replies (or one reply for a refused batch)."""
    msg = unpack(frame)
    return [check_reply(m) for m in (msg if isinstance(msg, list) else [msg])]


def raise_for_error(reply: dict) -> Any:
    """Return a reply's result, or raise RemoteError for an error reply."""
    if "error" in reply:
        err = reply["error"]
        raise RemoteError(err["code"], str(err.get("message", "")), err.get("data"))
    return reply["result"]


# --- sockets and keys -----------------------------------------------------------------------------
# Every tcp daemon uses CURVE. `harness keys DIR` writes one folder per side, so a worker host holds
# no client secret and a coordinator's host no server secret:
#   DIR/server/  server.key, server.key_secret, authorized/*.key   copy to every worker host
#   DIR/client/  client.key, client.key_secret, server.key          the coordinator's (DIR/NAME/ likewise)
# `--keys` takes DIR (the side's folder is picked) or the side's folder itself.
SERVER_KEY = "server"
CLIENT_KEY = "client"
AUTHORIZED_DIR = "authorized"


def endpoint_parts(endpoint: str) -> tuple[str, list[tuple[str, str]]]:
    """``(transport, [(host, port), ...])`` of an endpoint; ValueError naming what is malformed.

    A tcp endpoint may be ZeroMQ's compound ``tcp://SOURCE;DESTINATION`` (a bind listens on the
    destination): every part is returned, for the caller to check each. ipc/inproc have no parts.
    """
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        raise ValueError(f"endpoint {endpoint!r}: expected tcp://HOST:PORT or ipc://PATH")
    if scheme in ("ipc", "inproc"):
        return scheme, []
    if scheme != "tcp":
        raise ValueError(f"endpoint {endpoint!r}: unsupported transport {scheme!r} (tcp, ipc)")
    parts = []
    for part in rest.split(";"):
        if part.startswith("["):
            host, bracket, port = part[1:].partition("]")
            port = port[1:] if bracket and port.startswith(":") else None
        else:
            host, colon, port = part.rpartition(":")
            port = port if colon else None
        if not host or port is None or not (port.isdigit() or port == "*"):
            raise ValueError(f"endpoint {endpoint!r}: {part!r} is not HOST:PORT")
        parts.append((host, port))
    return scheme, parts


def _resolve(host: str) -> set[str]:
    """Every address a host name resolves to (empty when it does not resolve). Tests replace it."""
    try:
        return {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError, OSError):
        return set()


def _loopback_ip(text: str) -> bool | None:
    """True/False for an IP address literal (IPv4-mapped IPv6 judged as its IPv4); None if not one."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def _host_refusal(host: str) -> str | None:
    """Why ``host`` is not loopback, or None when it is (a literal, or a name all of whose addresses are)."""
    if host == "*":
        return "'*' is every interface"
    literal = _loopback_ip(host.partition("%")[0])  # drop an IPv6 scope (%eth0)
    if literal is not None:
        return None if literal else f"{host} is not a loopback address"
    addresses = _resolve(host)
    if not addresses:
        return f"{host!r} is not an IP address and does not resolve"
    outside = sorted(a for a in addresses if not _loopback_ip(a.partition("%")[0]))
    if outside:
        return f"{host!r} resolves to {', '.join(outside)}, not loopback"
    return None


def loopback_refusal(endpoint: str) -> str | None:
    """None when everything ``endpoint`` names is loopback; else a one-line reason naming the part.

    Decided from parsed addresses (``ipaddress``), never from a string prefix: ``127.evil.example``
    is a host name, resolved, and loopback only if every address it resolves to is. ipc:// and
    inproc:// never leave the machine. ValueError for a malformed endpoint.
    """
    _, parts = endpoint_parts(endpoint)
    for i, (host, port) in enumerate(parts):
        reason = _host_refusal(host)
        if reason:
            where = f" (part {i + 1} of {len(parts)}, {host}:{port})" if len(parts) > 1 else ""
            return reason + where
    return None


def abstract_ipc(endpoint: str) -> bool:
    """True for a Linux abstract socket (``ipc://@name``): it has no file, so no permissions, and
    every local user can connect to it (or bind its name first)."""
    return endpoint.startswith("ipc://@")


def needs_keys(endpoint: str) -> bool:
    """Whether other users can reach ``endpoint``, so that it is served and reached over CURVE: tcp,
    loopback included, and abstract ipc. A file ipc socket in a private folder is ours alone."""
    return endpoint.startswith("tcp://") or abstract_ipc(endpoint)


def is_loopback(endpoint: str) -> bool:
    """True for ipc:// and inproc://, and for tcp:// whose every part is a loopback address."""
    return loopback_refusal(endpoint) is None


def owner_refusal(path, fd: int | None = None) -> str | None:
    """Why ``path`` (or the open ``fd``) is not ours, or None: owned by another user (root included),
    who can change its mode, and so what it says, whatever its mode is now."""
    import os

    uid = (os.fstat(fd) if fd is not None else os.stat(path)).st_uid
    if uid != os.geteuid():
        return f"{path}: owned by uid {uid}, not by you (uid {os.geteuid()})"
    return None


def file_refusal(path, *, secret: bool = False, ours: bool = False, fd: int | None = None) -> str | None:
    """Why ``path`` cannot be trusted, or None: writable by group or others (anyone could replace
    what it says), readable by them when it is a ``secret``, owned by another user when it must be
    ``ours``. ``fd``: judge the open file (what is read next) rather than the name."""
    import os
    import stat as st

    info = os.fstat(fd) if fd is not None else os.stat(path)
    mode = st.S_IMODE(info.st_mode)
    if ours and (reason := owner_refusal(path, fd)):
        return reason
    if mode & 0o022:
        return f"{path}: writable by group or others (mode {mode:04o}); `chmod go-w {path}`"
    if secret and mode & 0o077:
        return f"{path}: a secret readable by others (mode {mode:04o}); `chmod 600 {path}`"
    return None


def _refuse_loose(*checks) -> None:
    """Key folders and files as ssh's StrictModes judges ``~/.ssh``: each ours, writable by no one
    else, a secret readable by no one else. Another user's folder is refused even at mode 0755: its
    owner can add a key to it (and so send jobs, which run code as us)."""
    for path, secret in checks:
        reason = owner_refusal(path)
        if reason:
            raise ValueError(f"{reason}; its owner decides what it holds: make keys of your own with "
                             "`harness keys DIR`")
        reason = file_refusal(path, secret=secret)
        if reason:
            raise ValueError(reason)


def key_folder(directory, side: str):
    """The folder holding ``side``'s keys ("server" or "client"): ``DIR/side`` or ``DIR`` itself.
    ValueError for the old one-folder layout (both secrets together), naming the way out."""
    from pathlib import Path

    d = Path(directory)
    if (d / side).is_dir() and not (d / f"{side}.key_secret").exists():
        d = d / side
    if (d / f"{SERVER_KEY}.key_secret").exists() and (d / f"{CLIENT_KEY}.key_secret").exists():
        raise ValueError(f"{d}: holds both server.key_secret and client.key_secret (the old one-folder layout, "
                         f"which puts a client secret on every worker host); split it with `harness keys {d} "
                         "--split`, then copy only its server/ to worker hosts")
    return d


def _load_pair(path) -> tuple[bytes, bytes]:
    import zmq.auth

    public, secret = zmq.auth.load_certificate(path)
    if not secret:
        raise ValueError(f"{path}: no secret key in this file")
    return public, secret


def server_keys(directory) -> tuple[bytes, bytes, str]:
    """(public, secret, authorized-clients folder) for a daemon; ValueError naming what is missing,
    or what others could read or replace (the secret, the folder, ``authorized/`` and its keys)."""
    d = key_folder(directory, SERVER_KEY)
    secret_file = d / f"{SERVER_KEY}.key_secret"
    if not secret_file.is_file():
        raise ValueError(f"{secret_file}: missing (make keys with `harness keys DIR`; "
                         "daemons take DIR or DIR/server)")
    authorized = d / AUTHORIZED_DIR
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise ValueError(f"{authorized}: no client public keys (*.key) to accept")
    _refuse_loose((d, False), (secret_file, True), (authorized, False),
                  *((f, False) for f in sorted(authorized.glob("*.key"))))
    public, secret = _load_pair(secret_file)
    return public, secret, str(authorized)


def client_keys(directory) -> tuple[bytes, bytes, bytes]:
    """(public, secret, server public) for a coordinator; ValueError naming what is missing or loose."""
    import zmq.auth

    d = key_folder(directory, CLIENT_KEY)
    secret_file, server_file = d / f"{CLIENT_KEY}.key_secret", d / f"{SERVER_KEY}.key"
    for f in (secret_file, server_file):
        if not f.is_file():
            raise ValueError(f"{f}: missing (make keys with `harness keys DIR`; "
                             "coordinators take DIR or DIR/client)")
    _refuse_loose((d, False), (secret_file, True), (server_file, False))
    public, secret = _load_pair(secret_file)
    server_public, _ = zmq.auth.load_certificate(server_file)
    return public, secret, server_public


def server_public_key(directory) -> bytes:
    """The daemons' public key from either side's folder (what proves a daemon is ours)."""
    import zmq.auth

    for side in (SERVER_KEY, CLIENT_KEY):
        try:
            f = key_folder(directory, side) / f"{SERVER_KEY}.key"
        except ValueError:
            continue
        if f.is_file():
            _refuse_loose((f.parent, False), (f, False))
            return zmq.auth.load_certificate(f)[0]
    raise ValueError(f"{directory}: no server.key (make keys with `harness keys DIR`)")


def configure_socket(sock) -> None:
    """Options every socket of ours gets: bounded frames, no linger on close."""
    import zmq

    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    sock.setsockopt(zmq.LINGER, 0)
