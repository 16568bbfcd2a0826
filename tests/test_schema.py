"""One validation style (moe_schema.check): the suite parser and the worker run the same checks and
name the same bad value, each at its own path; one did-you-mean; fractional task limits are refused
where the suite is read."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.suite import SuiteError, parse
from moe_schema.check import SchemaError, did_you_mean, known_keys
from moe_schema.corpus import CorpusError, check_corpus
from moe_schema.train import TrainSpecError, check_train

REPO = Path(__file__).resolve().parent.parent
SUITE = {"name": "t", "models": [{"name": "dense", "config": {"model_type": "llama", "hidden_size": 32}}],
         "tasks": []}


def _suite_error(**changes) -> SchemaError:
    with pytest.raises(SuiteError) as info:
        parse({**SUITE, **changes})
    return info.value


def test_schema_errors_carry_path_and_message():
    err = SchemaError("train.lr", "must be > 0")
    assert (err.path, err.message, str(err)) == ("train.lr", "must be > 0", "train.lr: must be > 0")
    assert SchemaError("corpus.zipf: expected a number >= 0, got -1").path == "corpus.zipf"
    assert SchemaError("no path here").path == ""
    assert issubclass(CorpusError, SchemaError) and issubclass(TrainSpecError, SchemaError)
    assert SuiteError is SchemaError  # the suite's errors are the shared ones, nothing is re-parsed from strings
    with pytest.raises(SchemaError) as info:
        known_keys("eval", {"max_batch_tokns": 1}, ["max_batch_tokens", "prefix_sharing"])
    assert str(info.value) == ("eval.max_batch_tokns: unknown key (did you mean 'max_batch_tokens'?); "
                               "known: max_batch_tokens, prefix_sharing")
    assert did_you_mean("topq", ["topk", "topp", "native"]) in (" (did you mean 'topk'?)", " (did you mean 'topp'?)")
    assert did_you_mean("zzz", ["topk"]) == ""


def test_fractional_limit_is_refused_when_the_suite_is_read(tmp_path):
    # it once passed here and then failed every evaluate job on the workers (8 of 8 on the smoke suite)
    err = _suite_error(tasks=[{"name": "x", "limit": 10}, {"name": "y", "limit": 0.5}])
    assert err.path == "tasks[1].limit" and "whole number of documents, got 0.5" in err.message
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({**SUITE, "tasks": [{"name": "y", "limit": 0.5}]}))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "plan", str(suite)], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert proc.returncode == 2
    assert [line for line in proc.stderr.splitlines() if line.strip()] == [
        "harness: tasks[0].limit: expected a whole number of documents, got 0.5 (a fraction of a task is not "
        "supported: evaluate jobs sample, shard and merge whole documents)"]


@pytest.mark.parametrize("limit", [0.5, 0, -3, True, "10"])
def test_the_worker_refuses_the_limits_the_suite_refuses(limit):
    from workers.errors import JobError
    from workers.evaluation.job import check_job

    suite_error = _suite_error(tasks=[{"name": "x", "limit": limit}])
    with pytest.raises(JobError) as info:
        check_job({"task": {"name": "x", "path": None, "limit": limit, "num_fewshot": None}})
    assert suite_error.path == "tasks[0].limit"
    assert info.value.message == f"job.task.limit: {suite_error.message}"


@pytest.mark.parametrize("config", [
    {"model_type": "llama", "hiden_size": 32},
    {"model_type": "lama"},
    {"model_type": "llama", "hidden_size": "big"},
    {"model_type": "llama", "num_hidden_layers": 0},
    {"hidden_size": 32},
])
def test_suite_and_worker_say_the_same_about_a_bad_config(config):
    from workers.builds.spec import check_variant
    from workers.errors import JobError

    suite_error = _suite_error(models=[{"name": "m", "config": config}])
    with pytest.raises(JobError) as info:
        check_variant({"build": {"config": config, "seed": 0}})
    worker_path, _, worker_message = info.value.message.partition(": ")
    assert suite_error.path.removeprefix("models[0].config") == worker_path.removeprefix("variant.build.config")
    assert suite_error.message == worker_message


def test_corpus_and_train_errors_keep_their_yaml_paths():
    with pytest.raises(SuiteError) as info:
        check_corpus({"kind": "knowledge", "zipf": -1}, where="corpus")
    assert info.value.path == "corpus.zipf"
    with pytest.raises(SuiteError) as info:
        check_train({"lr": 0}, where="models[3].train")
    assert info.value.path == "models[3].train"


def test_there_is_one_did_you_mean():
    """Only moe_schema/check.py asks difflib for close matches."""
    users = []
    for package in ("harness", "moe_schema", "workers"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) else [])
                if "difflib" in names:
                    users.append(str(path.relative_to(REPO)))
    assert users == ["moe_schema/check.py"]


@pytest.mark.parametrize("entry", [
    {"name": "latency", "batch_sizes": [1, 0]},
    {"name": "latency", "batchsizes": [1]},
    {"name": "throughput", "compile": "graph"},
    {"name": "latncy"},
])
def test_suite_and_worker_say_the_same_about_a_bad_probe(entry):
    from workers.errors import JobError
    from workers.probes.job import run as probe_run

    suite_error = _suite_error(probes=[entry])
    params = {k: v for k, v in entry.items() if k != "name"}
    with pytest.raises(JobError) as info:
        probe_run({"kind": "probe", "probe": {"name": entry["name"], "params": params}}, None, None, None)
    assert suite_error.path.startswith("probes[0]")
    assert info.value.message == "probe" + str(suite_error).removeprefix("probes[0]")


@pytest.mark.parametrize("options", [{"max_batch_tokns": 512}, {"prefix_sharing": "yes"}, {"bootstrap_iters": 1.5}])
def test_bad_eval_options_are_refused_when_the_suite_is_read(options):
    # they once passed the suite and failed every evaluate job on the workers
    from workers.errors import JobError
    from workers.evaluation.job import check_job

    suite_error = _suite_error(eval=options)
    assert suite_error.path.startswith("eval.")
    with pytest.raises(JobError) as info:
        check_job({"task": {"name": "x", "path": None, "limit": None, "num_fewshot": None}, "eval": options})
    assert info.value.message == "job." + str(suite_error)


@pytest.mark.parametrize("suite_file", sorted(p.name for p in (REPO / "suites").glob("*.yaml")))
def test_every_variant_the_planner_makes_passes_the_workers_variant_check(suite_file):
    """The planner (harness) and the worker's check (moe_schema.variant) agree on what a variant is."""
    from harness import plan
    from harness.suite import load
    from moe_schema.variant import check_variant

    suite = load(REPO / "suites" / suite_file)
    variants, jobs = plan.expand(suite)
    for job in jobs:
        check_variant(job.spec["variant"])
    assert variants and jobs


