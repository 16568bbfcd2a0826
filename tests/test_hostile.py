"""Suites written to hurt, read by real `harness plan` processes: one line, exit 2, in seconds.

Issue 25, findings 7, 9 and 13: a YAML alias bomb ran for over a minute and took 1.5 GB; NaN and
infinity passed as learning rates and loss coefficients (a NaN run was cached as "ok"); a 10^40
seed crashed the run in msgpack; 100k-deep nesting and a 100k-digit integer gave tracebacks; a
300-character name crashed on the file system, and ``name: "s\\n"`` made a folder with a newline.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.suite import SuiteError, parse
from moe_schema import protocol
from moe_schema.check import got

REPO = Path(__file__).resolve().parent.parent
MOE = ("{model_type: olmoe, hidden_size: 16, intermediate_size: 16, num_hidden_layers: 1, "
       "num_attention_heads: 2, num_experts: 4, num_experts_per_tok: 2}")
TRAINED = f"""name: hostile
models:
  - {{name: moe, config: {MOE}}}
corpus: {{kind: knowledge, entities: 20, tokens: 2000}}
train: {{tokens: 1024, batch_size: 2, seq_len: 16}}
"""


def _alias_bomb() -> str:
    """Ten lines that stand for 10^9 values, under a key the suite allows (``description``)."""
    lines = ["name: bomb", "description:", "  a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    lines += [f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    return "\n".join(lines) + f"\nmodels:\n  - {{name: moe, config: {MOE}}}\nsweep: {{top_k: *a9}}\n"


# (id, suite text, the one line expected; checked as a substring of stderr's only line)
SUITES = [
    ("alias-bomb", _alias_bomb(), "expands to more than 1,000,000 values"),
    ("deep", "name: deep\nmodels: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested more than 100 levels deep"),
    ("huge-int", "name: big\nseed: " + "7" * 100_000 + "\nmodels: []\n", "an integer of 100000 digits"),
    ("hex-int", "name: big\nseed: 0x" + "f" * 4_000 + "\nmodels: []\n", "an integer of 4000 digits (at most 100"),
    ("hex-int-100", "name: big\nseed: 0x" + "f" * 100 + "\nmodels: []\n",
     "seed: expected an int within 64 bits (what the wire carries), got int <121-digit int>"),
    ("bin-int", "name: big\nseed: 0b" + "1" * 4_000 + "\nmodels: []\n", "an integer of 4000 digits"),
    ("octal-int", "name: big\nseed: 0" + "7" * 4_000 + "\nmodels: []\n", "an integer of 4001 digits"),
    ("underscore-int", "name: big\nseed: 1" + "_000" * 2_000 + "\nmodels: []\n", "an integer of 6001 digits"),
    ("seed-1e40", f"name: s\nseed: {10 ** 40}\nmodels:\n  - {{name: m, config: {MOE}}}\n",
     "seed: expected an int within 64 bits (what the wire carries), got int <41-digit int>"),
    ("name-newline", f'name: "s\\n"\nmodels:\n  - {{name: m, config: {MOE}}}\n',
     "name: 's\\n': use letters, digits and _ . + - only"),
    ("name-300", f"name: {'n' * 300}\nmodels:\n  - {{name: m, config: {MOE}}}\n",
     "...nnnn' is 300 characters long; at most 100".lstrip(".")),
    ("aux-nan", TRAINED.replace("seq_len: 16", "seq_len: 16, aux_loss_coef: .nan"),
     "train.aux_loss_coef: expected a finite number, got nan"),
    ("zipf-nan", TRAINED.replace("tokens: 2000}", "tokens: 2000, zipf: .nan}"),
     "corpus.zipf: expected a finite number, got nan"),
]


def test_hostile_suites_end_in_one_line_from_real_harness_processes(tmp_path):
    """All at once, each its own `harness plan` process; each must answer exit 2 with one
    line (no traceback), quickly (the bomb took minutes before; the bound is loose for a loaded machine)."""
    procs = {}
    start = time.monotonic()
    for name, text, _ in SUITES:
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        procs[name] = subprocess.Popen([sys.executable, "-m", "harness.cli", "plan", str(path)], cwd=tmp_path,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, _, expected in SUITES:
        out, err = procs[name].communicate(timeout=120)
        lines = err.strip().splitlines()
        assert procs[name].returncode == 2, (name, err[-2000:])
        assert len(lines) == 1 and "Traceback" not in err, (name, err[-2000:])
        assert expected in lines[0], (name, lines[0])
        assert len(lines[0]) < 400, (name, lines[0])
    assert time.monotonic() - start < 90


@pytest.mark.parametrize("train, message", [
    ({"lr": float("inf")}, "train.lr: expected a finite number, got inf"),
    ({"weight_decay": float("nan")}, "train.weight_decay: expected a finite number, got nan"),
    ({"grad_clip": float("inf")}, "train.grad_clip: expected a finite number, got inf"),
    ({"z_loss_coef": float("-inf")}, "train.z_loss_coef: expected a finite number, got -inf"),
    ({"betas": [0.9, float("nan")]}, "train.betas: expected two numbers in [0, 1), got [0.9, nan]"),
    ({"tokens": 2 ** 64}, "train.tokens: expected an int within 64 bits (what the wire carries), got "
                          "<20-digit int>"),
])
def test_every_finite_train_setting_refuses_nan_and_infinity_at_its_path(train, message):
    data = {"name": "t", "models": [{"name": "moe", "config": {"model_type": "olmoe", "hidden_size": 16,
            "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_experts": 4,
            "num_experts_per_tok": 2}}], "corpus": {"kind": "knowledge", "entities": 20, "tokens": 2000},
            "train": {"tokens": 1024, "batch_size": 2, "seq_len": 16, **train}}
    with pytest.raises(SuiteError) as info:
        parse(data)
    assert str(info.value) == message


@pytest.mark.parametrize("where, value, message", [
    ("config", {"initializer_range": float("nan")}, "models[0].config.initializer_range: expected a finite number, got float nan"),
    ("config", {"hidden_size": 10 ** 30}, "models[0].config.hidden_size: expected an int within 64 bits"),
    ("routing", [{"name": "topp", "p": float("nan")}], "models[0].routing[0].p: expected a finite number, got float nan"),
    ("seed", 2 ** 70, "models[0].seed: expected an int within 64 bits"),
    ("pairing", {"tolerance": float("nan")}, "pairing.tolerance: expected a finite number, got float nan"),
    ("probes", [{"name": "latency", "device_peaks": {"bandwidth_gbs": float("inf"), "tflops": 1}}],
     "probes[0].device_peaks.bandwidth_gbs: must be a positive number, got inf"),
    ("tasks", [{"name": "arc_easy", "limit": 10 ** 25}], "tasks[0].limit: expected an int within 64 bits"),
    ("eval", {"max_batch_tokens": -(2 ** 64)}, "eval.max_batch_tokens: expected an int within 64 bits"),
])
def test_values_that_cannot_be_right_are_refused_wherever_they_stand(where, value, message):
    model = {"name": "moe", "config": {"model_type": "olmoe", "hidden_size": 16, "intermediate_size": 16,
             "num_hidden_layers": 1, "num_attention_heads": 2, "num_experts": 4, "num_experts_per_tok": 2}}
    data = {"name": "t", "models": [model]}
    if where == "config":
        model["config"].update(value)
    elif where in ("routing", "seed"):
        model[where] = value
    else:
        data[where] = value
    with pytest.raises(SuiteError) as info:
        parse(data)
    assert str(info.value).startswith(message), str(info.value)


def test_a_bad_value_is_shown_bounded():
    """The error path shows a value in at most a line: a list of 10^6, a dict of dicts, a huge int."""
    assert len(got(list(range(10 ** 6)))) < 100
    assert len(got({"a": {"b": {"c": {"d": list(range(100))}}}})) < 100
    assert got(10 ** 100_000) == "int <~100000-digit int>" or got(10 ** 100_000).endswith("-digit int>")
    assert got("x" * 10_000).count("x") < 100


# ---------------------------------------------------------------- one daemon started elsewhere

TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files: {{test: {data}}}
output_type: multiple_choice
test_split: test
doc_to_text: "{{{{q}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
"""


