"""The decisions of a local task's folder (moe_schema/taskfiles.py), fast and on real files and
symlinks: what is inside the folder and what is not, what ships and what changes the digest,
which folders eviction removes and in what order, how many documents a task holds
(tests/test_task_shapes.py: the data paths on both sides; tests/test_taskfiles.py: a real run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from moe_schema import taskfiles
from moe_schema.taskfiles import (TaskFilesError, _inside, bundle, check_links, count_documents, data_paths, evict,
                                  folder_bytes, folder_digest, unpack, using, with_includes)


def _write(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, body in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(body if isinstance(body, bytes) else body.encode())


@pytest.fixture
def task(tmp_path) -> Path:
    folder = tmp_path / "mytask"
    _write(folder, {"t.yaml": "task: t\n", "data/test.jsonl": "{}\n{}\n", ".hidden": "secret",
                    "__pycache__/x.pyc": b"\0", "sub/.git/config": "x"})
    return folder


@pytest.mark.parametrize("path,inside", [("/a/b", True), ("/a/b/c/d", True), ("/a/bc", False), ("/a", False),
                                         ("/x/a/b", False)])
def test_a_path_is_inside_a_folder_only_at_or_under_it_not_beside_it_with_the_same_prefix(path, inside):
    assert _inside(Path(path), Path("/a/b")) is inside


def test_the_folder_ships_its_files_but_not_hidden_ones_or_pycache(task):
    assert sorted(bundle(task / "t.yaml")) == ["data/test.jsonl", "t.yaml"]
    assert folder_bytes(task / "t.yaml") == len("task: t\n") + len("{}\n{}\n")
    assert folder_digest(task / "t.yaml")[1] == folder_bytes(task / "t.yaml")


def test_a_symlink_inside_the_folder_ships_its_content_and_one_leading_out_is_refused(task, tmp_path):
    (task / "same.jsonl").symlink_to(task / "data" / "test.jsonl")
    (task / "alias").symlink_to(task / "data", target_is_directory=True)  # a folder inside: allowed
    (task / "root").symlink_to(task, target_is_directory=True)  # the folder itself: inside
    shipped = bundle(task / "t.yaml")
    assert shipped["same.jsonl"] == b"{}\n{}\n"
    (tmp_path / "private").write_text("key")
    (task / "data" / "leak").symlink_to(tmp_path / "private")
    with pytest.raises(TaskFilesError, match=rf"^{task}/data/leak: a symbolic link to {tmp_path}/private, outside "
                                             r"the task folder; copy the file into the folder instead$"):
        check_links(task)
    (task / "data" / "leak").unlink()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.txt").write_text("x")
    (task / "out").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # a folder out: its files too
    with pytest.raises(TaskFilesError, match="outside the task folder"):
        folder_digest(task / "t.yaml")
    (task / "out").unlink()
    (tmp_path / "mytask2").mkdir()  # a sibling whose name starts with the folder's is outside
    (tmp_path / "mytask2" / "y").write_text("y")
    (task / "y").symlink_to(tmp_path / "mytask2" / "y")
    with pytest.raises(TaskFilesError, match="outside the task folder"):
        bundle(task / "t.yaml")


def test_the_digest_changes_with_any_files_name_or_content_and_not_with_hidden_files(task):
    digest = folder_digest(task / "t.yaml")[0]
    assert len(digest) == 24 and digest == folder_digest(task / "t.yaml")[0]
    (task / ".hidden").write_text("changed")
    assert folder_digest(task / "t.yaml")[0] == digest
    (task / "data" / "test.jsonl").write_text("{}\n{}\n{}\n")
    changed = folder_digest(task / "t.yaml")[0]
    assert changed != digest
    (task / "data" / "test.jsonl").rename(task / "data" / "test2.jsonl")
    assert folder_digest(task / "t.yaml")[0] not in (digest, changed)


def test_the_digest_separates_names_from_contents():
    """``a`` holding ``bc`` is not ``ab`` holding ``c``: the name and the content's hash are framed apart."""
    one = taskfiles._digest([("a", [b"bc"])])
    assert one != taskfiles._digest([("ab", [b"c"])])
    assert one == taskfiles._digest([("a", [b"b", b"c"])])  # chunks are one content
    assert taskfiles._digest([("a", [b"x"]), ("b", [b"y"])]) != taskfiles._digest([("a", [b"y"]), ("b", [b"x"])])


