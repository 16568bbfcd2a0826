"""The wire between coordinator and worker daemons: JSON-RPC 2.0 messages, msgpack-encoded.

This is the one module both sides import, so it must never import torch, transformers or lm-eval.

A message is one ZeroMQ frame holding one msgpack map. Requests carry ``id``; notifications
(progress, heartbeats) carry none. Unpacking is bounded: a frame larger than ``MAX_MESSAGE_BYTES``
is refused by ZeroMQ (``MAXMSGSIZE``) before it reaches us, and msgpack's own limits cap every
container and string inside one frame. Nothing on the wire is ever pickled.
"""

from __future__ import annotations

import itertools
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

_unpack_limits = dict(  # the frame's own size is checked first (and by ZeroMQ's MAXMSGSIZE)
    max_str_len=MAX_MESSAGE_BYTES,
    max_bin_len=MAX_MESSAGE_BYTES,
    max_array_len=4_000_000,
    max_map_len=1_000_000,
    max_ext_len=0,  # no extension types: nothing but plain data crosses the wire
)


class ProtocolError(Exception):
    """A frame that is not a valid JSON-RPC 2.0 message. ``code`` is the JSON-RPC error code."""

    def __init__(self, code: int, message: str, id: Any = None, notification: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.id = id
        self.notification = notification  # a well-formed notification: JSON-RPC says never reply


class RemoteError(Exception):
    """An error reply received from the other side."""

    def __init__(self, code: int, message: str, data: Any = None):
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.data = data


def pack(message: dict) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def unpack(frame: bytes) -> Any:
    """Decode one frame with bounded limits; raise ProtocolError(PARSE_ERROR) on anything malformed."""
    if len(frame) > MAX_MESSAGE_BYTES:
        raise ProtocolError(PARSE_ERROR, f"frame of {len(frame)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=True, **_unpack_limits)
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        raise ProtocolError(PARSE_ERROR, f"cannot decode frame: {type(exc).__name__}: {exc}") from None


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


def parse_request(frame: bytes) -> dict:
    """Decode and validate a request or notification sent to a daemon.

    Returns the message dict (``id`` absent for notifications). Raises ProtocolError with the
    JSON-RPC code to reply with; its ``id`` is the request's id where one could be read.
    """
    msg = unpack(frame)
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


def parse_reply(frame: bytes) -> dict:
    """Decode a reply or notification sent by a daemon; raise ProtocolError if it is neither."""
    msg = unpack(frame)
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


def raise_for_error(reply: dict) -> Any:
    """Return a reply's result, or raise RemoteError for an error reply."""
    if "error" in reply:
        err = reply["error"]
        raise RemoteError(err["code"], str(err.get("message", "")), err.get("data"))
    return reply["result"]


# --- sockets and keys -----------------------------------------------------------------------------
# Off loopback, daemons use CURVE. A key folder made by `harness keys DIR` holds:
#   server.key, server.key_secret   the daemons' pair (every daemon of a deployment shares it)
#   client.key, client.key_secret   the coordinator's pair
#   authorized/*.key                client public keys a daemon accepts
SERVER_KEY = "server"
CLIENT_KEY = "client"
AUTHORIZED_DIR = "authorized"


def is_loopback(endpoint: str) -> bool:
    """True for ipc:// and inproc://, and for tcp:// on 127.0.0.0/8, ::1 or localhost."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep:
        raise ValueError(f"endpoint {endpoint!r}: expected tcp://HOST:PORT or ipc://PATH")
    if scheme in ("ipc", "inproc"):
        return True
    if scheme != "tcp":
        raise ValueError(f"endpoint {endpoint!r}: unsupported transport {scheme!r} (tcp, ipc)")
    host = rest.rsplit(":", 1)[0].strip("[]")
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _load_pair(path) -> tuple[bytes, bytes]:
    import zmq.auth

    public, secret = zmq.auth.load_certificate(path)
    if not secret:
        raise ValueError(f"{path}: no secret key in this file")
    return public, secret


def server_keys(directory) -> tuple[bytes, bytes, str]:
    """(public, secret, authorized-clients folder) for a daemon; ValueError naming what is missing."""
    from pathlib import Path

    d = Path(directory)
    secret_file = d / f"{SERVER_KEY}.key_secret"
    if not secret_file.is_file():
        raise ValueError(f"{secret_file}: missing (make keys with `harness keys {d}`)")
    authorized = d / AUTHORIZED_DIR
    if not authorized.is_dir() or not any(authorized.glob("*.key")):
        raise ValueError(f"{authorized}: no client public keys (*.key) to accept")
    public, secret = _load_pair(secret_file)
    return public, secret, str(authorized)


def client_keys(directory) -> tuple[bytes, bytes, bytes]:
    """(public, secret, server public) for a coordinator; ValueError naming what is missing."""
    import zmq.auth
    from pathlib import Path

    d = Path(directory)
    secret_file, server_file = d / f"{CLIENT_KEY}.key_secret", d / f"{SERVER_KEY}.key"
    for f in (secret_file, server_file):
        if not f.is_file():
            raise ValueError(f"{f}: missing (make keys with `harness keys {d}`)")
    public, secret = _load_pair(secret_file)
    server_public, _ = zmq.auth.load_certificate(server_file)
    return public, secret, server_public


def configure_socket(sock) -> None:
    """Options every socket of ours gets: bounded frames, no linger on close."""
    import zmq

    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    sock.setsockopt(zmq.LINGER, 0)