def _docs(n: int, tag: str) -> str:
    import json

    return "".join(json.dumps({"q": f"{tag} {i}", "choices": ["a", "b"], "label": i % 2}) + "\n" for i in range(n))


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory):
    """One real daemon (tests/fault_jobs.py's test probes besides the real jobs) whose working
    directory holds a decoy ``data/test.jsonl``: what a task's relative data path must never read."""
    import fault_jobs
    import os

    from harness.local import start_local_workers

    cwd = tmp_path_factory.mktemp("daemon_cwd")
    (cwd / "data").mkdir()
    (cwd / "data" / "test.jsonl").write_text(_docs(7, "decoy"))
    here = os.getcwd()
    os.chdir(cwd)  # the daemon inherits it
    try:
        workers = start_local_workers(1, env=fault_jobs.env(), extra_args=("--heartbeat-s", "0.25"))
    finally:
        os.chdir(here)
    workers.cgroup = _memory_cgroup(workers.procs[0].pid, CGROUP_LIMIT, tmp_path_factory)
    try:
        with workers:
            yield workers
    finally:
        if isinstance(workers.cgroup, Path):
            for _ in range(50):  # gone once its last process has
                try:
                    workers.cgroup.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)


CGROUP_LIMIT = 3 << 30  # the daemon's memory cgroup: room for every test here, not for a 6 GB build