def test_a_large_file_is_digested_in_chunks_as_one_content(task, monkeypatch):
    (task / "data" / "big.bin").write_bytes(bytes(range(256)) * 10)
    whole = folder_digest(task / "t.yaml")[0]
    from moe_schema import hashing

    monkeypatch.setattr(hashing, "_CHUNK", 7)  # files are read in pieces by moe_schema.hashing.file_chunks
    assert list(taskfiles._chunks(task / "data" / "big.bin"))[0] == bytes(range(7))
    assert folder_digest(task / "t.yaml")[0] == whole
    assert unpack(bundle(task / "t.yaml"), whole, "t.yaml", task.parent / "home").is_file()


def test_a_folder_of_exactly_the_ship_limit_ships_and_one_byte_more_does_not(task, monkeypatch):
    limit = folder_bytes(task / "t.yaml")
    monkeypatch.setattr(taskfiles, "SHIP_LIMIT", limit)
    assert bundle(task / "t.yaml") is not None
    monkeypatch.setattr(taskfiles, "SHIP_LIMIT", limit - 1)
    assert bundle(task / "t.yaml") is None
    assert taskfiles.SHIP_LIMIT != 16 << 20 and (16 << 20) == 16 * 1024 * 1024


def test_the_ship_limit_is_16_mib():
    assert taskfiles.SHIP_LIMIT == 16 * 1024 * 1024 and taskfiles.KEEP_AGE_S == 7 * 24 * 3600


@pytest.mark.parametrize("name", ["..", "a/../../b", "a/..", "/abs", "a\\b", ""])
def test_a_shipped_name_that_is_not_a_plain_relative_path_is_refused_before_anything_is_written(tmp_path, name):
    files = {"t.yaml": b"task: t\n", name: b"x"}
    digest = taskfiles._digest((n, [files[n]]) for n in sorted(files))
    with pytest.raises(TaskFilesError, match=r"is not a plain relative path inside the task folder$"):
        unpack(files, digest, "t.yaml", tmp_path / "home")
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("files", [{"t.yaml": "text"}, {1: b"x"}, [("t.yaml", b"x")]])
def test_shipped_files_that_are_not_names_to_bytes_are_refused(tmp_path, files):
    with pytest.raises(TaskFilesError, match="^expected a map of relative file names to bytes$"):
        unpack(files, "d", "t.yaml", tmp_path)


def test_a_second_unpack_reuses_the_folder_and_marks_it_used_now(task, tmp_path):
    files, digest = bundle(task / "t.yaml"), folder_digest(task / "t.yaml")[0]
    path = unpack(files, digest, "t.yaml", tmp_path / "home")
    assert path == tmp_path / "home" / "tasks" / digest / "t.yaml" and path.read_text() == "task: t\n"
    assert sorted(p.name for p in (tmp_path / "home" / "tasks").iterdir()) == [digest]  # no temporary left
    os.utime(path.parent, (1, 1))
    (path.parent / "data" / "test.jsonl").write_text("edited")  # a second unpack does not write again
    assert unpack(files, digest, "t.yaml", tmp_path / "home") == path
    assert path.parent.stat().st_mtime > 1e9 and (path.parent / "data" / "test.jsonl").read_text() == "edited"


