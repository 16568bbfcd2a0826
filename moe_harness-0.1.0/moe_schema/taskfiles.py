"""A local lm-eval task's folder, shipped with its jobs: workers on other hosts need no shared filesystem.

lm-eval indexes a local task from its YAML's folder (the other YAMLs, ``!function`` helpers, data
files beside them), so the unit is that folder: every regular file under it except hidden ones and
``__pycache__``. The harness reads it once per run. Its digest (sha256 over the relative paths and
contents) goes into the job spec, so a job's key changes when any file of its task changes; the
files themselves travel only in the message to the worker (not in plan.json or the results), for a
folder of at most ``SHIP_LIMIT`` bytes. A worker writes them once into
``$MOE_HARNESS_HOME/tasks/<digest>/`` (``unpack``: checked against the digest, names confined to the
folder) and evaluates from there. A larger folder is not shipped: the workers read it at its path.

Torch-free: the harness (``bundle``) and the workers (``unpack``) both use it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath

from moe_schema.home import harness_home

SHIP_LIMIT = 16 * 1024 * 1024
_CHUNK = 1 << 20


class TaskFilesError(ValueError):
    """A shipped task folder that cannot be used (bad names, digest mismatch); one line."""


def _listing(folder: Path) -> list[tuple[str, Path]]:
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            out.append((rel.as_posix(), p))
    return sorted(out)  # by name, as ``unpack`` orders them


def _digest(entries) -> str:
    """sha256 over ``(relative name, sha256 of content)`` pairs in name order; entries: (name, chunks)."""
    total = hashlib.sha256()
    for name, chunks in entries:
        h = hashlib.sha256()
        for chunk in chunks:
            h.update(chunk)
        total.update(name.encode() + b"\0" + h.hexdigest().encode() + b"\n")
    return total.hexdigest()[:24]


def _chunks(path: Path):
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def folder_digest(yaml_path: str | Path) -> tuple[str, int]:
    """``(digest, total bytes)`` of the folder holding ``yaml_path``, read in chunks."""
    listing = _listing(Path(yaml_path).parent)
    return _digest((name, _chunks(p)) for name, p in listing), sum(p.stat().st_size for _, p in listing)


def folder_bytes(yaml_path: str | Path) -> int:
    """What the folder holding ``yaml_path`` would ship, in bytes (its files' sizes; nothing read)."""
    return sum(p.stat().st_size for _, p in _listing(Path(yaml_path).parent))


def bundle(yaml_path: str | Path) -> dict[str, bytes] | None:
    """The folder's files ``{relative name: bytes}`` to ship, or None when it is over ``SHIP_LIMIT``."""
    listing = _listing(Path(yaml_path).parent)
    if sum(p.stat().st_size for _, p in listing) > SHIP_LIMIT:
        return None
    return {name: p.read_bytes() for name, p in listing}


def unpack(files: dict, digest: str, yaml_name: str, home: str | Path | None = None) -> Path:
    """Write shipped ``files`` once under ``<home>/tasks/<digest>/``; return the task YAML's path there."""
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, bytes) for k, v in files.items()):
        raise TaskFilesError("expected a map of relative file names to bytes")
    for name in files:
        parts = PurePosixPath(name).parts
        if not name or name.startswith("/") or "\\" in name or any(p in ("..", ".", "") for p in parts):
            raise TaskFilesError(f"file name {name!r} is not a plain relative path inside the task folder")
    if yaml_name not in files:
        raise TaskFilesError(f"the task file {yaml_name!r} is not among the {len(files)} files shipped")
    actual = _digest((name, [files[name]]) for name in sorted(files))
    if actual != digest:
        raise TaskFilesError(f"the files shipped do not match their digest ({actual} != {digest})")
    root = harness_home(home) / "tasks"
    final = root / digest
    if not (final / yaml_name).is_file():
        tmp = root / f".tmp-{digest}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            for name, data in files.items():
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            try:
                os.rename(tmp, final)
            except OSError:  # another job unpacked the same folder first: theirs is identical
                if not (final / yaml_name).is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final / yaml_name
