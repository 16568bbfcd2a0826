"""What `harness plan`/`harness run` expand a suite into, exactly: the variants, every job's spec,
its key, what it waits for and where it runs.

Job keys name result files, so a later run reuses a result only when its key is the same. A change
that alters what a job computes must change its key, and a change that does not must keep it:
otherwise a run silently reuses a stale result, or silently recomputes everything. The golden file
tests/data/plan_golden.json holds the whole expansion of one suite that uses every part of the
planner (training over two seeds, eval-only routing on the trained checkpoint, a sharded task, a
routing probe that a dense build skips). When it fails and the change was meant, look at the diff,
then bump ``harness.plan.RESULT_SCHEMA`` if old results must stop matching, and rewrite the file:

    PYTHONPATH=. python -c "import tests.test_plan_expand as t; t.write_golden()"
"""

from __future__ import annotations

import copy
import json
from importlib import metadata
from pathlib import Path

import pytest

from harness import __version__
from harness import plan as planner
from harness.suite import parse
from moe_schema.train import trained_build

GOLDEN = Path(__file__).parent / "data" / "plan_golden.json"
VERSIONS = {"moe-harness": "0", "result_schema": "1", "torch": "t", "transformers": "x", "lm_eval": "l"}

MOE = {"model_type": "olmoe", "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
       "num_attention_heads": 2, "num_experts": 4, "num_experts_per_tok": 2}
SUITE = {
    "name": "plan-golden",
    "seed": 3,
    "corpus": {"kind": "knowledge", "entities": 20, "tokens": 2000, "eval_per_bucket": 2},
    "train": {"tokens": 1024, "batch_size": 2, "seq_len": 16, "seeds": [1, 2]},
    "models": [
        {"name": "moe", "config": MOE, "routing": ["native"], "eval_routing": [{"name": "topk", "k": 1}]},
        {"name": "dense", "derive": {"from": "moe", "match": "active"}},
    ],
    "tasks": [{"corpus": "longtail_heldout"}, {"corpus": "longtail_values", "shards": 2}],
    "probes": ["routing", {"name": "latency", "repeats": 2}],
    "eval": {"max_batch_tokens": 4096},
}


@pytest.fixture
def fixed_versions(monkeypatch):
    """The job keys without the installed packages' versions in them (the same on every machine)."""
    monkeypatch.setattr(planner, "package_versions", lambda: dict(VERSIONS))


def _expansion() -> dict:
    vs, jobs = planner.expand(parse(copy.deepcopy(SUITE)), VERSIONS)
    return {"variants": vs,
            "jobs": [{"key": j.key, "after": j.after, "affinity": j.affinity, "summary": j.summary(), "spec": j.spec}
                     for j in jobs]}


def write_golden() -> None:
    GOLDEN.write_text(json.dumps(_expansion(), indent=1, sort_keys=True) + "\n")


def test_the_whole_expansion_matches_the_golden_file():
    got = json.loads(json.dumps(_expansion()))  # tuples as lists, as the file has them
    want = json.loads(GOLDEN.read_text())
    assert got["variants"] == want["variants"]
    assert len(got["jobs"]) == len(want["jobs"])
    for i, (g, w) in enumerate(zip(got["jobs"], want["jobs"])):
        assert g == w, f"jobs[{i}] ({w['summary']}) differs from the golden file"


def test_each_trained_variant_waits_for_its_own_seeds_train_job(fixed_versions):
    _, jobs = planner.expand(parse(copy.deepcopy(SUITE)))
    trains = {j.variant: j for j in jobs if j.kind == "train"}
    assert sorted(trains) == ["dense#s1", "dense#s2", "moe#s1", "moe#s2"]
    assert all(j.after is None for j in trains.values())
    for j in jobs:
        if j.kind == "train":
            continue
        seed = j.variant.rsplit("#s", 1)[1]
        base = "dense" if j.spec["variant"]["model"] == "dense" else "moe"
        train = trains[f"{base}#s{seed}"]
        assert j.after == train.key, j.summary()
        # it uses the checkpoint that train job writes, seeded as that job was
        assert j.spec["variant"]["build"] == trained_build(train.spec)
        assert j.spec["variant"]["train_seed"] == int(seed) == train.spec["seed"]
        assert j.spec["variant"]["build"] != train.spec["variant"]["build"]