def test_a_folder_another_job_unpacked_first_is_used_and_the_temporary_copy_removed(task, tmp_path, monkeypatch):
    """Two jobs of one task on one home: the second's rename finds the first's folder in place."""
    files, digest = bundle(task / "t.yaml"), folder_digest(task / "t.yaml")[0]
    rename = os.rename

    def first_job_wins(src, dst):
        monkeypatch.setattr(taskfiles.os, "rename", rename)
        unpack(files, digest, "t.yaml", tmp_path / "home")  # the other job, between our check and our rename
        return rename(src, dst)  # now fails: the folder is there and not empty

    monkeypatch.setattr(taskfiles.os, "rename", first_job_wins)
    path = unpack(files, digest, "t.yaml", tmp_path / "home")
    assert path == tmp_path / "home" / "tasks" / digest / "t.yaml" and path.is_file()
    assert sorted(p.name for p in path.parent.parent.iterdir() if p.name != ".locks") == [digest]  # no .tmp-* left


def test_a_failed_rename_with_no_folder_in_place_is_raised_and_leaves_no_temporary(task, tmp_path, monkeypatch):
    files, digest = bundle(task / "t.yaml"), folder_digest(task / "t.yaml")[0]

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(taskfiles.os, "rename", full_disk)
    with pytest.raises(OSError, match="No space left"):
        unpack(files, digest, "t.yaml", tmp_path / "home")
    assert list((tmp_path / "home" / "tasks").iterdir()) == []


def test_using_holds_the_folder_in_use_and_refuses_a_digest_that_is_not_a_name(task, tmp_path):
    from moe_schema.locks import KeyLock

    files, digest = bundle(task / "t.yaml"), folder_digest(task / "t.yaml")[0]
    lock = tmp_path / "home" / "tasks" / ".locks" / f"{digest}.lock"
    with using(files, digest, "t.yaml", tmp_path / "home") as path:
        assert path.is_file() and not KeyLock(lock).try_acquire()  # an evictor is kept out
        other_job = KeyLock(lock, shared=True)
        assert other_job.try_acquire()  # another job may use it too
        other_job.release()
    evictor = KeyLock(lock)
    assert evictor.try_acquire()
    evictor.release()
    for bad in ("../x", "a/b", "", 7, None):
        with pytest.raises(TaskFilesError, match=r"is not a hex digest$"):
            with using(files, bad, "t.yaml", tmp_path / "home"):
                pass


def _folders(root: Path, ages_days: dict[str, float], now: float, size: int = 1 << 20) -> None:
    for name, age in ages_days.items():
        _write(root / name, {"t.yaml": b"x" * size})
        os.utime(root / name, (now - age * 86400, now - age * 86400))


def test_eviction_removes_folders_unused_for_more_than_a_week_and_keeps_one_used_exactly_a_week_ago(tmp_path):
    now = 2_000_000_000.0
    _folders(tmp_path, {"old": 7 + 1e-6, "week": 7, "new": 1}, now)
    said = []
    assert evict(tmp_path, keep_bytes=1 << 40, now=now, say=said.append) == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".locks", "new", "week"]
    assert said == ["evicted task folder old (1.0 MiB, unused for 7.0 days)"]


def test_eviction_past_the_size_kept_removes_the_least_recently_used_first_down_to_the_limit(tmp_path):
    now = 2_000_000_000.0
    _folders(tmp_path, {"c": 3, "a": 1, "b": 2, "d": 4}, now)
    said = []
    # 4 MiB held, 2 MiB kept: the two least recently used go; exactly at the limit nothing more does
    assert evict(tmp_path, keep_bytes=2 << 20, now=now, say=said.append) == ["d", "c"]
    assert said[0] == "evicted task folder d (1.0 MiB, over 2 MiB kept)"
    assert evict(tmp_path, keep_bytes=2 << 20, now=now, say=said.append) == []
    assert evict(tmp_path, keep_bytes=(2 << 20) - 1, now=now, say=said.append) == ["b"]


