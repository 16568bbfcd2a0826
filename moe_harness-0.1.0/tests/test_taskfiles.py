"""Local task folders shipped with their jobs (moe_schema/taskfiles.py): digests in the job
keys, the files on the wire and unpacked on a worker that cannot see the coordinator's path, and
the refusals (unsafe names, a digest that does not match, a folder too big to ship and not shared)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from harness import plan as planner
from harness.run import wire_spec
from harness.suite import load as load_suite
from moe_schema import taskfiles
from moe_schema.taskfiles import TaskFilesError, bundle, folder_digest, unpack

REPO = Path(__file__).resolve().parent.parent
TASKS = REPO / "suites" / "tasks"


@pytest.fixture
def task_copy(tmp_path) -> Path:
    """A private copy of suites/tasks (yaml, helper module, data)."""
    folder = tmp_path / "tasks"
    shutil.copytree(TASKS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _suite(tmp_path: Path, task_yaml: Path) -> Path:
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"""
name: shipped
models:
  - name: tiny
    config: {{model_type: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
             num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128}}
tasks:
  - {{path: {task_yaml}, limit: 4, num_fewshot: 0}}
probes:
  - {{name: memory, batch_sizes: [1], context_lengths: [8]}}
""")
    return suite


def test_editing_a_task_file_changes_the_keys_of_its_jobs_only(tmp_path, task_copy):
    suite = _suite(tmp_path, task_copy / "smoke_mc.yaml")
    _, before = planner.expand(load_suite(suite))
    (task_copy / "data" / "smoke_mc_test.jsonl").write_text(
        (task_copy / "data" / "smoke_mc_test.jsonl").read_text() + "\n")
    _, after = planner.expand(load_suite(suite))
    changed = {a.kind for a, b in zip(before, after) if a.key != b.key}
    assert changed == {"evaluate"}
    (task_copy / "__pycache__").mkdir(exist_ok=True)
    (task_copy / "__pycache__" / "x.pyc").write_bytes(b"cache")  # caches and hidden files do not count
    (task_copy / ".notes").write_text("mine")
    _, again = planner.expand(load_suite(suite))
    assert [j.key for j in again] == [j.key for j in after]


def test_the_files_travel_in_the_message_not_in_the_stored_spec(tmp_path, task_copy):
    _, jobs = planner.expand(load_suite(_suite(tmp_path, task_copy / "smoke_mc.yaml")))
    evaluate = next(j for j in jobs if j.kind == "evaluate")
    probe = next(j for j in jobs if j.kind == "probe")
    bundles: dict = {}
    sent = wire_spec(evaluate.spec, bundles)
    assert "files" not in evaluate.spec["task"] and wire_spec(probe.spec, bundles) is probe.spec
    files = sent["task"]["files"]
    assert {"smoke_mc.yaml", "smoke_data.py", "data/smoke_mc_test.jsonl"} <= set(files)
    assert wire_spec(evaluate.spec, bundles)["task"]["files"] is files  # read once per run


def test_a_folder_over_the_limit_is_not_shipped(tmp_path, task_copy, monkeypatch):
    _, jobs = planner.expand(load_suite(_suite(tmp_path, task_copy / "smoke_mc.yaml")))
    evaluate = next(j for j in jobs if j.kind == "evaluate")
    monkeypatch.setattr(taskfiles, "SHIP_LIMIT", 1000)
    assert bundle(task_copy / "smoke_mc.yaml") is None
    assert wire_spec(evaluate.spec, {}) is evaluate.spec  # the worker reads it at its path


def test_unpack_round_trip_and_refusals(tmp_path, task_copy):
    digest, size = folder_digest(task_copy / "smoke_mc.yaml")
    files = bundle(task_copy / "smoke_mc.yaml")
    assert size == sum(len(v) for v in files.values())
    path = unpack(files, digest, "smoke_mc.yaml", tmp_path / "home")
    assert path == tmp_path / "home" / "tasks" / digest / "smoke_mc.yaml"
    assert (path.parent / "data" / "smoke_mc_test.jsonl").read_bytes() == files["data/smoke_mc_test.jsonl"]
    assert folder_digest(path)[0] == digest
    assert unpack(files, digest, "smoke_mc.yaml", tmp_path / "home") == path  # already there: reused

    for bad_name in ("../evil.py", "/etc/evil", "data/../../evil", "a\\b"):
        with pytest.raises(TaskFilesError, match="is not a plain relative path inside the task folder"):
            unpack({**files, bad_name: b"x"}, digest, "smoke_mc.yaml", tmp_path / "home2")
    tampered = {**files, "smoke_data.py": files["smoke_data.py"] + b"\n# changed"}
    with pytest.raises(TaskFilesError, match="do not match their digest"):
        unpack(tampered, digest, "smoke_mc.yaml", tmp_path / "home2")
    with pytest.raises(TaskFilesError, match="the task file 'other.yaml' is not among the"):
        unpack(files, digest, "other.yaml", tmp_path / "home2")
    with pytest.raises(TaskFilesError, match="expected a map of relative file names to bytes"):
        unpack({"smoke_mc.yaml": "text"}, digest, "smoke_mc.yaml", tmp_path / "home2")
    assert not (tmp_path / "home2").exists() or not any((tmp_path / "home2" / "tasks").glob("*"))


def test_a_worker_without_the_path_evaluates_from_the_shipped_files(daemon_pool, tmp_path, task_copy):
    """Over ZeroMQ to a real daemon: the task's path does not exist on the worker (as on another
    host), the files in the message do; the result equals the one read from the path itself."""
    from harness.coordinator import Coordinator, Job

    _, jobs = planner.expand(load_suite(_suite(tmp_path, task_copy / "smoke_mc.yaml")))
    spec = next(j for j in jobs if j.kind == "evaluate").spec
    sent = wire_spec(spec, {})
    elsewhere = {**sent, "task": {**sent["task"], "path": "/no/such/host/tasks/smoke_mc.yaml"}}
    missing = {**spec, "task": {**spec["task"], "path": "/no/such/host/tasks/smoke_mc.yaml"}}
    outcomes = {}
    with Coordinator(daemon_pool.endpoints, heartbeat_s=0.25, timeout_s=30.0) as coord:
        coord.run([Job("local", spec), Job("shipped", elsewhere), Job("missing", missing)],
                  lambda job, outcome: outcomes.__setitem__(job.key, outcome), deadline_s=300)
    assert outcomes["local"]["status"] == "ok", outcomes["local"]
    assert outcomes["shipped"]["status"] == "ok", outcomes["shipped"]
    assert outcomes["shipped"]["result"]["metrics"] == outcomes["local"]["result"]["metrics"]
    assert outcomes["shipped"]["result"]["samples"] == outcomes["local"]["result"]["samples"]
    error = outcomes["missing"]["error"]
    assert outcomes["missing"]["status"] == "failed" and "\n" not in error
    assert f"job.task.path: no such file on this worker ({socket.gethostname()})" in error
    assert "put this one on a filesystem every worker shares" in error


def test_a_folder_too_big_to_ship_is_refused_when_the_run_is_planned(tmp_path, task_copy, monkeypatch, capsys):
    """Not job by job on a worker on another host: `harness run` says so before its run folder exists,
    unless every worker shares the filesystem (--shared-fs)."""
    from harness.cli import main as harness

    suite = _suite(tmp_path, task_copy / "smoke_mc.yaml")
    assert planner.unshippable_tasks(load_suite(suite)) == []
    monkeypatch.setattr(taskfiles, "SHIP_LIMIT", 1024)
    size = taskfiles.folder_bytes(task_copy / "smoke_mc.yaml")
    assert size > 1024
    out = tmp_path / "run"
    assert harness(["run", str(suite), "--out", str(out), "--workers", "tcp://gpu1:5555"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"harness run: tasks[0] ({task_copy / 'smoke_mc.yaml'}): its folder holds {size / 1024:.1f} KiB, "
                   "over the 1 KiB that travel with a job, and worker tcp://gpu1:5555 is on another host, where "
                   "it would fail; put the folder on a filesystem every worker shares and pass --shared-fs")
    assert not out.exists()