def test_eval_routing_is_not_trained_and_shares_the_models_checkpoint(fixed_versions):
    _, jobs = planner.expand(parse(copy.deepcopy(SUITE)))
    trained = [j.variant for j in jobs if j.kind == "train"]
    assert not any("@" in v for v in trained)
    by_name = {j.variant: j for j in jobs if j.kind == "describe"}
    for seed in (1, 2):
        native, topk = by_name[f"moe#s{seed}"], by_name[f"moe@topk(k=1)#s{seed}"]
        assert native.spec["variant"]["build"] == topk.spec["variant"]["build"]
        assert native.affinity == topk.affinity  # one worker loads the checkpoint once for both
        assert topk.spec["variant"]["routing"] == {"name": "topk", "params": {"k": 1}}
        assert native.spec["variant"]["routing"] == {"name": "native", "params": {}}
        assert "_eval_of" not in topk.spec["variant"]


def test_a_sharded_task_gives_one_job_per_shard_grouped_under_the_unsplit_key(fixed_versions):
    _, jobs = planner.expand(parse(copy.deepcopy(SUITE)))
    shards = [j for j in jobs if "shard" in j.spec]
    assert len(shards) == 6 * 2  # six variants, two shards each
    assert {(j.spec["shard"]["index"], j.spec["shard"]["count"]) for j in shards} == {(0, 2), (1, 2)}
    assert all(j.summary()["shard"] == j.spec["shard"] for j in shards)
    groups = planner.shard_groups(jobs, VERSIONS)
    assert planner.shard_groups(jobs) == groups  # fixed_versions: the installed versions are VERSIONS here
    assert len(groups) == 6 and all(len(g) == 2 for g in groups.values())
    for key, group in groups.items():
        whole = {k: v for k, v in group[0].spec.items() if k != "shard"}
        assert key == planner.job_key(whole, VERSIONS)
        assert {j.variant for j in group} == {group[0].variant}
        assert [j.spec["shard"]["index"] for j in group] == [0, 1]
    unsplit = [j for j in jobs if j.kind == "evaluate" and "shard" not in j.spec]
    assert not ({j.key for j in unsplit} & set(groups))
    assert planner.shard_groups([j for j in jobs if "shard" not in j.spec]) == {}


def test_keys_are_made_under_the_versions_given_and_else_the_installed_ones():
    suite = parse(copy.deepcopy(SUITE))
    _, given = planner.expand(suite, VERSIONS)
    _, installed = planner.expand(suite)
    assert not ({j.key for j in given} & {j.key for j in installed})
    assert [j.key for j in installed] == [planner.job_key(j.spec, planner.package_versions()) for j in installed]
    assert [j.key for j in given] == [planner.job_key(j.spec, VERSIONS) for j in given]
    # a job waits for its train job's key under the same versions
    trains = {j.key for j in given if j.kind == "train"}
    assert {j.after for j in given if j.kind != "train"} == trains
    whole = {k: v for k, v in next(j for j in given if "shard" in j.spec).spec.items() if k != "shard"}
    assert planner.job_key(whole, VERSIONS) in planner.shard_groups(given, VERSIONS)
    assert planner.job_key(whole, VERSIONS) not in planner.shard_groups(given)


def test_a_dense_build_gets_no_routing_probe_but_every_other_probe(fixed_versions):
    _, jobs = planner.expand(parse(copy.deepcopy(SUITE)))
    probes = [(j.variant, j.summary()["probe"]) for j in jobs if j.kind == "probe"]
    assert ("dense#s1", "routing") not in probes and ("dense#s1", "latency") in probes
    assert ("moe#s1", "routing") in probes and ("moe@topk(k=1)#s2", "routing") in probes
    latency = next(j for j in jobs if j.kind == "probe" and j.summary()["probe"] == "latency")
    assert latency.spec["probe"]["params"]["repeats"] == 2
    assert latency.spec["seed"] == 3