def test_eviction_spares_the_folder_in_use_and_a_folder_another_job_holds(tmp_path):
    from moe_schema.locks import KeyLock

    now = 2_000_000_000.0
    _folders(tmp_path, {"old1": 30, "old2": 20, "old3": 10, ".tmp-x": 40}, now)
    other = KeyLock(tmp_path / ".locks" / "old2.lock", shared=True)
    assert other.try_acquire()
    gone = evict(tmp_path, keep=tmp_path / "old1", keep_bytes=0, now=now, say=lambda line: None)
    assert gone == ["old3"] and sorted(p.name for p in tmp_path.iterdir()) == [".locks", ".tmp-x", "old1", "old2"]
    other.release()
    assert evict(tmp_path, keep=tmp_path / "old1", keep_bytes=0, now=now, say=lambda line: None) == ["old2"]
    assert evict(tmp_path / "nothing-here", now=now) == []


def test_a_folder_another_worker_evicts_meanwhile_is_passed_over_and_the_next_is_still_evicted(tmp_path):
    import shutil

    now = 2_000_000_000.0
    _folders(tmp_path, {"old1": 30, "old2": 20, "old3": 10}, now)
    said = []

    def say(line):  # while this worker says its first removal, another removes old2
        said.append(line)
        shutil.rmtree(tmp_path / "old2", ignore_errors=True)

    assert evict(tmp_path, keep_bytes=0, now=now, say=say) == ["old1", "old3"] and len(said) == 2


def test_the_reason_given_is_age_only_past_the_age_kept_and_the_days_are_rounded_to_a_tenth(tmp_path):
    now = 2_000_000_000.0
    _folders(tmp_path, {"week": 7, "older": 10.05 + 1e-5}, now)
    said = []
    evict(tmp_path, keep_bytes=0, now=now, say=said.append)
    assert said == ["evicted task folder older (1.0 MiB, unused for 10.1 days)",
                    "evicted task folder week (1.0 MiB, over 0 MiB kept)"]


def test_a_folders_size_counts_its_files_not_what_its_symlinks_point_at(tmp_path):
    _write(tmp_path / "f", {"a": b"x" * 10, "sub/b": b"y" * 5})
    (tmp_path / "big").write_bytes(b"z" * 1000)
    (tmp_path / "f" / "link").symlink_to(tmp_path / "big")
    assert taskfiles._bytes(tmp_path / "f") == 15
    assert taskfiles._bytes(tmp_path / "gone") == 0


def test_eviction_says_each_removal_on_stderr_by_default(tmp_path, capsys):
    now = 2_000_000_000.0
    _folders(tmp_path, {"old": 8}, now, size=3 << 19)
    assert evict(tmp_path, now=now) == ["old"]
    assert capsys.readouterr().err == "evicted task folder old (1.5 MiB, unused for 8.0 days)\n"


def test_unpacking_a_new_folder_evicts_old_ones_but_never_itself(task, tmp_path, monkeypatch):
    monkeypatch.setattr(taskfiles, "KEEP_BYTES", 0)
    root = tmp_path / "home" / "tasks"
    _folders(root, {"old": 1}, __import__("time").time())
    path = unpack(bundle(task / "t.yaml"), folder_digest(task / "t.yaml")[0], "t.yaml", tmp_path / "home")
    assert path.is_file() and not (root / "old").exists()


def test_data_paths_refuse_a_symlink_in_the_folder_that_leads_out_unless_the_suite_opts_in(task, tmp_path):
    (tmp_path / "private.jsonl").write_text("{}\n")
    (task / "data" / "link.jsonl").symlink_to(tmp_path / "private.jsonl")
    config = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": "data/link.jsonl"}}}
    with pytest.raises(TaskFilesError, match=r"^task\.dataset_kwargs\.data_files\.test: 'data/link\.jsonl' is outside"):
        data_paths(config, task)
    assert data_paths(config, task, outside_ok=True)["dataset_kwargs"]["data_files"]["test"] == \
        str(task / "data" / "link.jsonl")
    inside = {"dataset_path": "json", "dataset_kwargs": {"data_files": "data/test.jsonl"}}
    assert data_paths(inside, task)["dataset_kwargs"]["data_files"] == str(task / "data" / "test.jsonl")


