"""The local lm-eval task folders users write, run as they run them: ``harness run`` ships each folder
to a worker that reads its own copy, so a path the YAML names must mean the same file there.

One ``harness run`` (real daemons) evaluates every shape: absolute and relative ``data_files``
(string, list, split map), ``data_dir``, a ``dataset_path`` naming a folder in the task folder,
an ``include`` of a sibling YAML (by absolute and by relative path), a ``!function`` in a sibling
``utils.py``, several tasks in one folder. Each result equals lm-eval's own ``hf`` backend on the
same files and checkpoint. A path that would be refused is refused by ``harness plan``, in one
line, before anything starts; the path logic itself (moe_schema.taskfiles) is tested on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from moe_schema import taskfiles
from moe_schema.taskfiles import TaskFilesError, data_paths, portable_includes, with_includes

REPO = Path(__file__).resolve().parent.parent

MC = """output_type: multiple_choice
doc_to_text: "{{q}}"
doc_to_choice: "{{choices}}"
doc_to_target: label
metric_list:
  - metric: acc
"""


def _docs(n: int, tag: str) -> str:
    return "".join(json.dumps({"q": f"{tag} question {i}: {i * 7 % 5} plus {i}", "choices": [f"{tag} {i}", f"no {i + 3}"],
                               "label": i % 2}) + "\n" for i in range(n))


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def make_shapes(root: Path) -> dict[str, Path]:
    """``{task name: its yaml}``: the shapes, in four folders (``several`` holds six tasks)."""
    several, datadir, dsfolder, sibling = (root / n for n in ("several", "datadir", "dsfolder", "sibling"))
    _write(several, {
        "test.jsonl": _docs(3, "s"), "part1.jsonl": _docs(2, "p1"), "part2.jsonl": _docs(3, "p2"),
        "data/test.jsonl": _docs(4, "d"), "data/part3.jsonl": _docs(2, "p3"),
        "abs_str.yaml": f"task: abs_str\ndataset_path: json\ndataset_kwargs:\n  data_files: {several}/test.jsonl\n"
                        f"test_split: train\n{MC}",
        "abs_list.yaml": f"task: abs_list\ndataset_path: json\ndataset_kwargs:\n  data_files: [{several}/part1.jsonl, "
                         f"'{several}/part2.jsonl']\ntest_split: train\n{MC}",
        "abs_map.yaml": f"task: abs_map\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                        f"    test: {several}/data/test.jsonl\n    train: {several}/part1.jsonl\ntest_split: test\n{MC}",
        "rel_str.yaml": f"task: rel_str\ndataset_path: json\ndataset_kwargs:\n  data_files: test.jsonl\ntest_split: train\n{MC}",
        "rel_list.yaml": f"task: rel_list\ndataset_path: json\ndataset_kwargs:\n  data_files: [part2.jsonl, data/part3.jsonl]\n"
                         f"test_split: train\n{MC}",
        "rel_map.yaml": f"task: rel_map\ndataset_path: json\ndataset_kwargs:\n  data_files: {{test: data/test.jsonl, "
                        f"train: [part1.jsonl]}}\ntest_split: test\n{MC}",
    })
    _write(datadir, {
        "data/test.jsonl": _docs(3, "dd"), "data/other.jsonl": _docs(2, "do"),
        "dir_abs.yaml": f"task: dir_abs\ndataset_path: json\ndataset_kwargs:\n  data_dir: {datadir}/data\n"
                        f"  data_files: {{test: test.jsonl}}\ntest_split: test\n{MC}",
        "dir_rel.yaml": f"task: dir_rel\ndataset_path: json\ndataset_kwargs:\n  data_dir: data\n"
                        f"  data_files: {{test: other.jsonl}}\ntest_split: test\n{MC}",
    })
    _write(dsfolder, {  # datasets reads the folder itself: json by the files' suffix, the split by their name
        "data/test.jsonl": _docs(4, "f"),
        "ds_abs.yaml": f"task: ds_abs\ndataset_path: {dsfolder}/data\ntest_split: test\n{MC}",
        "ds_rel.yaml": f"task: ds_rel\ndataset_path: ./data\ntest_split: test\n{MC}",
    })
    _write(sibling, {
        "test.jsonl": _docs(3, "i"),
        "_base.yaml": f"dataset_path: json\ndataset_kwargs:\n  data_files: {{test: test.jsonl}}\ntest_split: test\n{MC}",
        "inc_abs.yaml": f"# the prompt and data come from the sibling\ninclude: {sibling}/_base.yaml\ntask: inc_abs\n",
        "inc_rel.yaml": "include: _base.yaml\ntask: inc_rel\ndoc_to_text: \"Q: {{q}}\"\n",
        "utils.py": "def process_docs(dataset):\n"
                    "    return dataset.map(lambda d: {'q': d['q'].upper(), 'choices': d['choices'][::-1],\n"
                    "                                  'label': 1 - d['label']})\n",
        "fn.yaml": f"task: fn\ndataset_path: json\ndataset_kwargs:\n  data_files: {{test: {sibling}/test.jsonl}}\n"
                   f"test_split: test\nprocess_docs: !function utils.process_docs\n{MC}",
    })
    return {p.stem: p for p in sorted(root.glob("*/*.yaml")) if not p.name.startswith("_")}


#: a build the refusal tests never make (they stop before any job)
CONFIG = ("{model_type: llama, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 1, "
          "num_attention_heads: 4, num_key_value_heads: 2}")


def _suite(path: Path, checkpoint: Path | None, tasks: list[Path]) -> Path:
    """A suite of the tiny build (``checkpoint``, or ``CONFIG`` when None) and ``tasks``."""
    entries = "\n".join(f"  - {{path: {t}, num_fewshot: 0}}" for t in tasks)
    build = f"checkpoint: {checkpoint}" if checkpoint else f"config: {CONFIG}"
    path.write_text(f"name: shapes\ndtype: float32\nmodels:\n  - {{name: tiny, {build}}}\ntasks:\n{entries}\n")
    return path


def harness(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


# ---------------------------------------------------------------- every shape, one real run

@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory, eval_tiny_checkpoint):
    """``(shapes, {task: evaluate record})``: one ``harness run`` of every shape on the tiny build,
    its own local daemon reading the folders from the copies shipped to it."""
    root = tmp_path_factory.mktemp("shapes")
    shapes = make_shapes(root / "tasks")
    out = root / "run"
    proc = harness("run", str(_suite(root / "suite.yaml", eval_tiny_checkpoint, list(shapes.values()))),
                   "--out", str(out))
    assert (out / "results.jsonl").is_file(), proc.stderr[-4000:]  # a failed job is its shape's test's failure
    records = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "evaluate":
            records[rec["task"]] = rec
    return shapes, records


@pytest.fixture(scope="module")
def hf_reference(shapes_run, eval_tiny_model):
    """lm-eval's own ``hf`` backend on the same files, one folder at a time, from inside the folder
    (where ``datasets`` reads a relative path): ``{task: result's samples}``."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    model, tok = eval_tiny_model
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=8, device="cpu")
    shapes, _ = shapes_run
    samples, here = {}, os.getcwd()
    for folder in sorted({p.parent for p in shapes.values()}):
        names = sorted(n for n, p in shapes.items() if p.parent == folder)
        os.chdir(folder)
        try:
            res = lm_eval.simple_evaluate(model=lm, tasks=names, num_fewshot=0, log_samples=True, bootstrap_iters=0,
                                          task_manager=TaskManager(include_path=str(folder), include_defaults=False),
                                          random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                                          fewshot_random_seed=0)
        finally:
            os.chdir(here)
        samples.update({n: res["samples"][n] for n in names})
    return samples