def test_summary_names_what_a_person_reads_in_plan_json():
    spec = {"kind": "evaluate", "variant": {"name": "m@r", "model": "m"}, "task": {"name": "t"},
            "shard": {"index": 1, "count": 3}}
    job = planner.PlannedJob("k", spec, "a")
    assert job.summary() == {"key": "k", "kind": "evaluate", "variant": "m@r", "model": "m", "task": "t",
                             "shard": {"index": 1, "count": 3}}
    probe = planner.PlannedJob("k2", {"kind": "probe", "variant": {"name": "m", "model": "m"},
                                      "probe": {"name": "latency", "params": {}}}, "a")
    assert probe.summary() == {"key": "k2", "kind": "probe", "variant": "m", "model": "m", "probe": "latency"}
    describe = planner.PlannedJob("k3", {"kind": "describe", "variant": {"name": "m", "model": "m"}}, "a")
    assert describe.summary() == {"key": "k3", "kind": "describe", "variant": "m", "model": "m"}
    assert describe.after is None


def test_a_checkpoint_build_is_not_trained_even_in_a_training_suite(tmp_path, fixed_versions):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "llama"}))
    data = copy.deepcopy(SUITE)
    data["models"].append({"name": "local", "checkpoint": str(ckpt)})
    data["probes"] = []
    vs, jobs = planner.expand(parse(data))
    local = [v for v in vs if v["model"] == "local"]
    assert [v["name"] for v in local] == ["local"]  # no seed suffix: it is not trained per seed
    assert "trained" not in local[0]["build"] and "train_seed" not in local[0]
    assert not any(j.kind == "train" and j.spec["variant"]["model"] == "local" for j in jobs)
    assert all(j.after is None for j in jobs if j.spec["variant"]["model"] == "local")


def test_one_train_seed_keeps_the_plain_names(fixed_versions):
    data = copy.deepcopy(SUITE)
    data["train"]["seeds"] = [4]
    vs, jobs = planner.expand(parse(data))
    assert [v["name"] for v in vs] == ["moe", "moe@topk(k=1)", "dense"]
    trains = [j for j in jobs if j.kind == "train"]
    assert [j.spec["seed"] for j in trains] == [4, 4]
    assert [j.spec["variant"]["build"]["seed"] for j in trains] == [4, 4]


def test_the_train_spec_is_the_suites_train_section_overridden_by_the_models(fixed_versions):
    data = copy.deepcopy(SUITE)
    data["models"][0]["train"] = {"lr": 0.001}
    _, jobs = planner.expand(parse(data))
    moe, dense = (next(j for j in jobs if j.kind == "train" and j.spec["variant"]["model"] == m)
                  for m in ("moe", "dense"))
    assert moe.spec["train"]["lr"] == 0.001 and dense.spec["train"]["lr"] != 0.001
    assert moe.spec["train"]["tokens"] == dense.spec["train"]["tokens"] == 1024
    assert moe.spec["corpus"] == dense.spec["corpus"] and moe.spec["corpus"]["entities"] == 20
    assert moe.spec["kind"] == "train" and set(moe.spec) == {"kind", "variant", "train", "corpus", "seed"}


def test_untrained_suite_variants_and_evaluate_specs():
    data = {"name": "u", "seed": 9, "eval": {"max_batch_tokens": 2048},
            "models": [{"name": "moe", "config": MOE, "routing": ["native", {"name": "topk", "k": 1}],
                        "dtype": "bfloat16"}],
            "tasks": [{"name": "arc_easy", "limit": 5, "num_fewshot": 1}]}
    vs, jobs = planner.expand(parse(data))
    assert vs == [
        {"name": "moe", "model": "moe", "build": {"config": MOE, "seed": 9}, "routing": {"name": "native", "params": {}},
         "dtype": "bfloat16", "trust_remote_code": False, "experts_implementation": None, "sweep": {}},
        {"name": "moe@topk(k=1)", "model": "moe", "build": {"config": MOE, "seed": 9},
         "routing": {"name": "topk", "params": {"k": 1}},
         "dtype": "bfloat16", "trust_remote_code": False, "experts_implementation": None, "sweep": {}},
    ]
    evaluate = [j for j in jobs if j.kind == "evaluate"]
    assert evaluate[0].spec == {"kind": "evaluate", "variant": vs[0], "seed": 9, "eval": {"max_batch_tokens": 2048},
                                "task": {"name": "arc_easy", "path": None, "limit": 5, "num_fewshot": 1}}
    assert [j.kind for j in jobs] == ["describe", "describe", "evaluate", "evaluate"]
    assert jobs[0].spec == {"kind": "describe", "variant": vs[0]}