def test_data_paths_leave_urls_hub_datasets_and_other_keys_as_written(task):
    config = {"dataset_path": "org/name", "dataset_kwargs": {"data_files": "../../anything.jsonl"}, "x": 1}
    assert data_paths(config, task) == config  # names inside the hub dataset
    url = {"dataset_path": "https://h/x", "dataset_kwargs": {"data_dir": "https://h/d", "data_files": 7}}
    assert data_paths(url, task) == url
    assert data_paths({"task": "t"}, task) == {"task": "t"}
    assert data_paths({"dataset_path": "json", "dataset_kwargs": "odd", "custom_dataset": 1}, task)["dataset_kwargs"] == "odd"


def test_a_dataset_path_naming_a_folder_of_the_task_is_local_and_its_files_stay_relative(task):
    out = data_paths({"dataset_path": "data", "dataset_kwargs": {"data_files": ["test.jsonl"]}}, task)
    assert out == {"dataset_path": str(task / "data"), "dataset_kwargs": {"data_files": ["test.jsonl"]}}
    with pytest.raises(TaskFilesError, match=r"data_files\[0\]: '\.\./\.\./x' is outside"):
        data_paths({"dataset_path": "data", "dataset_kwargs": {"data_files": ["../../x"]}}, task)
    out = data_paths({"dataset_path": "./t.yaml"}, task)  # a file, not a folder: nothing is read inside it
    assert out["dataset_path"] == str(task / "t.yaml")
    with pytest.raises(TaskFilesError, match=r"^task\.dataset_path: '~/x' is outside the task folder"):
        data_paths({"dataset_path": "~/x"}, task)


def test_data_files_relative_to_a_data_dir_stay_relative_and_may_not_climb_out(task):
    out = data_paths({"dataset_path": "json", "dataset_kwargs": {"data_dir": "data",
                                                                "data_files": {"test": "test.jsonl"}}}, task)
    assert out["dataset_kwargs"] == {"data_dir": str(task / "data"), "data_files": {"test": "test.jsonl"}}
    with pytest.raises(TaskFilesError, match=r"data_files\.test: '\.\./\.\./y' is outside"):
        data_paths({"dataset_path": "json", "dataset_kwargs": {"data_dir": "data", "data_files": {"test": "../../y"}}},
                   task)
    with pytest.raises(TaskFilesError, match=r"^x\.dataset_kwargs\.data_dir: '\.\./' is outside"):
        data_paths({"dataset_path": "json", "dataset_kwargs": {"data_dir": "../"}}, task, where="x")


def test_includes_inside_the_folder_merge_and_one_outside_or_missing_or_cyclic_is_refused_at_its_place(task, tmp_path):
    import yaml

    load = lambda p: yaml.safe_load(p.read_text())  # noqa: E731
    _write(task, {"base.yaml": "a: 1\nb: 1\ntask_list: [x]\n", "sub/mid.yaml": "include: ../base.yaml\nb: 2\n",
                  "one.yaml": "include: sub/mid.yaml\nc: 3\nb: 9\n"})
    assert with_includes(task / "one.yaml", load) == {"a": 1, "b": 9, "c": 3}
    assert with_includes(task / "sub" / "mid.yaml", load, root=task) == {"a": 1, "b": 2}
    with pytest.raises(TaskFilesError, match=r"^task\.include: '\.\./base\.yaml' is outside the task folder"):
        with_includes(task / "sub" / "mid.yaml", load)  # root: the YAML's own folder
    (tmp_path / "out.yaml").write_text("a: 0\n")
    (task / "link.yaml").symlink_to(tmp_path / "out.yaml")
    cases = {"include: [base.yaml, ../out.yaml]": r"^t\.include\[1\]: '\.\./out\.yaml' is outside the task folder",
             "include: link.yaml": r"^t\.include: 'link\.yaml' is outside the task folder",
             "include: [nothere.yaml]": r"^t\.include\[0\]: no such file: ",
             "include: [7]": r"^t\.include\[0\]: expected the path of a YAML file, got 7$",
             "include: ''": r"^t\.include: expected the path of a YAML file, got ''$",
             "include: two.yaml": r"^t\.include: 'two\.yaml' includes itself again \(a cycle\)$",
             "[1, 2]": r"^t: .*two\.yaml is not a mapping of task keys$"}
    for body, refusal in cases.items():
        (task / "two.yaml").write_text(body + "\n")
        with pytest.raises(TaskFilesError, match=refusal):
            with_includes(task / "two.yaml", load, where="t")


