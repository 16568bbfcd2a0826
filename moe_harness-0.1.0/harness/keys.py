"""`harness keys DIR`: make the CURVE key pairs that secure workers off loopback.

    harness keys ~/moe-keys
    harness worker --bind tcp://0.0.0.0:5555 --keys ~/moe-keys     # on each GPU host
    harness run suite.yaml --workers tcp://gpu1:5555 --keys ~/moe-keys

The folder holds the daemons' pair (``server.key``, ``server.key_secret``), the coordinator's
pair (``client.key``, ``client.key_secret``) and ``authorized/``, the client public keys daemons
accept. Secret files are mode 0600, the folder 0700. Copy the folder to the hosts that need it;
add a client with ``--client NAME`` (its public key goes into ``authorized/``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from moe_schema.protocol import AUTHORIZED_DIR, CLIENT_KEY, SERVER_KEY


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, help="folder to write the key files into")
    p.add_argument("--client", action="append", default=[], metavar="NAME",
                   help="also make a client pair NAME.key / NAME.key_secret and authorize it")
    p.add_argument("--force", action="store_true", help="replace existing key files")


def main(args: argparse.Namespace) -> int:
    try:
        written = make_keys(args.dir, clients=args.client, force=args.force)
    except (FileExistsError, ValueError) as exc:
        print(f"harness keys: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def make_keys(directory: Path | str, clients=(), force: bool = False) -> list[Path]:
    """Write the server pair, the default client pair and any named client pairs; return the files."""
    import zmq.auth

    d = Path(directory)
    names = [SERVER_KEY, CLIENT_KEY, *clients]
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"--client {name!r}: use letters, digits and underscores")
        for f in (d / f"{name}.key", d / f"{name}.key_secret"):
            if f.exists() and not force:
                raise FileExistsError(f"{f} exists; pass --force to replace the keys")
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o700)
    authorized = d / AUTHORIZED_DIR
    authorized.mkdir(exist_ok=True)
    written = []
    for name in names:
        old_umask = os.umask(0o077)  # the secret is never readable by others, not even for a moment
        try:
            public, secret = zmq.auth.create_certificates(d, name)
        finally:
            os.umask(old_umask)
        os.chmod(secret, 0o600)
        os.chmod(public, 0o644)
        written += [Path(public), Path(secret)]
        if name != SERVER_KEY:
            shutil.copyfile(public, authorized / f"{name}.key")
    return written