SHAPE_NAMES = ["abs_str", "abs_list", "abs_map", "rel_str", "rel_list", "rel_map", "dir_abs", "dir_rel",
               "ds_abs", "ds_rel", "inc_abs", "inc_rel", "fn"]
DOCS = {"abs_str": 3, "abs_list": 5, "abs_map": 4, "rel_str": 3, "rel_list": 5, "rel_map": 4, "dir_abs": 3,
        "dir_rel": 2, "ds_abs": 4, "ds_rel": 4, "inc_abs": 3, "inc_rel": 3, "fn": 3}


@pytest.mark.heavy  # tox -e heavy (.ci/run): one real run over 13 shapes and lm-eval hf on each, ~70 s
@pytest.mark.parametrize("name", SHAPE_NAMES)
def test_each_task_shape_runs_from_its_shipped_copy_as_lm_eval_hf_runs_it(shapes_run, hf_reference, name):
    """The shape's evaluate job is ok, read the task's own files (its document count) and equals
    lm-eval's hf backend document by document: the same text scored (log-likelihoods within 1e-4)."""
    from workers.evaluation.job import _samples

    shapes, records = shapes_run
    assert set(shapes) == set(SHAPE_NAMES)
    rec = records[name]
    assert rec["status"] == "ok", rec.get("error")
    got, want = rec["samples"][name], _samples(hf_reference[name])
    assert len(got) == len(want) == DOCS[name]
    for a, b in zip(got, want):
        assert a["target"] == b["target"] and a["acc"] == b["acc"], (name, a["doc_id"])
        assert len(a["loglikelihoods"]) == len(b["loglikelihoods"]) == 2
        for x, y in zip(a["loglikelihoods"], b["loglikelihoods"]):
            assert abs(x - y) <= 1e-4, (name, a["doc_id"], x, y)
    assert rec["metrics"][name]["acc"] == pytest.approx(sum(s["acc"] for s in want) / len(want))