def _counted(task: Path, files, **config) -> int | None:
    return count_documents({"dataset_path": "json", "dataset_kwargs": {"data_files": files}, **config}, task)


def test_documents_are_counted_by_lines_of_the_evaluated_split_less_a_csvs_header(task):
    _write(task, {"a.jsonl": "{}\n" * 5, "b.csv": "h\n1\n2\n", "c.txt": "x\ny\n", "d.json": "{}\n{}\n",
                  "e.parquet": b"PAR1", "arr.json": "[{}, {}]\n", "h.csv": "h\n"})
    assert _counted(task, {"test": "a.jsonl", "validation": "c.txt"}, test_split="test") == 5
    assert _counted(task, {"test": "a.jsonl", "validation": "c.txt"}, validation_split="validation") == 2
    assert _counted(task, {"test": "a.jsonl", "validation": "c.txt"}, test_split="test",
                    validation_split="validation") == 5
    assert _counted(task, ["a.jsonl", "b.csv", "d.json"]) == 5 + 2 + 2
    assert _counted(task, "b.csv") == 2 and _counted(task, "h.csv") == 0
    for files in ("e.parquet", "arr.json", "missing.jsonl", ["a.jsonl", 7], [], {"train": "a.jsonl"}):
        assert _counted(task, files, test_split="test") is None, files
    assert count_documents({"dataset_path": "json"}, task) is None  # a builder with no files: refused
    assert count_documents({"dataset_path": "org/x"}, task) is None
    # a local dataset folder naming no files, odd files or odd kwargs: not told, never an exception
    for kwargs in ({"data_files": []}, {"data_files": 7}, {"data_files": None}, "odd"):
        assert count_documents({"dataset_path": "data", "dataset_kwargs": kwargs}, task) is None, kwargs
    assert count_documents({"dataset_path": "org/x"}, task) is None


def test_documents_outside_the_folder_are_counted_too(task, tmp_path):
    (tmp_path / "o.jsonl").write_text("{}\n{}\n{}\n")
    assert _counted(task, str(tmp_path / "o.jsonl")) == 3
    assert _counted(task, "https://h/x.jsonl") is None


def test_documents_are_counted_in_chunks(task, monkeypatch):
    _write(task, {"a.jsonl": "{}\n" * 9})
    monkeypatch.setattr(taskfiles, "_CHUNK", 4)
    assert _counted(task, "a.jsonl") == 9


def test_where_a_dataset_path_is_local_the_task_folder_is_the_base_and_where_it_is_not_nothing_changes(task):
    resolved = lambda dpath, **kw: data_paths({"dataset_path": dpath, **kw}, task).get("dataset_path")  # noqa: E731
    assert resolved("./not_yet") == str(task / "not_yet")  # local by its prefix, though missing (yet)
    assert resolved("data") == str(task / "data")  # local because the folder holds it
    assert resolved("") == "" and resolved("gsm8k") == "gsm8k" and resolved("org/name") == "org/name"
    for outside in ("/elsewhere/data", "../sibling", "~/x"):
        with pytest.raises(TaskFilesError, match=r"^task\.dataset_path: .* is outside the task folder"):
            resolved(outside)


