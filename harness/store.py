"""Results on disk: one JSON file per job key, written atomically.

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

import json
import os
import sys
import tempfile
from pathlib import Path

from moe_schema.check import SchemaError
from moe_schema.home import harness_home
from moe_schema.result import RECORD_KEYS, check_record


def write_json_atomic(path: Path, obj, indent: int | None = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=indent, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)  # pragma: no mutate (as below)
        if exc.filename is None or exc.filename == tmp:  # name the file meant, not its temporary
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # pragma: no mutate (equivalent: the temporary exists until os.replace, the last step)
        raise


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
                write_json_atomic(self.path(key), rec)
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
        write_json_atomic(self.path(key), record)
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
        out = self.run_dir / "results.jsonl"
        tmp = out.with_suffix(".jsonl.tmp")  # pragma: no mutate (equivalent: any name beside it, renamed away)
        with tmp.open("w") as f:
            for rec in self.records(keys):
                f.write(json.dumps(rec, default=str) + "\n")
        os.replace(tmp, out)
        return out