def _memory_cgroup(pid: int, limit: int, tmp_path_factory) -> Path | str:
    """Move ``pid`` into a new memory cgroup of ``limit`` bytes (v2, or v1's memory controller), as
    Slurm does to a job; the cgroup's folder, or why none could be made (not root, no writable
    hierarchy)."""
    name = f"moe-harness-test-{os.getpid()}"
    v2 = Path("/sys/fs/cgroup")
    try:
        if "memory" in (v2 / "cgroup.controllers").read_text().split():
            folder, limit_file = v2 / name, "memory.max"
        elif (v2 / "memory" / "cgroup.procs").exists():
            folder, limit_file = v2 / "memory" / name, "memory.limit_in_bytes"
        else:
            raise OSError("no memory controller under /sys/fs/cgroup")
    except OSError:
        if not (v2 / "memory" / "cgroup.procs").exists():
            return "no memory cgroup hierarchy under /sys/fs/cgroup"
        folder, limit_file = v2 / "memory" / name, "memory.limit_in_bytes"
    try:
        folder.mkdir()
        (folder / limit_file).write_text(str(limit))
        (folder / "cgroup.procs").write_text(str(pid))
    except OSError as exc:
        return f"cannot make a memory cgroup at {folder} ({exc.strerror}): needs root and a writable hierarchy"
    return folder


def _run_jobs(endpoints, jobs: dict[str, dict], deadline_s: float = 240) -> dict[str, dict]:
    from harness.coordinator import Coordinator, Job

    outcomes: dict = {}
    with Coordinator(endpoints, heartbeat_s=0.25, timeout_s=30.0) as coord:
        coord.run([Job(k, spec) for k, spec in jobs.items()], lambda job, o: outcomes.__setitem__(job.key, o),
                  deadline_s=deadline_s)
    return outcomes


def _tiny_suite(tmp_path: Path, extra: str, name: str = "long") -> Path:
    """``tmp_path/<name>.yaml``: a suite of one tiny llama build, and ``extra`` (tasks, probes ...)."""
    suite = tmp_path / f"{name}.yaml"
    suite.write_text(f"""name: {name}
models:
  - name: tiny
    config: {{model_type: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1,
             num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 128}}
{extra}
""")
    return suite


def _task_suite(tmp_path: Path, data: str, eval_opts: str = "") -> Path:
    folder = tmp_path / "task"
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "test.jsonl").write_text(_docs(3, "real"))
    (folder / "task.yaml").write_text(TASK_YAML.format(name="datapath", data=data))
    return _tiny_suite(tmp_path, f"tasks: [{{path: {folder / 'task.yaml'}, num_fewshot: 0}}]\n{eval_opts}", "datapath")


def test_task_data_comes_from_the_task_folder_whatever_the_daemons_cwd(elsewhere, tmp_path):
    """Finding 3: ``data_files: data/test.jsonl`` is the shipped folder's file (3 documents), not
    the decoy in the daemon's working directory (7); shipped to a path the worker cannot see too."""
    from harness import plan as planner
    from harness.run import wire_spec
    from harness.suite import load as load_suite

    _, jobs = planner.expand(load_suite(_task_suite(tmp_path, "data/test.jsonl")))
    spec = next(j for j in jobs if j.kind == "evaluate").spec
    sent = wire_spec(spec, {})
    shipped = {**sent, "task": {**sent["task"], "path": "/no/such/host/task/task.yaml"}}
    out = _run_jobs(elsewhere.endpoints, {"local": spec, "shipped": shipped})
    for name in ("local", "shipped"):
        assert out[name]["status"] == "ok", out[name]
        docs = out[name]["result"]["samples"]["datapath"]
        assert [d["doc_id"] for d in docs] == [0, 1, 2], name