def test_the_worker_reads_its_shipped_copy_not_the_original_folder_edited_since(tmp_path, eval_tiny_model):
    """The task's absolute include and data path name the original folder; the worker (its evaluate
    job, in this process) reads the files as they were shipped even when the originals changed
    after: the include's data (3 documents), not the edited include's (5) nor the edited file (7)."""
    import threading
    from types import SimpleNamespace

    from harness import plan as planner
    from harness.run import wire_spec
    from harness.suite import load as load_suite
    from workers.jobs import _evaluate

    folder = tmp_path / "mytask"
    _write(folder, {"test.jsonl": _docs(3, "shipped"), "other.jsonl": _docs(5, "other"),
                    "_base.yaml": f"dataset_path: json\ndataset_kwargs: {{data_files: {{test: {folder}/test.jsonl}}}}\n"
                                  f"test_split: test\n{MC}",
                    "t.yaml": f"include: {folder}/_base.yaml\ntask: t\n"})
    spec = next(j for j in planner.expand(load_suite(_suite(tmp_path / "s.yaml", None, [folder / "t.yaml"])))[1]
                if j.kind == "evaluate").spec
    sent = wire_spec(spec, {})
    (folder / "_base.yaml").write_text((folder / "_base.yaml").read_text().replace("test.jsonl", "other.jsonl"))
    (folder / "test.jsonl").write_text(_docs(7, "edited"))
    model, tok = eval_tiny_model
    loaded = SimpleNamespace(model=model, tokenizer=tok, path=None, variant=None, routing_session=None,
                             home=tmp_path / "worker")
    result = _evaluate(sent, loaded, lambda *a: None, threading.Event())
    assert [d["target"] for d in result["samples"]["t"]] == [i % 2 for i in range(3)]
    assert len(result["samples"]["t"]) == 3


# ---------------------------------------------------------------- refused by `harness plan`, in one line

REFUSED = [  # (what the task yaml says beyond its name, the key path refused, the path named)
    ("dataset_path: json\ndataset_kwargs: {{data_files: {{test: {outside}}}}}\n",
     "t.yaml.dataset_kwargs.data_files.test", "{outside}"),
    ("dataset_path: json\ndataset_kwargs: {{data_files: [ok.jsonl, ../private.jsonl]}}\n",
     "t.yaml.dataset_kwargs.data_files[1]", "../private.jsonl"),
    ("dataset_path: json\ndataset_kwargs: {{data_files: {{test: {sibling}/test.jsonl}}}}\n",  # a folder's name + 2
     "t.yaml.dataset_kwargs.data_files.test", "{sibling}/test.jsonl"),
    ("dataset_path: json\ndataset_kwargs: {{data_dir: {sibling}, data_files: {{test: test.jsonl}}}}\n",
     "t.yaml.dataset_kwargs.data_dir", "{sibling}"),
    ("dataset_path: {sibling}\n", "t.yaml.dataset_path", "{sibling}"),
    ("include: ../common.yaml\n", "t.yaml.include", "../common.yaml"),
    ("include: [ok.yaml, {shared}]\n", "t.yaml.include[1]", "{shared}"),
    ("include: ok.yaml\ndataset_kwargs: {{data_files: {{test: ../private.jsonl}}}}\n",  # the merged config
     "t.yaml.dataset_kwargs.data_files.test", "../private.jsonl"),
    ("dataset_path: json\n", "t.yaml.dataset_path", "json"),
    ("dataset_path: csv\ndataset_kwargs: {{split: test}}\n", "t.yaml.dataset_path", "csv"),
]


