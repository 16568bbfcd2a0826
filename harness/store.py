"""Results on disk: one JSON file per job key, written atomically.

A run folder keeps ``jobs/<key>.json`` for every job it ran or reused; successful results are
also kept in a cache shared by all runs (``$MOE_HARNESS_HOME/results``), so running the same
suite again, into the same or a new folder, skips every job whose key already has a result.
Failed results stay in the run folder only: they run again next time.

Records are checked against the record schema (``moe_schema.result.check_record``): an ok record
whose result is malformed is stored as failed, with the bad value's path as its error, never as a
silent "ok"; a stored ok record that does not pass (written by an older harness, edited by hand)
is not done, so its job runs again.
"""

from __future__ import annotations

import json
import os
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
    except BaseException:
        Path(tmp).unlink(missing_ok=True)  # pragma: no mutate (equivalent: the temporary exists until os.replace, the last step)
        raise


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # absent, or torn by a crash before the atomic rename: treat as missing


def _ok(rec: dict | None) -> bool:
    """A successful record that passes the record schema."""
    if not rec or rec.get("status") != "ok":
        return False
    try:
        check_record(rec)
    except SchemaError:
        return False
    return True


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
    def __init__(self, run_dir: Path, cache_dir: Path | None = None, use_cache: bool = True):
        self.run_dir = Path(run_dir)
        self.jobs_dir = self.run_dir / "jobs"
        self.cache_dir = cache_dir if cache_dir is not None else harness_home() / "results"
        self.use_cache = use_cache
        self.jobs_dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.jobs_dir / f"{key}.json"

    def done(self, key: str) -> dict | None:
        """A successful result for ``key`` from this run or the shared cache (copied into the run)."""
        rec = _read(self.path(key))
        if _ok(rec):
            return rec
        if self.use_cache:
            rec = _read(self.cache_dir / f"{key}.json")
            if _ok(rec):
                write_json_atomic(self.path(key), rec)
                return rec
        return None

    def put(self, key: str, record: dict) -> dict:
        """Write ``record`` (checked: see the module doc); return what was written."""
        record = checked(record)
        write_json_atomic(self.path(key), record)
        if self.use_cache and record.get("status") == "ok":
            write_json_atomic(self.cache_dir / f"{key}.json", record)
        return record

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
