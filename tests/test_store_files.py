"""How the store writes result files: whole or not at all, beside their target, and where.

A crash or Ctrl-C mid-write must never leave a half result that a later run reads as done: the
file is written to a temporary name in the same folder (a rename across filesystems is not atomic)
and renamed over the target. The temporary name is hidden and ends in .tmp, so nothing that lists
``jobs/*.json`` ever reads it.
"""

from __future__ import annotations

import json
import os

import pytest

from harness import store as store_mod
from harness.store import Store, write_json_atomic


def ok(key: str, **extra) -> dict:
    """The smallest ok record the store takes (moe_schema.result.check_record)."""
    return {"key": key, "kind": "train", "status": "ok", "train": {}, **extra}


def failed(key: str) -> dict:
    return {"key": key, "kind": "train", "status": "failed", "error": "boom"}


def test_a_result_is_written_to_a_hidden_temporary_beside_it_then_renamed(tmp_path, monkeypatch):
    renames = []
    real = os.replace

    def spy(src, dst, *, src_dir_fd, dst_dir_fd):  # names in one open folder: no link on the way
        folder = os.readlink(f"/proc/self/fd/{src_dir_fd}")
        renames.append((os.path.join(folder, src), os.path.join(os.readlink(f"/proc/self/fd/{dst_dir_fd}"), dst),
                        open(os.path.join(folder, src)).read()))
        real(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(store_mod.os, "replace", spy)
    target = tmp_path / "jobs" / "k.json"
    write_json_atomic(target, {"a": 1})
    (src, dst, text), = renames
    assert dst == str(target)
    assert os.path.dirname(src) == str(target.parent)
    name = os.path.basename(src)
    assert name.startswith(".k.json.") and name.endswith(".tmp")
    assert text == '{\n "a": 1\n}'  # complete before the rename, one-space indented
    assert json.loads(target.read_text()) == {"a": 1}
    write_json_atomic(target, {"a": 2}, indent=None)
    assert target.read_text() == '{"a": 2}'


def test_a_write_that_fails_leaves_the_old_result_and_no_temporary(tmp_path):
    target = tmp_path / "k.json"
    write_json_atomic(target, {"status": "ok"})

    class Unwritable:
        def __str__(self):
            raise RuntimeError("cannot show this")

    with pytest.raises(RuntimeError, match="cannot show this"):
        write_json_atomic(target, {"status": "ok", "x": Unwritable()})
    assert json.loads(target.read_text()) == {"status": "ok"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k.json"]


def test_values_json_cannot_write_are_written_as_text(tmp_path):
    from pathlib import Path

    write_json_atomic(tmp_path / "k.json", {"where": Path("/x")})
    assert json.loads((tmp_path / "k.json").read_text()) == {"where": "/x"}


def test_the_shared_cache_lives_under_the_harness_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MOE_HARNESS_HOME", str(tmp_path / "home"))
    store = Store(tmp_path / "run")
    assert store.cache_dir == tmp_path / "home" / "results"
    assert store.jobs_dir == tmp_path / "run" / "jobs" and store.jobs_dir.is_dir()
    store.put("k", ok("k"))
    assert (tmp_path / "home" / "results" / "k.json").is_file()
    assert store.path("k") == tmp_path / "run" / "jobs" / "k.json"


def test_a_run_folder_result_wins_over_the_cache_and_a_failed_one_does_not(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "k.json").write_text(json.dumps(ok("k", worker="cache")))
    store = Store(tmp_path / "run", cache_dir=cache)
    store.put("k", failed("k"))
    # the failed run-folder result does not count; the cached success does, and is copied in
    assert store.done("k") == ok("k", worker="cache")
    assert store.get("k")["worker"] == "cache"
    (cache / "j.json").write_text(json.dumps(failed("j")))
    assert store.done("j") is None and store.get("j") is None  # a cached failure is not copied
    store.put("m", ok("m", worker="run"))
    (cache / "m.json").write_text(json.dumps(ok("m", worker="cache")))
    assert store.done("m")["worker"] == "run"
    assert store.records(["m", "absent", "k"]) == [store.get("m"), store.get("k")]


def test_results_jsonl_is_written_whole_under_its_name(tmp_path):
    store = Store(tmp_path / "run", cache_dir=tmp_path / "cache")
    store.put("a", ok("a"))
    out = store.write_results_jsonl(["a"])
    assert out == tmp_path / "run" / "results.jsonl"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["jobs", "results.jsonl"]