def test_a_native_routing_with_parameters_is_named_for_them():
    from harness.suite import ModelSpec, RoutingSpec

    model = ModelSpec(name="m", build={"config": {}}, routing=(), dtype="float32", family="olmoe", moe=True)
    assert planner.variant_name(model, None) == "m"
    assert planner.variant_name(model, RoutingSpec("native", {})) == "m"
    assert planner.variant_name(model, RoutingSpec("native", {"k": 1}, "native(k=1)")) == "m@native(k=1)"
    assert planner.variant_name(model, RoutingSpec("topk", {}, "topk")) == "m@topk"
    assert planner.variant_spec(model, None)["routing"] is None


def test_a_local_tasks_key_follows_its_files(tmp_path):
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "t.yaml").write_text("task: t\ndataset_path: json\ndataset_kwargs: {data_files: data.jsonl}\n")
    data = {"name": "l", "models": [{"name": "m", "config": MOE}], "tasks": [{"path": str(folder / "t.yaml")}]}
    _, before = planner.expand(parse(data))
    (folder / "data.jsonl").write_text('{"x": 1}\n')
    _, after = planner.expand(parse(data))
    ev = [j for j in before if j.kind == "evaluate"][0]
    assert ev.spec["task"]["digest"] and ev.spec["task"]["path"] == str(folder / "t.yaml")
    assert [j.key for j in before if j.kind == "evaluate"] != [j.key for j in after if j.kind == "evaluate"]
    assert [j.key for j in before if j.kind == "describe"] == [j.key for j in after if j.kind == "describe"]
    registered = planner.task_dict(parse({"name": "r", "models": [{"name": "m", "config": MOE}],
                                          "tasks": [{"name": "arc_easy"}]}).tasks[0])
    assert "digest" not in registered


def test_job_keys_change_with_the_versions_and_default_to_the_installed_ones():
    spec = {"kind": "describe", "variant": {"name": "m"}}
    assert planner.job_key(spec, VERSIONS) == planner.job_key(spec, dict(VERSIONS))
    assert planner.job_key(spec, VERSIONS) != planner.job_key(spec, {**VERSIONS, "torch": "other"})
    assert planner.job_key(spec) == planner.job_key(spec, planner.package_versions())
    assert planner.job_key(spec) != planner.job_key(spec, VERSIONS)
    assert planner.job_key(spec, VERSIONS) != planner.job_key({**spec, "kind": "evaluate"}, VERSIONS)
    assert len(planner.job_key(spec)) == 24


def test_package_versions_read_the_installed_distributions(monkeypatch):
    versions = planner.package_versions()
    assert versions["moe-harness"] == __version__
    assert versions["result_schema"] == str(planner.RESULT_SCHEMA)
    assert versions["torch"] == metadata.version("torch")
    assert versions["lm_eval"] == metadata.version("lm-eval")  # the distribution's name has a dash
    assert versions["transformers"] == metadata.version("transformers")
    monkeypatch.setattr(planner, "_VERSION_PACKAGES", ("torch", "no_such_package_xyz"))
    assert planner.package_versions()["no_such_package_xyz"] == "absent"
    assert set(planner.package_versions()) == {"moe-harness", "result_schema", "torch", "no_such_package_xyz"}


def test_plan_document_holds_what_plan_json_promises(fixed_versions):
    data = copy.deepcopy(SUITE)
    data["sweep"] = {"train.tokens": [1024, 2048]}
    data["pairing"] = {"tolerance": 0.05}
    suite = parse(data)
    vs, jobs = planner.expand(suite)
    doc = planner.plan_document(suite, vs, jobs, pairs=[{"moe": "a"}])
    assert doc["suite"] == "plan-golden"
    assert doc["versions"] == VERSIONS
    assert doc["pairing"] == {"tolerance": 0.05}
    assert doc["sweep"] == {"settings": {"train.tokens": [1024, 2048]},
                            "points": [{"train.tokens": 1024}, {"train.tokens": 2048}]}
    assert doc["variants"] == vs
    assert doc["jobs"] == [j.summary() for j in jobs]
    assert doc["pairs"] == [{"moe": "a"}]
    plain = planner.plan_document(parse(copy.deepcopy(SUITE)), [], [])
    assert plain["pairs"] == [] and plain["sweep"] == {"settings": {}, "points": []}
    assert plain["pairing"] == {"tolerance": 0.10}