def _refused_suite(tmp_path: Path, body: str) -> tuple[Path, Path, dict]:
    """``(suite, task folder, fill)``: a suite of one task ``mytask/t.yaml`` saying ``body``."""
    folder = tmp_path / "mytask"
    sibling = tmp_path / "mytask2"  # shares the folder's name as a prefix: still another folder
    for f in (folder, sibling):
        f.mkdir()
        (f / "test.jsonl").write_text(_docs(2, "x"))
    (folder / "ok.yaml").write_text(f"dataset_path: json\ndataset_kwargs: {{data_files: {{test: test.jsonl}}}}\n{MC}")
    (tmp_path / "common.yaml").write_text("test_split: test\n")
    (tmp_path / "private.jsonl").write_text(_docs(2, "private"))
    fill = {"outside": tmp_path / "private.jsonl", "sibling": sibling, "shared": tmp_path / "common.yaml"}
    (folder / "t.yaml").write_text("task: t\ntest_split: test\n" + body.format(**fill) + MC)
    return _suite(tmp_path / "suite.yaml", None, [folder / "t.yaml"]), folder, fill


def _assert_refusal(line: str, key: str, named: str, folder: Path) -> None:
    assert line.startswith(f"harness: tasks[0].path: {key}: {named!r} "), line
    if key.endswith("include") or "include[" in key:
        assert "outside the task folder" in line and "copy the file into it" in line
    elif named in ("json", "csv"):
        assert "datasets builder" in line and "working directory" in line
    else:
        assert f"is outside the task folder {folder}; " in line


