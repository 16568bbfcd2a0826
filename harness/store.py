"""Results on disk: one JSON file per job key, written atomically.

``write_atomic`` writes every file a run puts in its run folder (results, plan, suite copy, reports,
exports) and the key and endpoints files: whole, and never through a link planted there, so a run
folder someone hands you cannot point a write at a file elsewhere.

A run folder keeps ``jobs/<key>.json`` for every job it ran or reused; successful results are
also kept in a cache shared by all runs (``$MOE_HARNESS_HOME/results``), so running the same
suite again, into the same or a new folder, skips every job whose key already has a result.
Failed results stay in the run folder only: they run again next time.

While a run has a job in flight it holds that key's lock beside the cache (``lock``), so another
run sharing the cache waits for the job and reuses its result rather than running it twice.

Records are checked against the record schema (``moe_schema.result.check_record``): an ok record
whose result is malformed is stored as failed, with the bad value's path as its error, never as a
silent "ok"; a stored ok record that does not pass (written by an older harness, edited by hand)
is not done, so its job runs again.

A record is reused only when it is the one its file is named for: its own ``key`` is the key it is
filed under, and its ``kind`` and ``variant`` are the planned job's (a record copied under another
key is not that job's result). What is not a record at all (``[1]``, ``"ok"``, torn JSON) or not
this job's is not done, with a one-line warning (``say``), never a crash.

Only results from workers that authenticated enter the shared cache (``put(..., share=False)``
keeps one in the run folder only, marked ``"authenticated": false`` by the caller, and reused from
there alone): anyone could have answered for a worker that did not.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import sys
from pathlib import Path

from moe_schema.check import SchemaError
from moe_schema.home import harness_home
from moe_schema.result import RECORD_KEYS, check_record


def write_atomic(path: Path, data: str | bytes, *, under: Path | None = None, mode: int | None = None) -> Path:
    """Write ``path`` whole, following no link: into a new hidden temporary beside it (``O_EXCL |
    O_NOFOLLOW``: never a file or link someone planted), fsynced, then renamed over ``path``, so a link
    planted at ``path`` is replaced, never written through, and a crash leaves the old file or the
    new one. The folders from ``under`` down to ``path``'s are made as needed and must not be links
    (each is opened with ``O_NOFOLLOW`` and the next one reached through it); ``under`` itself and
    the folders above it are the caller's to trust. ``mode``: the file's exact bits (``fchmod``);
    default 0666 less the umask. Every file a run writes goes through here. An OSError names
    ``path``, not its temporary."""
    path = Path(path)
    folder = _open_folder(path.parent, Path(under) if under is not None else path.parent)
    tmp = f".{path.name}.{os.urandom(6).hex()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o666 if mode is None else 0o600, dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                if mode is not None:
                    os.fchmod(f.fileno(), mode)
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=folder)
            except FileNotFoundError:  # pragma: no mutate (equivalent: gone already)
                pass
            raise
    except OSError as exc:
        if exc.filename in (None, tmp):  # name the file meant, not its temporary
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    finally:
        os.close(folder)
    return path


def _open_folder(folder: Path, under: Path) -> int:
    """An open descriptor of ``folder``, reached from ``under`` one folder at a time without
    following a link (made where missing); OSError naming the link or what is not a folder."""
    parts = folder.relative_to(under).parts
    under.mkdir(parents=True, exist_ok=True)
    fd = os.open(under, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    here = under
    try:
        for part in parts:
            here = here / part
            try:
                os.mkdir(part, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    link = stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode)
                    raise OSError(errno.ELOOP if link else errno.ENOTDIR, "a link, which a run never writes "
                                  "through" if link else "not a folder", str(here)) from None
                raise
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_json_atomic(path: Path, obj, indent: int | None = 1, under: Path | None = None) -> None:
    """``obj`` as JSON (what JSON cannot hold as text) into ``path`` by ``write_atomic``, 0600."""
    write_atomic(path, json.dumps(obj, indent=indent, default=str), under=under, mode=0o600)


def _read(path: Path) -> dict | None:
    """The record in ``path``; None when absent, torn by a crash before the atomic rename, or not a map."""
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def _judge(path: Path, key: str, kind: str | None, variant: str | None, shared: bool) -> tuple[dict | None, str | None]:
    """(the reusable result in ``path`` for ``key``, or None; why not, when that deserves a word).
    Absent, or a failure (which runs again), is (None, None)."""
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"unreadable ({type(exc).__name__})"
    if not isinstance(rec, dict):
        return None, f"not a record (a JSON {type(rec).__name__})"
    if rec.get("status") != "ok":
        return None, None
    for field, want in (("key", key), ("kind", kind), ("variant", variant)):
        if want is not None and rec.get(field) != want:
            return None, f"its {field} is {str(rec.get(field))[:80]!r}, not {want!r}: not this job's result"
    if shared and rec.get("authenticated") is False:  # never put there by us
        return None, "it came from a worker that did not authenticate"
    try:
        check_record(rec)
    except SchemaError as exc:
        return None, f"malformed: {str(exc)[:200]}"
    return rec, None


def checked(record: dict) -> dict:
    """``record``, or where it does not pass the record schema, the failed record saying why (its
    identity kept, the malformed result dropped)."""
    try:
        return check_record(record)
    except SchemaError as exc:
        own = {k: v for k, v in record.items() if k in RECORD_KEYS} if isinstance(record, dict) else {}
        return {**own, "status": "failed", "error": f"malformed result: {exc}", "params": None, "metrics": {},
                "timings": {}}


class Store:
    def __init__(self, run_dir: Path, cache_dir: Path | None = None, use_cache: bool = True,
                 say=lambda message: print(message, file=sys.stderr)):
        self.run_dir = Path(run_dir)
        self.jobs_dir = self.run_dir / "jobs"
        self.cache_dir = cache_dir if cache_dir is not None else harness_home() / "results"
        self.use_cache = use_cache
        self.say = say
        self._warned: set[Path] = set()
        self.jobs_dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.jobs_dir / f"{key}.json"

    def _usable(self, path: Path, key: str, kind: str | None, variant: str | None,
                shared: bool = False) -> dict | None:
        rec, problem = _judge(path, key, kind, variant, shared)
        if problem and path not in self._warned:
            self._warned.add(path)
            self.say(f"harness: ignoring {path}: {problem}; the job runs again")
        return rec

    def done(self, key: str, kind: str | None = None, variant: str | None = None) -> dict | None:
        """A successful result for ``key`` (of ``kind`` and ``variant`` when given) from this run or
        the shared cache (copied into the run); None, with a warning for a record that is not one."""
        rec = self._usable(self.path(key), key, kind, variant)
        if rec is not None:
            return rec
        if self.use_cache:
            rec = self._usable(self.cache_dir / f"{key}.json", key, kind, variant, shared=True)
            if rec is not None:
                write_json_atomic(self.path(key), rec, under=self.run_dir)
                return rec
        return None

    def put(self, key: str, record: dict, share: bool = True) -> dict:
        """Write ``record`` (checked: see the module doc) into the run folder, and into the shared
        cache when it is ok and ``share`` (its worker authenticated); return what was written."""
        record = checked(record)
        # the shared cache first: when the run folder's disk is full or read-only, a result that
        # reached the cache is reused by the rerun (an OSError names the file it could not write)
        if self.use_cache and share and record.get("status") == "ok":
            write_json_atomic(self.cache_dir / f"{key}.json", record)
        write_json_atomic(self.path(key), record, under=self.run_dir)
        return record

    def lock(self, key: str):
        """The cross-run lock of ``key`` (``moe_schema.locks``) beside the shared cache, not yet
        held; None without the cache (nothing is shared, so nothing to wait for)."""
        if not self.use_cache:
            return None
        from moe_schema.locks import KeyLock

        return KeyLock(self.cache_dir / ".locks" / f"{key}.lock")

    def get(self, key: str) -> dict | None:
        return _read(self.path(key))

    def records(self, keys: list[str]) -> list[dict]:
        return [r for r in (self.get(k) for k in keys) if r is not None]

    def write_results_jsonl(self, keys: list[str]) -> Path:
        return write_atomic(self.run_dir / "results.jsonl",
                            "".join(json.dumps(rec, default=str) + "\n" for rec in self.records(keys)))
