"""`harness keys DIR`: make the CURVE key pairs that every tcp daemon and its clients use.

    harness keys ~/moe-keys
    harness worker --bind tcp://0.0.0.0:5555 --keys ~/moe-keys/server   # on each GPU host
    harness run suite.yaml --workers tcp://gpu1:5555 --keys ~/moe-keys/client

One folder per side, so a worker host holds no client secret (with it, anyone there could send
jobs, which run code as the daemons' user) and a coordinator's host no server secret:

- ``DIR/server/``: the daemons' pair (``server.key``, ``server.key_secret``) and ``authorized/``,
  the client public keys daemons accept. Copy it to worker hosts.
- ``DIR/client/``: the coordinator's pair (``client.key``, ``client.key_secret``) and
  ``server.key``; ``--client NAME`` makes ``DIR/NAME/`` the same way and authorizes it.

Secrets are written 0600 from their creation (``O_EXCL``, then renamed into place: never readable
by others, not even for a moment), folders we create 0700; a folder that exists keeps its mode, but
one owned by another user is refused before anything is written (its owner could add a client key
to ``authorized/``, as daemons refuse it too).
``--split`` turns a folder of the old one-folder layout into this one, in place.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from harness.store import write_atomic
from moe_schema.protocol import AUTHORIZED_DIR, CLIENT_KEY, SERVER_KEY


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="folder to write the key folders into (server/, client/, NAME/)")
    p.add_argument("--client", action="append", default=[], metavar="NAME",
                   help="also make a client folder NAME/ and authorize it")
    p.add_argument("--force", action="store_true", help="replace existing key files")
    p.add_argument("--split", action="store_true", help="move a folder of the old layout (server and client "
                   "secrets together) into server/ and client/ folders, keeping its keys")


def main(args: argparse.Namespace) -> int:
    try:
        written = split_old(args.dir) if args.split else make_keys(args.dir, clients=args.client, force=args.force)
    except (FileExistsError, ValueError) as exc:
        print(f"harness keys: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def _private_dir(d: Path) -> None:
    """Create ``d`` 0700; a folder that exists keeps its mode (it may be shared on purpose) but must
    be ours."""
    try:
        d.mkdir(mode=0o700)
    except FileExistsError:
        if not d.is_dir():
            raise ValueError(f"{d}: exists and is not a folder") from None
        _refuse_theirs(d)


def _refuse_theirs(d: Path) -> None:
    """ValueError for an existing folder another user owns (root included): keys written there are
    theirs to change."""
    from moe_schema.protocol import owner_refusal

    reason = owner_refusal(d) if d.exists() else None
    if reason:
        raise ValueError(f"{reason}: refusing to write keys into it (its owner can add or replace them); "
                         "remove it or pick another folder")


def _write(path: Path, text: str, mode: int) -> Path:
    """Write ``path`` whole with ``mode`` from the first byte: a fresh temporary (O_EXCL, so never a
    file someone else made; created 0600, fchmod before anything is written), renamed over the old one."""
    return write_atomic(path, text, mode=mode)


def _cert(public: bytes, secret: bytes | None = None) -> str:
    """A ZeroMQ certificate file's text (what ``zmq.auth.load_certificate`` reads)."""
    what = "Secret" if secret else "Public"
    text = (f"#   ****  Generated on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M:%S}Z by moe-harness  ****\n"
            f"#   ZeroMQ CURVE **{what}** Certificate\n")
    if secret:
        text += "#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n"
    text += f'\nmetadata\ncurve\n    public-key = "{public.decode()}"\n'
    return text + (f'    secret-key = "{secret.decode()}"\n' if secret else "")


def _pair(folder: Path, name: str, public: bytes, secret: bytes) -> list[Path]:
    return [_write(folder / f"{name}.key", _cert(public), 0o644),
            _write(folder / f"{name}.key_secret", _cert(public, secret), 0o600)]


def make_keys(directory: Path | str, clients=(), force: bool = False) -> list[Path]:
    """Write ``server/``, ``client/`` and a folder per named client; return the files written."""
    import zmq

    from moe_schema.protocol import key_folder

    d = Path(directory)
    names = [CLIENT_KEY, *clients]
    for name in clients:
        if not name.isidentifier() or name in (SERVER_KEY, CLIENT_KEY, AUTHORIZED_DIR):
            raise ValueError(f"--client {name!r}: use letters, digits and underscores, not server or client")
    if d.is_dir():
        key_folder(d, SERVER_KEY)  # the old one-folder layout: refused, naming --split
    for folder in (d, d / SERVER_KEY, d / SERVER_KEY / AUTHORIZED_DIR, *(d / n for n in names)):
        _refuse_theirs(folder)  # before anything is written
    targets = [d / SERVER_KEY / f"{SERVER_KEY}.key_secret", *(d / n / f"{CLIENT_KEY}.key_secret" for n in names)]
    for f in targets:
        if f.exists() and not force:
            raise FileExistsError(f"{f} exists; pass --force to replace the keys")
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    server_dir, authorized = d / SERVER_KEY, d / SERVER_KEY / AUTHORIZED_DIR
    for folder in (server_dir, authorized, *(d / n for n in names)):
        _private_dir(folder)
    server_public, server_secret = zmq.curve_keypair()
    written = _pair(server_dir, SERVER_KEY, server_public, server_secret)
    for name in names:
        public, secret = zmq.curve_keypair()
        written += _pair(d / name, CLIENT_KEY, public, secret)
        written.append(_write(d / name / f"{SERVER_KEY}.key", _cert(server_public), 0o644))
        written.append(_write(authorized / f"{name}.key", _cert(public), 0o644))
    return written


def split_old(directory: Path | str) -> list[Path]:
    """Move an old one-folder layout (``server.key*``, ``client.key*``, ``NAME.key*``, ``authorized/``)
    into ``server/``, ``client/`` and ``NAME/``; the keys stay the same, so daemons and clients
    already using them keep working once pointed at the new folders."""
    d = Path(directory)
    if not (d / f"{SERVER_KEY}.key_secret").is_file():
        raise ValueError(f"{d}: no server.key_secret here: not a key folder of the old layout")
    _refuse_theirs(d)
    server_dir = d / SERVER_KEY
    _private_dir(server_dir)
    moved = []
    for name in (f"{SERVER_KEY}.key", f"{SERVER_KEY}.key_secret", AUTHORIZED_DIR):
        if (d / name).exists():
            os.replace(d / name, server_dir / name)
            moved.append(server_dir / name)
    for secret in sorted(d.glob("*.key_secret")):
        name = secret.name[:-len(".key_secret")]
        folder = d / name
        _private_dir(folder)
        os.replace(secret, folder / f"{CLIENT_KEY}.key_secret")
        if (d / f"{name}.key").exists():
            os.replace(d / f"{name}.key", folder / f"{CLIENT_KEY}.key")
        write_atomic(folder / f"{SERVER_KEY}.key", (server_dir / f"{SERVER_KEY}.key").read_bytes(), mode=0o644)
        moved += [folder / f"{CLIENT_KEY}.key", folder / f"{CLIENT_KEY}.key_secret", folder / f"{SERVER_KEY}.key"]
    return moved