@pytest.mark.parametrize("body,key,named", REFUSED, ids=[r[1] + ":" + r[2].split("/")[-1] for r in REFUSED])
def test_a_path_the_worker_would_refuse_is_refused_by_harness_plan_in_one_line(tmp_path, capsys, body, key, named):
    """``harness plan`` (its command line, in this process): exit 2, one line naming the suite entry,
    the YAML key path and the offending path, nothing on stdout."""
    from harness.cli import main

    suite, folder, fill = _refused_suite(tmp_path, body)
    assert main(["plan", str(suite)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    _assert_refusal(err.strip(), key, named.format(**fill), folder)


def test_harness_plan_refuses_an_absolute_path_outside_the_task_folder_as_a_process(tmp_path):
    """The real ``harness plan`` process: exit 2, one line on stderr, nothing on stdout."""
    body, key, named = REFUSED[0]
    suite, folder, fill = _refused_suite(tmp_path, body)
    proc = harness("plan", str(suite), timeout=120)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    _assert_refusal(proc.stderr.strip(), key, named.format(**fill), folder)


def test_a_refused_task_stops_harness_run_before_its_run_folder_or_any_daemon(tmp_path):
    folder = tmp_path / "mytask"
    folder.mkdir()
    (folder / "t.yaml").write_text(f"task: t\ndataset_path: json\ntest_split: train\n{MC}")
    out = tmp_path / "run"
    proc = harness("run", str(_suite(tmp_path / "suite.yaml", None, [folder / "t.yaml"])),
                   "--out", str(out), timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "tasks[0].path: t.yaml.dataset_path: 'json' is a datasets builder" in proc.stderr
    assert not out.exists() and "starting" not in proc.stderr


# ---------------------------------------------------------------- the path logic, both sides

@pytest.fixture
def copy(tmp_path):
    """``(origin, root)``: a task folder as the user wrote it and the copy a worker reads."""
    origin, root = tmp_path / "home" / "me" / "tasks" / "mytask", tmp_path / "cache" / "tasks" / "0123abcd"
    for folder in (origin, root):
        _write(folder, {"test.jsonl": "{}\n", "data/a.jsonl": "{}\n", "data/b.jsonl": "{}\n", "sub/t.yaml": ""})
    return origin, root


def _both(config: dict, origin: Path, root: Path, sub: str = "") -> tuple[dict, dict]:
    """The plan's reading (in ``origin``) and the worker's (in the copy ``root``) of one YAML."""
    return (data_paths(config, origin / sub, root=origin),
            data_paths(config, root / sub, root=root, origin=origin))


@pytest.mark.parametrize("data_files,want", [
    ("{o}/test.jsonl", "{r}/test.jsonl"),
    (["{o}/data/a.jsonl", "data/b.jsonl"], ["{r}/data/a.jsonl", "{r}/data/b.jsonl"]),
    ({"test": "{o}/data/*.jsonl", "train": ["test.jsonl"]}, {"test": "{r}/data/*.jsonl", "train": ["{r}/test.jsonl"]}),
    ("../mytask/test.jsonl", "{r}/test.jsonl"),  # leaves the folder and comes back in by its name
    ("https://example.org/test.jsonl", "https://example.org/test.jsonl"),
])
def test_a_path_inside_the_task_folder_is_read_in_the_workers_copy(copy, data_files, want):
    origin, root = copy

    def fill(v, folder):
        if isinstance(v, str):
            return v.format(o=origin, r=folder)
        if isinstance(v, list):
            return [fill(x, folder) for x in v]
        return {k: fill(x, folder) for k, x in v.items()}

    config = {"task": "t", "dataset_path": "json", "dataset_kwargs": {"data_files": fill(data_files, None)}}
    plan, worker = _both(config, origin, root)
    assert plan["dataset_kwargs"]["data_files"] == fill(want, origin)
    assert worker["dataset_kwargs"]["data_files"] == fill(want, root)


def test_data_dir_and_a_dataset_folder_are_read_in_the_copy_and_files_relative_to_them_stay_relative(copy):
    origin, root = copy
    plan, worker = _both({"dataset_path": "json", "dataset_kwargs": {"data_dir": f"{origin}/data",
                                                                    "data_files": {"test": "a.jsonl"}}}, origin, root)
    assert worker["dataset_kwargs"] == {"data_dir": f"{root}/data", "data_files": {"test": "a.jsonl"}}
    assert plan["dataset_kwargs"]["data_dir"] == f"{origin}/data"
    plan, worker = _both({"dataset_path": f"{origin}/data", "dataset_kwargs": {"data_files": ["b.jsonl"]}}, origin, root)
    assert (plan["dataset_path"], worker["dataset_path"]) == (f"{origin}/data", f"{root}/data")
    assert worker["dataset_kwargs"]["data_files"] == ["b.jsonl"]
    plan, worker = _both({"dataset_path": "../data"}, origin, root, sub="sub")  # from a YAML in a subfolder
    assert (plan["dataset_path"], worker["dataset_path"]) == (f"{origin}/data", f"{root}/data")
    with pytest.raises(TaskFilesError, match=r"^t\.yaml\.dataset_kwargs\.data_files\[0\]: '\.\./\.\./x' is outside"):
        data_paths({"dataset_path": f"{origin}/data", "dataset_kwargs": {"data_files": ["../../x"]}},
                   root, root=root, origin=origin, where="t.yaml")


@pytest.mark.parametrize("value", ["{o}2/test.jsonl", "{o}/../other/test.jsonl", "../mytask2/test.jsonl", "{r}/test.jsonl"])
def test_a_path_outside_the_task_folder_is_refused_on_both_sides_naming_the_users_folder(copy, value):
    """A folder whose name starts with the task folder's is another folder; on the worker the cache
    copy itself is not the task folder the YAML names either."""
    origin, root = copy
    value = value.format(o=origin, r=root)
    config = {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": value}}}
    for side in ({"folder": origin, "root": origin}, {"folder": root, "root": root, "origin": origin}):
        if side["root"] == origin and value.startswith(str(root)):
            continue  # the plan side has no copy: that value is just a path outside
        with pytest.raises(TaskFilesError) as info:
            data_paths(config, side.pop("folder"), where="t.yaml", **side)
        assert str(info.value).startswith(f"t.yaml.dataset_kwargs.data_files.test: {value!r} is outside the "
                                          f"task folder {origin}; ")
    assert data_paths(config, origin, outside_ok=True)["dataset_kwargs"]["data_files"]["test"] == \
        os.path.normpath(value if os.path.isabs(value) else origin / value)


@pytest.mark.parametrize("config,refused", [
    ({"dataset_path": "json"}, True),
    ({"dataset_path": "parquet", "dataset_kwargs": {"split": "test"}}, True),
    ({"dataset_path": "json", "dataset_kwargs": {"data_files": {}}}, True),
    ({"dataset_path": "json", "dataset_kwargs": {"data_files": "test.jsonl"}}, False),
    ({"dataset_path": "json", "dataset_kwargs": {"data_dir": "data"}}, False),
    ({"dataset_path": "json", "custom_dataset": None}, False),  # lm-eval calls the function instead
    ({"dataset_path": "gsm8k"}, False),  # a hub dataset by its bare name
    ({"dataset_path": "EleutherAI/arc"}, False),
])
def test_a_builder_with_no_files_named_is_refused_rather_than_reading_the_working_directory(copy, config, refused):
    origin, _ = copy
    if refused:
        with pytest.raises(TaskFilesError, match=rf"^t\.yaml\.dataset_path: '{config['dataset_path']}' is a datasets "
                                                 r"builder .* working directory"):
            data_paths(config, origin, where="t.yaml")
    else:
        data_paths(config, origin, where="t.yaml")


def test_the_builders_are_the_packaged_builders_of_the_installed_datasets():
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    assert set(_PACKAGED_DATASETS_MODULES) <= taskfiles.BUILDERS, set(_PACKAGED_DATASETS_MODULES) - taskfiles.BUILDERS


def test_includes_merge_as_lm_eval_merges_them(tmp_path):
    """``with_includes`` (the plan's reading) against lm-eval's own loader on the same files."""
    from lm_eval.tasks._yaml_loader import load_yaml

    import yaml

    folder = tmp_path / "mytask"
    _write(folder, {"a.yaml": "x: 1\ny: 1\ntask_list: [q]\n", "sub/b.yaml": "include: ../a.yaml\ny: 2\nz: 2\n",
                    "t.yaml": f"include: [sub/b.yaml, {folder}/c.yaml]\ntask: t\nz: 3\n", "c.yaml": "w: 4\nx: 4\n"})
    ours = with_includes(folder / "t.yaml", lambda p: yaml.safe_load(p.read_text()))
    assert ours == load_yaml(folder / "t.yaml", resolve_func=False) == {"x": 4, "y": 2, "z": 3, "w": 4, "task": "t"}
    (folder / "c.yaml").write_text("include: t.yaml\n")
    with pytest.raises(TaskFilesError, match=r"^task\.include\[1\]\.include: 't\.yaml' includes itself again"):
        with_includes(folder / "t.yaml", lambda p: yaml.safe_load(p.read_text()))


def test_an_include_inside_the_folder_ships_relative_to_its_yaml_and_the_digest_covers_it(tmp_path):
    """lm-eval reads includes itself, so the shipped bytes name the sibling: everything else in the
    file (comments, tags, quoting) byte for byte; an include outside the folder is left as written."""
    from moe_schema.taskfiles import bundle, folder_digest, unpack

    folder = tmp_path / "mytask"
    text = (f"# mine\ninclude: {folder}/_base.yaml   # the prompt\ntask: t\nprocess_docs: !function utils.p\n")
    _write(folder, {"_base.yaml": "test_split: test\n", "t.yaml": text, "utils.py": "def p(d): return d\n",
                    "sub/s.yaml": f"include:\n  - '{folder}/_base.yaml'\n  - ../../elsewhere.yaml\n  - ../sub/x.yaml\n"})
    assert portable_includes(text.encode(), folder, folder) == \
        b'# mine\ninclude: "_base.yaml"   # the prompt\ntask: t\nprocess_docs: !function utils.p\n'
    shipped = bundle(folder / "t.yaml")
    assert shipped["sub/s.yaml"] == b'include:\n  - "../_base.yaml"\n  - ../../elsewhere.yaml\n  - "x.yaml"\n'
    assert shipped["utils.py"] == (folder / "utils.py").read_bytes()
    for plain in (b"include: _base.yaml\n", b"task: [unclosed\n", b"\xff\xfe", b"- a\n"):
        assert portable_includes(plain, folder, folder) == plain
    digest = folder_digest(folder / "t.yaml")[0]
    path = unpack(shipped, digest, "t.yaml", tmp_path / "home")
    assert folder_digest(path)[0] == digest  # the copy is already portable


@pytest.mark.parametrize("origin,path_set,ok", [("/data/me/tasks/mytask", True, True), ("tasks/mytask", True, False),
                                                ("/data/me/tasks/mytask", False, False), (7, True, False)])
def test_the_worker_takes_a_tasks_origin_only_as_an_absolute_folder_of_a_local_task(tmp_path, origin, path_set, ok):
    from workers.errors import JobError
    from workers.evaluation.job import check_job

    (tmp_path / "t.yaml").write_text("task: t\n")
    task = {"name": "t", "path": str(tmp_path / "t.yaml") if path_set else None, "limit": None, "num_fewshot": None,
            "origin": origin}
    if ok:
        assert check_job({"task": task})[0]["origin"] == origin
    else:
        with pytest.raises(JobError, match=r"^job\.task\.origin: expected the absolute folder a local task was "
                                           r"shipped from, got "):
            check_job({"task": task})