def test_a_task_folder_too_big_to_ship_is_named_with_its_size(tmp_path, monkeypatch):
    import moe_schema.taskfiles as taskfiles

    big, small = tmp_path / "big", tmp_path / "small"
    for folder in (big, small):
        folder.mkdir()
        (folder / "t.yaml").write_text("task: t\n")
    (big / "data.bin").write_bytes(b"x" * 3000)
    monkeypatch.setattr(taskfiles, "SHIP_LIMIT", 2048)
    data = {"name": "s", "models": [{"name": "m", "config": MOE}],
            "tasks": [{"path": str(small / "t.yaml")}, {"path": str(big / "t.yaml")}, {"name": "arc_easy"}]}
    lines = planner.unshippable_tasks(parse(data))
    size = taskfiles.folder_bytes(str(big / "t.yaml"))
    assert lines == [f"tasks[1] ({big / 't.yaml'}): its folder holds {planner._size(size)}, over the 2 KiB "
                     "that travel with a job"]


@pytest.mark.parametrize("n, text", [(1024, "1 KiB"), (1536, "1.5 KiB"), (2**20 - 1, "1024.0 KiB"),
                                     (2**20, "1 MiB"), (16 * 2**20, "16 MiB"), (int(2.25 * 2**20), "2.2 MiB"),
                                     (512, "0.5 KiB")])
def test_sizes_read_in_kib_below_a_mib_and_mib_above(n, text):
    assert planner._size(n) == text


def test_eval_routing_uses_the_checkpoint_trained_under_the_first_routing_whatever_it_is():
    data = copy.deepcopy(SUITE)
    data["models"][0]["routing"] = [{"name": "topk", "k": 1}, "native"]
    data["models"][0]["eval_routing"] = ["random"]
    data["probes"] = []
    _, jobs = planner.expand(parse(data), VERSIONS)
    trains = {j.variant: j for j in jobs if j.kind == "train"}
    assert sorted(trains) == ["dense#s1", "dense#s2", "moe#s1", "moe#s2", "moe@topk(k=1)#s1", "moe@topk(k=1)#s2"]
    random = next(j for j in jobs if j.kind == "describe" and j.variant == "moe@random#s2")
    assert random.after == trains["moe@topk(k=1)#s2"].key
    assert random.spec["variant"]["build"] == trained_build(trains["moe@topk(k=1)#s2"].spec)


def test_a_checkpoint_listed_first_does_not_stop_the_others_training(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({"model_type": "llama"}))
    data = copy.deepcopy(SUITE)
    data["models"].insert(0, {"name": "local", "checkpoint": str(ckpt)})
    data["probes"] = []
    vs, jobs = planner.expand(parse(data), VERSIONS)
    assert [v["name"] for v in vs] == ["local", "moe#s1", "moe#s2", "moe@topk(k=1)#s1", "moe@topk(k=1)#s2",
                                       "dense#s1", "dense#s2"]
    assert sorted(j.variant for j in jobs if j.kind == "train") == ["dense#s1", "dense#s2", "moe#s1", "moe#s2"]


def test_a_local_tasks_key_changes_with_its_content_not_only_its_size(tmp_path):
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "t.yaml").write_text("task: t\n")
    (folder / "data.jsonl").write_text('{"x": 1}\n')
    task = parse({"name": "l", "models": [{"name": "m", "config": MOE}], "tasks": [{"path": str(folder / "t.yaml")}]}).tasks[0]
    before = planner.task_dict(task)
    (folder / "data.jsonl").write_text('{"x": 2}\n')  # same size
    after = planner.task_dict(task)
    assert before["digest"] != after["digest"] and isinstance(before["digest"], str) and len(before["digest"]) >= 16


def test_a_task_folder_exactly_at_the_limit_still_ships(tmp_path, monkeypatch):
    import moe_schema.taskfiles as taskfiles

    folder = tmp_path / "t"
    folder.mkdir()
    (folder / "t.yaml").write_text("task: t\n")
    monkeypatch.setattr(taskfiles, "SHIP_LIMIT", taskfiles.folder_bytes(str(folder / "t.yaml")))
    data = {"name": "s", "models": [{"name": "m", "config": MOE}], "tasks": [{"path": str(folder / "t.yaml")}]}
    assert planner.unshippable_tasks(parse(data)) == []
    monkeypatch.setattr(taskfiles, "SHIP_LIMIT", taskfiles.SHIP_LIMIT - 1)
    assert len(planner.unshippable_tasks(parse(data))) == 1