def test_task_data_outside_the_folder_is_refused_on_both_sides_unless_the_suite_opts_in(elsewhere, tmp_path):
    from harness import plan as planner
    from harness.suite import load as load_suite

    outside = tmp_path / "private.jsonl"
    outside.write_text(_docs(2, "private"))
    for data in (str(outside), "../private.jsonl"):
        with pytest.raises(SuiteError, match=r"tasks\[0\]\.path: task\.yaml\.dataset_kwargs\.data_files\.test: "
                                             r".* is outside the task folder .*data_outside_task_folder"):
            load_suite(_task_suite(tmp_path, data))
    allowed = load_suite(_task_suite(tmp_path, str(outside), "eval: {data_outside_task_folder: true}"))
    spec = next(j for j in planner.expand(allowed)[1] if j.kind == "evaluate").spec
    # a worker is sent the same task without the suite's consent: it refuses it itself
    refused = {**spec, "eval": {k: v for k, v in spec["eval"].items() if k != "data_outside_task_folder"}}
    out = _run_jobs(elsewhere.endpoints, {"allowed": spec, "refused": refused})
    assert out["allowed"]["status"] == "ok", out["allowed"]
    assert [d["doc_id"] for d in out["allowed"]["result"]["samples"]["datapath"]] == [0, 1]
    assert out["refused"]["status"] == "failed" and "is outside the task folder" in out["refused"]["error"]
    assert "\n" not in out["refused"]["error"]


def test_a_reply_over_the_frame_limit_fails_its_job_and_keeps_the_worker(elsewhere):
    """Finding 6: a 65 MiB result is JOB_FAILED naming the limit and the size, once; the worker
    then runs the next job (it was lost before: 'no worker left ... silent for 10.0 s')."""
    import fault_jobs

    out = _run_jobs(elsewhere.endpoints, {"big": fault_jobs.probe_spec("test-big", mib=65),
                                          "next": fault_jobs.probe_spec("test-stall", seconds=0.1)}, 120)
    assert out["big"]["status"] == "failed", out["big"]
    assert "over the frame limit of 67,108,864 bytes" in out["big"]["error"]
    assert out["big"]["attempts"] == 1
    assert out["next"]["status"] == "ok"


def test_a_torch_allocation_that_fails_is_out_of_memory_with_the_bytes_asked(elsewhere):
    """Finding 4: torch on CPU raises a plain RuntimeError for an allocation it cannot make."""
    import fault_jobs

    out = _run_jobs(elsewhere.endpoints, {"alloc": fault_jobs.probe_spec("test-alloc", bytes=10 ** 15)}, 120)
    assert out["alloc"]["status"] == "failed"
    assert "out of memory: an allocation of 1,000,000,000,000,000 bytes failed" in out["alloc"]["error"], out


# ---------------------------------------------------------------- two runs, one cache