@pytest.mark.parametrize("section, typo, worker_check", [
    ("tasks", {"name": "x", "fewshot": 1}, "evaluate"),
    ("train", {"batch_sise": 4}, "train"),
    ("corpus", {"kind": "knowledge", "entites": 50}, "corpus"),
])
def test_the_worker_names_an_unknown_key_as_the_suite_parser_does(section, typo, worker_check):
    """Both sides refuse an unknown key through moe_schema.check.known_keys: at the key's own path,
    with did-you-mean (the worker's checks once said ``job.task: unknown key(s) fewshot``)."""
    from moe_schema.corpus import check_corpus
    from moe_schema.train import check_train
    from workers.errors import JobError
    from workers.evaluation.job import check_job

    corpus = {"kind": "knowledge", "entities": 50, "tokens": 5000}
    changes = {"tasks": {"tasks": [typo]}, "train": {"train": typo, "corpus": corpus},
               "corpus": {"corpus": typo, "train": {"tokens": 5000}}}[section]
    suite_error = _suite_error(**changes)
    key = next(k for k in typo if k not in ("name", "kind"))
    if worker_check == "evaluate":
        with pytest.raises(JobError) as info:
            check_job({"task": {"path": None, "limit": None, "num_fewshot": None, **typo}})
        worker_path, _, worker_message = info.value.message.partition(": ")
    else:
        check = check_train if worker_check == "train" else check_corpus
        with pytest.raises(SchemaError) as info:
            check(typo, where=f"job.{worker_check}")
        worker_path, worker_message = info.value.path, info.value.message
    assert suite_error.path.endswith(f".{key}") and worker_path.endswith(f".{key}")
    assert "(did you mean" in suite_error.message
    # the same words up to the list of known keys (a suite's task map has more: corpus, shards)
    assert worker_message.split("; known:")[0] == suite_error.message.split("; known:")[0]


def test_one_structurer_for_plugin_parameters():
    """harness/suite.py keeps no structurer of its own: routing entries go through moe_schema's."""
    import harness.suite as suite

    assert not hasattr(suite, "structure") and not hasattr(suite, "_type_ok")
    from moe_schema.routing import routing_config

    with pytest.raises(SchemaError) as info:
        routing_config("topk", {"k": "four"}, "models[0].routing[0]")
    assert str(info.value) == "models[0].routing[0].k: expected int, got 'four'"