def test_files_relative_to_a_local_dataset_folder_are_checked_inside_that_folder(task):
    _write(task, {"data/sub/a.jsonl": "{}\n", "top.jsonl": "{}\n"})
    out = data_paths({"dataset_path": "data", "dataset_kwargs": {"data_dir": "sub", "data_files": ["../top.jsonl"]}},
                     task)
    # data_dir inside the dataset folder; a file relative to it may step up within the task folder
    assert out["dataset_kwargs"] == {"data_dir": str(task / "data" / "sub"), "data_files": ["../top.jsonl"]}
    out = data_paths({"dataset_path": "data", "dataset_kwargs": {"data_files": ["../top.jsonl"]}}, task)
    assert out["dataset_kwargs"]["data_files"] == ["../top.jsonl"]


def test_a_dataset_path_naming_a_file_is_no_base_for_its_data_files(task):
    out = data_paths({"dataset_path": "./t.yaml", "dataset_kwargs": {"data_files": "data/test.jsonl"}}, task)
    assert out["dataset_kwargs"]["data_files"] == str(task / "data" / "test.jsonl")


def test_a_url_dataset_path_still_has_its_local_files_resolved(task):
    out = data_paths({"dataset_path": "https://h/x", "dataset_kwargs": {"data_files": "data/test.jsonl"}}, task)
    assert out["dataset_kwargs"]["data_files"] == str(task / "data" / "test.jsonl")


def test_a_yaml_outside_the_confining_root_is_refused_as_outside_not_with_a_traceback(task, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(TaskFilesError, match=r"'a\.jsonl' is outside the task folder"):
        data_paths({"dataset_path": "json", "dataset_kwargs": {"data_files": "a.jsonl"}}, other, root=task)


def test_includes_nested_name_their_whole_path_and_a_cycle_two_files_long_is_refused(task):
    import yaml

    load = lambda p: yaml.safe_load(p.read_text())  # noqa: E731
    _write(task, {"a.yaml": "include: b.yaml\n", "b.yaml": "include: [x.yaml, a.yaml]\n", "x.yaml": "k: 1\n"})
    with pytest.raises(TaskFilesError, match=r"^t\.include\.include\[1\]: 'a\.yaml' includes itself again"):
        with_includes(task / "a.yaml", load, where="t")
    _write(task, {"b.yaml": "include: [x.yaml, missing.yaml]\n"})
    with pytest.raises(TaskFilesError, match=r"^task\.include\.include\[1\]: no such file: "):
        with_includes(task / "a.yaml", load)


def test_a_yml_task_file_ships_its_includes_made_portable_too(task):
    _write(task, {"_base.yaml": "x: 1\n", "t.yml": f"include: {task}/_base.yaml\n"})
    assert bundle(task / "t.yaml")["t.yml"] == b'include: "_base.yaml"\n'


def test_only_include_is_rewritten_wherever_it_stands_and_whatever_precedes_it(task, tmp_path):
    from moe_schema.taskfiles import portable_includes

    (tmp_path / "out.yaml").write_text("x: 1\n")
    (task / "leak.yaml").symlink_to(tmp_path / "out.yaml")
    text = (f"task: {task}/_base.yaml\ndoc: 1\ninclude: [{{a: 1}}, {task}/leak.yaml, {task}/_base.yaml]\n")
    assert portable_includes(text.encode(), task, task) == \
        f'task: {task}/_base.yaml\ndoc: 1\ninclude: [{{a: 1}}, {task}/leak.yaml, "_base.yaml"]\n'.encode()
    for plain in (b"include: ''\n", b"include: []\n", b"include: {a: b}\n"):
        assert portable_includes(plain, task, task) == plain