def test_two_runs_of_one_suite_on_one_cache_run_each_job_once(tmp_path):
    """Finding 5: two real `harness run` processes started together on one cache (each with its own
    local daemon). Each describe job runs in one of them; the other waits and reuses its result
    (the same record, worker pid and timings), where before every job ran twice."""
    import json
    import os

    suite = tmp_path / "twice.yaml"
    models = "\n".join(f"""  - name: m{i}
    config: {{model_type: llama, hidden_size: {16 * (i + 1)}, intermediate_size: 32, num_hidden_layers: 1,
             num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 64}}""" for i in range(3))
    suite.write_text(f"name: twice\nmodels:\n{models}\n")
    env = {**os.environ, "MOE_HARNESS_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(tmp_path / f"run{i}"),
                               "--no-report", "--threads", "1"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    records = [{r["key"]: r for r in map(json.loads, (tmp_path / f"run{i}" / "results.jsonl").read_text().splitlines())}
               for i in range(2)]
    assert set(records[0]) == set(records[1]) and len(records[0]) == 3
    for key, rec in records[0].items():
        other = records[1][key]
        assert rec["status"] == other["status"] == "ok"
        assert (rec["env"]["pid"], rec["timings"]) == (other["env"]["pid"], other["timings"]), outs  # one run
    assert len({r["env"]["pid"] for run in records for r in run.values()}) <= 2


def test_a_run_under_a_100_character_tmpdir_works(tmp_path):
    """A real `harness run` whose $TMPDIR is 100 characters long: its local daemons' sockets would
    pass the kernel's 107-byte socket path limit there, so they go to a short private folder and the
    run succeeds (before: every bind failed and the run ended in a traceback)."""
    import json
    import os

    tmpdir = tmp_path / "t"
    tmpdir = Path(str(tmpdir) + "x" * (100 - len(str(tmpdir))))
    tmpdir.mkdir()
    assert len(str(tmpdir)) == 100
    suite = _tiny_suite(tmp_path, "", "tmpdir")
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(tmp_path / "run"),
                           "--no-report", "--threads", "1"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    records = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert records and all(r["status"] == "ok" for r in records)
    endpoint = records[0]["worker"]
    assert endpoint.startswith("ipc://") and not endpoint.startswith(f"ipc://{tmpdir}/")
    assert len(os.fsencode(endpoint[len("ipc://"):])) <= 107


def test_socket_folders_stay_in_tmpdir_up_to_the_limit_and_move_past_it(tmp_path):
    """The boundary: a temp folder whose longest socket path is exactly 107 bytes keeps the sockets;
    one byte longer moves them to the next candidate (all folders 0700)."""
    from harness.local import MAX_IPC_PATH, socket_dir

    longest = len("/moe-harness-xxxxxxxx/worker-1.sock")
    fits = Path(str(tmp_path / "a") + "a" * (MAX_IPC_PATH - longest - len(str(tmp_path / "a"))))
    over = Path(str(fits) + "b")
    fits.mkdir(), over.mkdir()
    here = socket_dir(2, (str(fits), "/tmp"))
    moved = socket_dir(2, (str(over), "/tmp"))
    try:
        assert here.parent == fits and len(str(here / "worker-1.sock")) == MAX_IPC_PATH
        assert moved.parent == Path("/tmp")
        assert (here.stat().st_mode & 0o777, moved.stat().st_mode & 0o777) == (0o700, 0o700)
    finally:
        here.rmdir(), moved.rmdir()


def test_a_key_lock_excludes_another_process_and_frees_when_it_exits(tmp_path):
    """The lock a run (or a trainer) holds is the kernel's: another process cannot take it, and
    takes it at once when the holder dies, however it dies."""
    from moe_schema.locks import KeyLock

    path = tmp_path / "k.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from moe_schema.locks import KeyLock; "
                               f"KeyLock({str(path)!r}).try_acquire() or sys.exit(3); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True,
                              env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert holder.stdout.readline().strip() == "held"
    lock = KeyLock(path)
    assert not lock.try_acquire()
    assert not lock.acquire(stop=lambda: True)
    holder.kill()
    holder.wait()
    assert lock.acquire(stop=lambda: False) and lock.held
    lock.release()


# ---------------------------------------------------------------- a disk that fills up

@pytest.fixture
def small_disk(tmp_path):
    """A 16 KiB tmpfs (four pages: the suite copy, plan.json and two job records), as root."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {made.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_ends_the_run_in_one_line_and_the_rerun_resumes(elsewhere, small_disk, tmp_path):
    """Finding 11: the run folder's disk fills up mid-run. One line naming the file and errno, exit
    1; no new jobs; every result that arrived is in the cache; a rerun with space reuses them."""
    import json
    import os

    suite = tmp_path / "full.yaml"
    models = "\n".join(f"""  - name: m{i}
    config: {{model_type: llama, hidden_size: {16 * (i + 1)}, intermediate_size: 32, num_hidden_layers: 1,
             num_attention_heads: 2, num_key_value_heads: 2, max_position_embeddings: 64}}""" for i in range(4))
    suite.write_text(f"name: full\nmodels:\n{models}\n")
    home = tmp_path / "home"
    env = {**os.environ, "MOE_HARNESS_HOME": str(home), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(small_disk / "run"), "--no-report",
           "--workers", elsewhere.endpoints[0]]
    first = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 1, first.stdout + first.stderr
    lines = [x for x in first.stderr.strip().splitlines() if x.startswith("harness:")]
    assert len(lines) == 1 and "Traceback" not in first.stderr, first.stderr
    assert first.stderr.strip().splitlines()[-1] == lines[0]  # the last word, on one line
    assert re.fullmatch(rf"harness: cannot write {small_disk}/run/jobs/\w+\.json: \[Errno 28\] No space left on "
                        r"device; results stored before it are in the cache, so a rerun resumes", lines[0]), lines[0]
    cached = {p.stem for p in (home / "results").glob("*.json")}
    kept = {p.stem for p in (small_disk / "run" / "jobs").glob("*.json")}
    assert kept < cached and len(cached) < 4  # every result that arrived is cached; dispatching stopped
    subprocess.run(["mount", "-o", "remount,size=1m", str(small_disk)], check=True)  # space freed
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    said = second.stdout + second.stderr
    assert f"{4 - len(cached)} ok, {len(cached)} reused" in said or f"{len(cached)} reused, {4 - len(cached)} ok" in said, said
    records = [json.loads(x) for x in (small_disk / "run" / "results.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)


# ---------------------------------------------------------------- cancel and SIGTERM, heard at once

def _spec(suite: Path, kind: str) -> dict:
    from harness import plan as planner
    from harness.run import wire_spec
    from harness.suite import load as load_suite

    return wire_spec(next(j for j in planner.expand(load_suite(suite))[1] if j.kind == kind).spec, {})


def _reply_to(client, request_id, since: float, wait_s: float) -> dict | None:
    """The reply to ``request_id``, read until ``wait_s`` seconds after ``since`` (None if none came)."""
    while time.monotonic() - since < wait_s:
        msg = client.recv(1.0)
        if msg and msg.get("id") == request_id:
            return msg
    return None


def test_cancel_is_heard_while_lm_eval_builds_the_requests_of_a_huge_task(elsewhere, tmp_path):
    """Finding 8: a task of 30,000 documents and no limit: progress while lm-eval builds its
    requests, and a cancel answered in seconds (it took over 120 s), the daemon free again."""
    import fault_jobs

    folder = tmp_path / "task"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "test.jsonl").write_text(_docs(30_000, "doc"))
    (folder / "task.yaml").write_text(TASK_YAML.format(name="huge", data="data/test.jsonl"))
    suite = _tiny_suite(tmp_path, f"tasks: [{{path: {folder / 'task.yaml'}}}]")
    planned = subprocess.run([sys.executable, "-m", "harness.cli", "plan", str(suite)], capture_output=True,
                             text=True, timeout=120)
    assert planned.returncode == 0, planned.stderr
    assert "warning: tasks[0] (huge): 30,000 documents and no limit; every request is built before the first " \
           "forward: set tasks[0].limit to evaluate fewer" in " ".join(planned.stdout.split()), planned.stdout
    spec = _spec(suite, "evaluate")
    client = fault_jobs.RawClient(elsewhere.endpoints[0])
    try:
        req = client.request("evaluate", spec)
        deadline, building = time.monotonic() + 180, None
        while time.monotonic() < deadline and building is None:
            client.request("heartbeat")  # a live client (the daemon cancels an orphan's job)
            msg = client.recv(2.0, skip_notifications=False)
            if msg and msg.get("method") == "progress" and "building requests" in msg["params"]["note"]:
                building = msg["params"]
            assert not (msg and msg.get("id") == req["id"]), msg  # no reply before the cancel
        assert building is not None and building["total"] == 30_000, building
        asked = time.monotonic()
        assert client.call("cancel", {"id": req["id"]})["result"]["cancelled"] is True
        reply = _reply_to(client, req["id"], asked, wait_s=30)
        assert reply is not None and time.monotonic() - asked < 15, "no reply to the cancel in time"
        assert reply["error"]["code"] == protocol.JOB_CANCELLED, reply
        assert "building the requests of huge" in reply["error"]["message"]
        assert client.call("status")["result"]["busy"] is False
    finally:
        client.close()


def test_two_trainers_of_one_train_key_on_one_host_train_once(daemon_pool):
    """Finding 5: two daemons sharing a home got the same train job at once and shared its resume
    folder (one died on the other's deleted temp file). Now the second waits for the first and
    reuses its checkpoint: one trains, one says reused, both ok."""
    import uuid

    variant = {"name": "lock-moe", "model": "lock-moe", "routing": None, "dtype": "float32",
               "trust_remote_code": False, "experts_implementation": None,
               "build": {"config": {"model_type": "olmoe", "hidden_size": 16, "intermediate_size": 16,
                                    "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                                    "num_experts": 4, "num_experts_per_tok": 2, "max_position_embeddings": 64},
                         "seed": int(uuid.uuid4().int % 10 ** 6)}}  # a train key no earlier run has
    job = {"kind": "train", "variant": variant, "seed": 0,
           "corpus": {"kind": "knowledge", "entities": 20, "tokens": 4000, "eval_per_bucket": 1, "heldout_docs": 2},
           "train": {"tokens": 8 * 2 * 32, "batch_size": 2, "seq_len": 32, "warmup_steps": 1,
                     "checkpoint_every": 2, "heldout_points": 0}}
    replies = _at_once(daemon_pool.endpoints[:2], "train", job, 240)
    assert all(r is not None and "result" in r for r in replies), replies
    assert sorted(r["result"]["train"]["reused"] for r in replies) == [False, True]


def _at_once(endpoints, method: str, params: dict, deadline_s: float) -> list[dict | None]:
    """The same request sent to each daemon once all are idle (so the jobs run concurrently, which a
    coordinator's dispatch does not promise), heartbeating while they run; each daemon's reply."""
    import fault_jobs

    clients = [fault_jobs.RawClient(ep) for ep in endpoints]
    try:
        deadline = time.monotonic() + deadline_s
        for c in clients:  # a job an earlier test left behind would hold one daemon
            while (c.call("status", timeout_s=5) or {}).get("result", {}).get("busy") and time.monotonic() < deadline:
                time.sleep(0.1)
        reqs = [c.request(method, params) for c in clients]
        replies: list[dict | None] = [None] * len(clients)
        while None in replies and time.monotonic() < deadline:
            for i, (c, req) in enumerate(zip(clients, reqs)):
                if replies[i] is None:
                    c.request("heartbeat")  # a live client (the daemon cancels an orphan's job)
                    while replies[i] is None and (msg := c.recv(0.25)) is not None:
                        if isinstance(msg, dict) and msg.get("id") == req["id"]:
                            replies[i] = msg
        return replies
    finally:
        for c in clients:
            c.close()


# ---------------------------------------------------------------- shipped task folders

def test_a_symlink_out_of_a_task_folder_is_refused_and_one_inside_ships_its_content(tmp_path):
    """Finding 15: a link to a private file outside the folder was followed and shipped."""
    import os

    from moe_schema.taskfiles import bundle

    suite = _task_suite(tmp_path, "data/test.jsonl")
    folder = tmp_path / "task"
    (folder / "data" / "same.jsonl").symlink_to(folder / "data" / "test.jsonl")  # inside: its content ships
    assert bundle(folder / "task.yaml")["data/same.jsonl"] == (folder / "data" / "test.jsonl").read_bytes()
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    os.chmod(secret, 0o600)
    (folder / "notes.txt").symlink_to(secret)
    planned = subprocess.run([sys.executable, "-m", "harness.cli", "plan", str(suite)], capture_output=True,
                             text=True, timeout=120)
    assert planned.returncode == 2 and len(planned.stderr.strip().splitlines()) == 1, planned.stderr
    assert (f"harness: tasks[0].path: {folder}/notes.txt: a symbolic link to {secret}, outside the task folder"
            in planned.stderr), planned.stderr
    with pytest.raises(Exception, match="outside the task folder"):
        bundle(folder / "task.yaml")


def test_workers_evict_task_folders_by_age_and_size_and_say_so(tmp_path):
    """Finding 15: a worker kept every task folder it was ever sent. Five shipped folders of 1 MiB
    under a 3 MiB budget: the two least recently used go, one older than a week goes whatever its
    size, the one in use stays; each eviction is one line."""
    import os
    import time

    from moe_schema import taskfiles

    home = tmp_path / "home"
    paths = []
    for i in range(5):
        files = {"t.yaml": f"task: t{i}\n".encode(), "data.bin": bytes([i]) * (1 << 20)}
        digest = taskfiles._digest((name, [files[name]]) for name in sorted(files))
        paths.append(taskfiles.unpack(files, digest, "t.yaml", home).parent)
        os.utime(paths[-1], (time.time() - 100 + i, time.time() - 100 + i))  # used in order
    os.utime(paths[4], (time.time() - 8 * 86400,) * 2)  # the newest shipped, but unused for 8 days
    said: list[str] = []
    gone = taskfiles.evict(paths[0].parent, keep=paths[0], keep_bytes=(3 << 20) + 4096, say=said.append)
    assert set(gone) == {paths[4].name, paths[1].name}, gone
    assert [p.exists() for p in paths] == [True, False, True, True, False]
    assert said[0] == f"evicted task folder {paths[4].name} (1.0 MiB, unused for 8.0 days)"
    assert said[1] == f"evicted task folder {paths[1].name} (1.0 MiB, over 3 MiB kept)"


# ---------------------------------------------------------------- admission inside a memory cgroup

def test_admission_follows_the_cgroup_limit_for_builds_and_probes(elsewhere, tmp_path):
    """Finding 4: in a 3 GiB memory cgroup on a machine with more free, a 6 GB build is refused
    with OUT_OF_MEMORY naming the cgroup's room (it was admitted, and the kernel killed the daemon),
    and a probe of batch 10^5 is refused before it allocates; the daemon lives on."""
    if not isinstance(elsewhere.cgroup, Path):
        pytest.skip(f"no real cgroup: {elsewhere.cgroup}")
    big = _tiny_suite(tmp_path, "").read_text().replace(
        "hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1", "hidden_size: 4096, intermediate_size: 11008, "
        "num_hidden_layers: 10")
    (tmp_path / "big.yaml").write_text(big.replace("name: long", "name: big"))
    probe = _tiny_suite(tmp_path, "probes: [{name: latency, batch_sizes: [100000], prompt_lengths: [8], "
                                  "context_lengths: [64], new_tokens: 2}]")
    out = _run_jobs(elsewhere.endpoints, {"big": _spec(tmp_path / "big.yaml", "describe"),
                                          "probe": _spec(probe, "probe"),
                                          "after": _spec(probe, "describe")}, 180)
    assert out["big"]["status"] == "failed", out["big"]
    free = int(re.search(r"has ([\d,]+) bytes free", out["big"]["error"]).group(1).replace(",", ""))
    assert "needs an estimated" in out["big"]["error"] and free <= CGROUP_LIMIT, out["big"]["error"]
    assert out["probe"]["status"] == "failed", out["probe"]
    assert "probe 'latency': batch 100,000 at 66 tokens needs an estimated" in out["probe"]["error"]
    assert out["after"]["status"] == "ok"  # the same daemon, alive
    import fault_jobs

    client = fault_jobs.RawClient(elsewhere.endpoints[0])
    try:  # and its hello tells a coordinator the cgroup's room, not the machine's
        assert 0 < client.call("hello", {})["result"]["memory"]["free_bytes"] <= CGROUP_LIMIT
    finally:
        client.close()


# ---------------------------------------------------------------- last: it ends the module's daemon

def test_sigterm_mid_probe_is_answered_within_the_grace_period(elsewhere, tmp_path):
    """Findings 8 and 14: a probe row of a million repeats (hours) is cancelled between forwards,
    not rows: SIGTERM gets the job's JOB_CANCELLED reply, then the daemon exits 0. Last here: it
    ends the module's daemon."""
    import fault_jobs
    import signal

    spec = _spec(_tiny_suite(tmp_path, "probes: [{name: latency, batch_sizes: [1], prompt_lengths: [8], "
                                       "context_lengths: [8], new_tokens: 2, warmup: 0, repeats: 1000000}]"), "probe")
    client = fault_jobs.RawClient(elsewhere.endpoints[0])
    try:
        req = client.request("probe", spec)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until its model is loaded and the row is being timed
            job = client.call("status")["result"]["job"]
            if job and job["elapsed_s"] > 3:
                break
            time.sleep(0.5)
        proc = elsewhere.procs[0]
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        reply = _reply_to(client, req["id"], sent, wait_s=40)
        assert reply is not None and time.monotonic() - sent < 10, "no reply within the grace period"
        assert reply["error"]["code"] == protocol.JOB_CANCELLED, reply
        assert proc.wait(timeout=30) == 0
    finally:
        client.close()


def test_harness_launch_slurm_passes_the_jobs_memory_to_each_daemon(tmp_path):
    """Finding 4: the sbatch script's daemon line, run by bash as srun would with slurm's memory
    variables: each daemon gets --memory-limit of its share (MB per CPU x CPUs, or the node's / n)."""
    import shlex

    from harness.launch import SlurmOptions, slurm_script

    text = slurm_script(SlurmOptions(out=tmp_path / "w", nodes=1, gpus_per_node=4, cpus_per_daemon=2, insecure=True,
                                     harness="/bin/echo"))
    line = next(x for x in text.splitlines() if "bash -c" in x)
    command = shlex.split(line.split("bash -c", 1)[1].rstrip(" &"))[0]
    for env, limit in (({"SLURM_MEM_PER_NODE": "8192"}, "2048MiB"), ({"SLURM_MEM_PER_CPU": "1000"}, "2000MiB"),
                       ({}, None)):
        shown = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True,
                               env={"PATH": "/usr/bin:/bin", "HARNESS": "/bin/echo", "SLURM_CPUS_PER_TASK": "2", **env})
        assert (f"--memory-limit {limit}" in shown.stdout) if limit else ("--memory-limit" not in shown.stdout), shown
