"""Every way `harness run` refuses a suite file, with the exact one-line message a user reads.

A user fixes a bad suite from the error alone: it must name the YAML path of the bad value and say
what is wrong with it. Each case starts from one valid suite, breaks one thing, and expects the
whole message, so a check that stops naming its path, names the wrong one, or loses its words
fails here (the typo cases for every section are in tests/test_suite_keys.py).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from harness.suite import SuiteError, load, parse
from moe_schema.knowledge import TASK_NAMES

MOE = {"model_type": "olmoe", "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
       "num_attention_heads": 2, "num_experts": 4, "num_experts_per_tok": 2}
BASE = {
    "name": "errs",
    "models": [{"name": "moe", "config": MOE}, {"name": "dense", "derive": {"from": "moe", "match": "active"}}],
    "tasks": [{"name": "arc_easy"}],
}
TRAINED = {**BASE, "corpus": {"kind": "knowledge", "entities": 20, "tokens": 2000},
           "train": {"tokens": 1024, "batch_size": 2, "seq_len": 16}}


_DELETE = object()  # a value for _with: remove the key


def _with(base: dict, **changes) -> dict:
    data = copy.deepcopy(base)
    for key, value in changes.items():
        node, *rest = key.split("__")
        target = data
        parts = [node, *rest]
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target[part]
        last = parts[-1]
        if value is _DELETE:
            del target[int(last) if isinstance(target, list) else last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return data


def _err(data, **kw) -> str:
    with pytest.raises(SuiteError) as info:
        parse(data, **kw)
    assert isinstance(info.value.path, str)  # "" for the document itself, never None
    return str(info.value)


def test_the_base_suites_parse():
    assert [m.name for m in parse(copy.deepcopy(BASE)).models] == ["moe", "dense"]
    assert parse(copy.deepcopy(TRAINED)).train_seeds == (1234,)


CASES = [
    # the document and its top-level fields
    ("top-not-a-map", ["a"], "expected a map at the top of the suite, got list ['a']"),
    ("no-name", _with(BASE, name=_DELETE), "name: missing: every suite has a name"),
    ("name-not-str", _with(BASE, name=3), "name: expected str, got int 3"),
    ("name-chars", _with(BASE, name="a b"), "name: 'a b': use letters, digits and _ . + - only"),
    ("seed-str", _with(BASE, seed="x"), "seed: expected int, got 'x'"),
    ("seed-bool", _with(BASE, seed=True), "seed: expected int, got bool True"),
    ("dtype", _with(BASE, dtype="fp8"), "dtype: expected one of float32, bfloat16, float16, got 'fp8'"),
    ("no-models", _with(BASE, models=_DELETE), "models: expected a list of models, got NoneType None"),
    ("models-empty", _with(BASE, models=[]), "models: empty: a suite needs at least one model"),
    ("tasks-not-list", _with(BASE, tasks="arc_easy"), "tasks: expected list, got 'arc_easy'"),
    ("probes-not-list", _with(BASE, probes={"name": "latency"}),
     "probes: expected list, got dict {'name': 'latency'}"),
    ("probe-not-a-map", _with(BASE, probes=[3]), "probes[0]: expected a name or a map with 'name', got int 3"),
    ("probe-no-name", _with(BASE, probes=[{"repeats": 2}]), "probes[0]: missing 'name'"),
    ("probe-name-int", _with(BASE, probes=[{"name": 3}]), "probes[0].name: expected str, got int 3"),
    ("workers-int", _with(BASE, workers=3), "workers: expected list, got int 3"),
    ("worker-int", _with(BASE, workers=["tcp://h:1", 5]), "workers[1]: expected str, got int 5"),
    ("worker-scheme", _with(BASE, workers=["http://h:1"]),
     "workers[0]: expected an endpoint like tcp://host:5555 or ipc:///path, got 'http://h:1'"),
    ("worker-in-string", _with(BASE, workers="tcp://h:1,,h:2"),
     "workers[1]: expected an endpoint like tcp://host:5555 or ipc:///path, got 'h:2'"),
    ("pairing-not-map", _with(BASE, pairing=0.1), "pairing: expected map, got float 0.1"),
    ("pairing-tolerance-str", _with(BASE, pairing={"tolerance": "x"}),
     "pairing.tolerance: expected int or float, got 'x'"),
    ("pairing-tolerance-one", _with(BASE, pairing={"tolerance": 1}),
     "pairing.tolerance: expected a fraction in [0, 1), got 1"),
    ("pairing-tolerance-negative", _with(BASE, pairing={"tolerance": -0.1}),
     "pairing.tolerance: expected a fraction in [0, 1), got -0.1"),
    ("local-workers-zero", _with(BASE, local_workers=0), "local_workers: must be >= 1, got 0"),
    ("local-workers-str", _with(BASE, local_workers="2"), "local_workers: expected int, got '2'"),
    # models[i]
    ("model-not-a-map", _with(BASE, models=["moe"]), "models[0]: expected a map, got 'moe'"),
    ("model-no-name", _with(BASE, models__0__name=_DELETE), "models[0]: missing 'name'"),
    ("model-name-int", _with(BASE, models__1__name=7), "models[1].name: expected str, got int 7"),
    ("model-name-chars", _with(BASE, models__1__name="d/x"),
     "models[1].name: 'd/x': use letters, digits and _ . + - only"),
    ("model-name-twice", _with(BASE, models__1__name="moe"), "models[1].name: 'moe' already used by models[0]"),
    ("model-dtype", _with(BASE, models__0__dtype="int8"),
     "models[0].dtype: expected one of float32, bfloat16, float16, got 'int8'"),
    ("model-trust-remote-code", _with(BASE, models__0__trust_remote_code="yes"),
     "models[0].trust_remote_code: expected bool, got 'yes'"),
    ("model-experts-impl", _with(BASE, models__0__experts_implementation=3),
     "models[0].experts_implementation: expected str, got int 3"),
    ("model-train-not-map", _with(TRAINED, models__0__train=3), "models[0].train: expected map, got int 3"),
    ("model-train-untrained-suite", _with(BASE, models__0__train={"lr": 0.1}),
     "models[0].train: per-model train settings need a suite-level 'train'"),
    ("model-train-checked", _with(TRAINED, models__0__train={"lr": -1}), "models[0].train.lr: expected a number >= 0, got -1"),
    ("model-seed", _with(BASE, models__0__seed="s"), "models[0].seed: expected int, got 's'"),
    ("build-both", _with(BASE, models__0__checkpoint="org/m"),
     "models[0]: give exactly one of 'checkpoint' (a local directory or hub id) or 'config'"),
    ("build-neither", _with(BASE, models__0__config=_DELETE),
     "models[0]: give exactly one of 'checkpoint' (a local directory or hub id) or 'config'"),
    ("checkpoint-int", {**BASE, "models": [{"name": "c", "checkpoint": 5}]},
     "models[0].checkpoint: expected str, got int 5"),
    ("checkpoint-not-hub-id", {**BASE, "models": [{"name": "c", "checkpoint": "a b/c"}]},
     "models[0].checkpoint: not a local directory nor a hub id: 'a b/c'"),
    ("config-not-map", _with(BASE, models__0__config=3), "models[0].config: expected map, got int 3"),
    ("checkpoint-home", {**BASE, "models": [{"name": "c", "checkpoint": "~/no-such-moe-harness-dir"}]},
     f"models[0].checkpoint: no such checkpoint directory: {Path('~/no-such-moe-harness-dir').expanduser()}"),
    ("scaled-unknown-family", _with(BASE, scales={"s": {"config": {"hidden_size": 8}}}, scale="s",
                                    models=[{"name": "m", "config": {"model_type": "gpt9"}}]),
     "models[0].config.model_type: unknown"),
    ("derive-with-checkpoint", _with(BASE, models__1__checkpoint="org/m"),
     "models[1].derive: a derived build takes no 'checkpoint' or 'config' of its own"),
    ("eval-routing-implicit-native", _with(BASE, models__0__eval_routing=["native"]),
     "models[0].eval_routing: strategy native is already in routing"),
    ("eval-routing-on-dense", _with(BASE, models__1__eval_routing=["random"]),
     "models[1].eval_routing: 'dense' is a dense build (olmo); routing applies to MoE builds"),
    ("eval-routing-unknown", _with(BASE, models__0__eval_routing=[{"name": "topq"}]),
     "models[0].eval_routing[0]: unknown routing strategy 'topq' (did you mean 'topp'?); known: aux_free, capacity, expert_choice, hash, native, prune, random, topk, topp"),
    ("scale-unknown-of-two", _with(BASE, scales={"tiny": {}, "big": {}}, scale="huge"),
     "scale: unknown scale 'huge'; known: tiny, big"),
    ("sweep-corpus-no-train", _with(BASE, corpus={"kind": "knowledge", "entities": 20},
                                    sweep={"corpus.entities": [10, 20]}),
     "sweep.corpus.entities: needs a trained suite with a 'corpus' of kind knowledge"),
    ("derive-with-config", _with(BASE, models__1__config=MOE),
     "models[1].derive: a derived build takes no 'checkpoint' or 'config' of its own"),
    ("derive-not-map", _with(BASE, models__1__derive="moe"), "models[1].derive: expected map, got 'moe'"),
    ("derive-no-from", _with(BASE, models__1__derive={"match": "active"}), "models[1].derive: missing 'from'"),
    ("derive-no-match", _with(BASE, models__1__derive={"from": "moe"}), "models[1].derive: missing 'match'"),
    ("derive-from-unknown", _with(BASE, models__1__derive={"from": "mo", "match": "active"}),
     "models[1].derive.from: no config build named 'mo' before this model; known: moe"),
    ("derive-from-later", {**BASE, "models": [BASE["models"][1], BASE["models"][0]]},
     "models[0].derive.from: no config build named 'moe' before this model; known: none"),
    ("routing-on-dense", _with(BASE, models__1__routing=["topk"]),
     "models[1].routing: 'dense' is a dense build (olmo); routing applies to MoE builds"),
    ("routing-not-list", _with(BASE, models__0__routing=3), "models[0].routing: expected list, got int 3"),
    ("routing-twice", _with(BASE, models__0__routing=[{"name": "topk", "k": 1}, {"name": "topk", "k": 1}]),
     "models[0].routing: strategy topk(k=1) listed twice"),
    ("eval-routing-twice", _with(BASE, models__0__routing=["native"], models__0__eval_routing=["native"]),
     "models[0].eval_routing: strategy native is already in routing"),
    ("routing-no-name", _with(BASE, models__0__routing=[{"k": 1}]), "models[0].routing[0]: missing 'name'"),
    ("routing-param-type", _with(BASE, models__0__routing=[{"name": "topk", "k": "two"}]),
     "models[0].routing[0].k: expected int, got 'two'"),
    # tasks[i]
    ("task-not-map", _with(BASE, tasks=[3]), "tasks[0]: expected a task name or a map, got int 3"),
    ("task-neither", _with(BASE, tasks=[{"limit": 3}]),
     "tasks[0]: give 'name' (an lm-eval task) or 'path' (a local task YAML)"),
    ("task-name-int", _with(BASE, tasks=[{"name": 3}]), "tasks[0].name: expected str, got int 3"),
    ("task-path-int", _with(BASE, tasks=[{"path": 3}]), "tasks[0].path: expected str, got int 3"),
    ("task-shards-str", _with(BASE, tasks=[{"name": "a", "shards": "2"}]), "tasks[0].shards: expected int, got '2'"),
    ("task-shards-zero", _with(BASE, tasks=[{"name": "a", "shards": 0}]), "tasks[0].shards: must be >= 1, got 0"),
    ("task-corpus-int", _with(TRAINED, tasks=[{"corpus": 1}]), "tasks[0].corpus: expected str, got int 1"),
    ("task-corpus-no-corpus", _with(BASE, tasks=[{"corpus": "longtail"}]),
     "tasks[0].corpus: corpus tasks need a suite-level 'corpus' of kind knowledge"),
    ("task-corpus-unknown", _with(TRAINED, tasks=[{"name": "x"}, {"corpus": "longtale"}]),
     f"tasks[1].corpus: unknown corpus task 'longtale'; known: {', '.join(TASK_NAMES)}"),
    # training
    ("corpus-not-map", _with(TRAINED, corpus=3), "corpus: expected map, got int 3"),
    ("train-not-map", _with(TRAINED, train=3), "train: expected map, got int 3"),
    ("train-no-corpus", _with(TRAINED, corpus=_DELETE), "train: training needs a suite-level 'corpus'"),
    ("train-seeds-not-list", _with(TRAINED, train__seeds=3), "train.seeds: expected a list of ints, got int 3"),
    ("train-seed-str", _with(TRAINED, train__seeds=[1, "2"]), "train.seeds[1]: expected int, got '2'"),
    ("train-seeds-empty", _with(TRAINED, train__seeds=[]), "train.seeds: expected distinct seeds, got []"),
    ("train-seeds-twice", _with(TRAINED, train__seeds=[1, 2, 1]),
     "train.seeds: expected distinct seeds, got [1, 2, 1]"),
    # scales
    ("scales-not-map", _with(BASE, scales=3, scale="x"), "scales: expected map, got int 3"),
    ("scale-unknown", _with(BASE, scales={"tiny": {}}, scale="tinny"), "scale: unknown scale 'tinny'; known: tiny"),
    ("scale-without-scales", _with(BASE, scale="tiny"), "scale: unknown scale 'tiny'; known: none (no scales: map)"),
    ("scale-not-str", _with(BASE, scales={"tiny": {}}, scale=1), "scale: expected str, got int 1"),
    ("scale-entry-not-map", _with(BASE, scales={"tiny": 3}, scale="tiny"), "scales.tiny: expected map, got int 3"),
    ("scale-section-not-map", _with(BASE, scales={"tiny": {"train": 3}}, scale="tiny"),
     "scales.tiny.train: expected map, got int 3"),
    ("scale-config-key", _with(BASE, scales={"tiny": {"config": {"hiden_size": 8}}}, scale="tiny"),
     "scales.tiny.config.hiden_size: unknown key (did you mean 'hidden_size'?); known: "),
    # sweeps
    ("sweep-moe-setting-no-moe", {**BASE, "models": [{"name": "d", "config": {"model_type": "llama"}}],
                                  "sweep": {"top_k": [1, 2]}},
     "sweep.top_k: no config MoE build to apply it to (derived and checkpoint builds keep their own)"),
    ("sweep-top-k-over-experts", _with(BASE, sweep={"top_k": [1, 8]}),
     "sweep.top_k[1]: 8 experts per token, but models[0] 'moe' has 4 experts"),
    ("sweep-train-untrained", _with(BASE, sweep={"train.tokens": [1, 2]}),
     "sweep.train.tokens: sweeps a train setting, but the suite has no 'train'"),
    ("sweep-corpus-untrained", _with(BASE, sweep={"corpus.entities": [10, 20]}),
     "sweep.corpus.entities: needs a trained suite with a 'corpus' of kind knowledge"),
    # eval
    ("eval-option", _with(BASE, eval={"max_batch_token": 5}),
     "eval.max_batch_token: unknown key (did you mean 'max_batch_tokens'?); known: max_batch_tokens, prefix_sharing, "
     "bootstrap_iters, generate_batch_size, data_outside_task_folder"),
    ("task-limit-fraction", _with(BASE, tasks=[{"name": "a", "limit": 0.5}]),
     "tasks[0].limit: expected a whole number of documents, got 0.5 (a fraction of a task is not supported: "
     "evaluate jobs sample, shard and merge whole documents)"),
]


@pytest.mark.parametrize("data, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_suite_is_refused_with_the_path_and_what_is_wrong(data, message):
    got = _err(data)
    if message.endswith(("known: ", "unknown")):  # a long list follows: its start is enough
        assert got.startswith(message), got
    else:
        assert got == message


def test_the_scale_named_on_the_command_line_is_checked_as_such():
    data = _with(BASE, scales={"tiny": {}})
    assert _err(data, scale="huge") == "--scale: unknown scale 'huge'; known: tiny"
    assert parse(copy.deepcopy(data), scale="tiny").scale == "tiny"
    assert parse(_with(BASE, scales={"tiny": {}}, scale="x"), scale="tiny").scale == "tiny"  # the flag wins


def test_a_scale_sets_what_a_model_leaves_open_and_only_keys_its_family_knows():
    data = _with(BASE, scales={"big": {"config": {"hidden_size": 64, "num_experts": 8, "num_hidden_layers": 3}}},
                 scale="big", models=[{"name": "moe", "config": {"model_type": "olmoe", "hidden_size": 32}},
                                      {"name": "d", "config": {"model_type": "llama"}}])
    moe, dense = parse(data).models
    assert moe.build["config"]["hidden_size"] == 32  # the model's own value wins
    assert moe.build["config"]["num_experts"] == 8 and moe.build["config"]["num_hidden_layers"] == 3
    assert dense.build["config"]["num_hidden_layers"] == 3 and "num_experts" not in dense.build["config"]


def test_a_scale_overrides_the_suites_train_and_corpus_settings():
    data = _with(TRAINED, scales={"s": {"train": {"tokens": 4096, "seeds": [3, 4]}, "corpus": {"entities": 30}}},
                 scale="s")
    suite = parse(data)
    assert suite.train["tokens"] == 4096 and suite.train["batch_size"] == 2
    assert suite.train_seeds == (3, 4) and suite.corpus["entities"] == 30
    assert suite.corpus["tokens"] == 2000
    assert "seeds" not in suite.train


def test_checkpoint_builds_local_and_hub(tmp_path):
    hub = parse({**BASE, "models": [{"name": "h", "checkpoint": "org/model-1.5"}]}).models[0]
    assert (hub.build, hub.family, hub.moe, hub.routing[0].name) == ({"checkpoint": "org/model-1.5"}, None, None,
                                                                     "native")
    bare = parse({**BASE, "models": [{"name": "h", "checkpoint": "gpt2"}]}).models[0]
    assert bare.build == {"checkpoint": "gpt2"}

    assert _err({**BASE, "models": [{"name": "c", "checkpoint": str(tmp_path / "nope")}]}) == \
        f"models[0].checkpoint: no such checkpoint directory: {tmp_path / 'nope'}"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _err({**BASE, "models": [{"name": "c", "checkpoint": str(empty)}]}) == \
        f"models[0].checkpoint: {empty} has no config.json: not a Hugging Face checkpoint"
    for model_type, moe in (("olmoe", True), ("llama", False), ("some_new_arch", None)):
        ckpt = tmp_path / model_type
        ckpt.mkdir()
        (ckpt / "config.json").write_text(json.dumps({"model_type": model_type}))
        spec = parse({**BASE, "models": [{"name": "c", "checkpoint": str(ckpt)}]}).models[0]
        assert (spec.build, spec.family, spec.moe) == ({"checkpoint": str(ckpt)}, model_type, moe)
    # relative to the suite file's folder, not the working directory
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text(json.dumps({**BASE, "models": [{"name": "c", "checkpoint": "olmoe"}]}))
    assert load(suite_file).models[0].build == {"checkpoint": str(tmp_path / "olmoe")}
    assert _err(_with(TRAINED, models=[{"name": "c", "checkpoint": str(tmp_path / "olmoe"), "train": {"lr": 1e-3}}])) \
        == "models[0].train: only config builds are trained; this one is a checkpoint"


def test_a_single_routing_is_a_list_of_one():
    assert _err(_with(BASE, models__0__routing="topk")) == "models[0].routing[0]: missing 'k'"
    for routing in ({"name": "topk", "k": 1}, "random"):
        spec = parse(_with(BASE, models__0__routing=routing)).models[0]
        assert [r.name for r in spec.routing] == [routing["name"] if isinstance(routing, dict) else routing]
    train_sweep = parse(_with(TRAINED, sweep={"train.tokens": [512, 2048]}))
    assert [m.train for m in train_sweep.models] == [{"tokens": 512}] * 2 + [{"tokens": 2048}] * 2


def test_a_scale_can_bring_the_corpus_train_and_sweep_a_suite_leaves_out():
    data = _with(BASE, scales={"t": {"corpus": {"kind": "knowledge", "entities": 20, "tokens": 2000},
                                     "train": {"tokens": 1024, "batch_size": 2, "seq_len": 16},
                                     "sweep": {"train.tokens": [512, 1024]}}}, scale="t")
    suite = parse(data)
    assert suite.corpus["entities"] == 20 and suite.train["tokens"] == 1024 and suite.train_seeds == (1234,)
    assert suite.sweep == {"train.tokens": [512, 1024]}
    both = _with(TRAINED, sweep={"train.tokens": [1, 2], "top_k": [1, 2]},
                 scales={"t": {"sweep": {"train.tokens": [512, 1024]}}}, scale="t")
    assert parse(both).sweep == {"train.tokens": [512, 1024], "top_k": [1, 2]}  # setting by setting
    untrained = parse(copy.deepcopy(BASE))
    assert (untrained.corpus, untrained.train, untrained.train_seeds, untrained.sweep) == (None, None, (), {})
    assert (untrained.local_workers, untrained.workers, untrained.probes, untrained.eval) == (1, (), (), {})
    assert untrained.pairing.tolerance == 0.10 and untrained.scale is None


def test_a_models_seed_and_dtype_override_the_suites():
    suite = parse(_with(BASE, seed=5, dtype="bfloat16", models__0__seed=9, models__0__dtype="float16"))
    moe, dense = suite.models
    assert moe.build["seed"] == 9 and dense.build["seed"] == 5
    assert moe.dtype == "float16" and dense.dtype == "bfloat16" and suite.dtype == "bfloat16"
    assert suite.seed == 5 and parse(copy.deepcopy(BASE)).seed == 1234


def test_the_fields_a_suite_sets_reach_the_suite():
    suite = parse(_with(BASE, workers="tcp://a:1,ipc:///tmp/w,@hosts.txt", pairing={"tolerance": 0},
                        local_workers=3, eval={"max_batch_tokens": 64}, probes=["latency"],
                        models__0__trust_remote_code=True, models__0__experts_implementation="eager"))
    assert suite.workers == ("tcp://a:1", "ipc:///tmp/w", "@hosts.txt")
    assert suite.pairing.tolerance == 0.0 and isinstance(suite.pairing.tolerance, float)
    assert suite.local_workers == 3 and suite.eval == {"max_batch_tokens": 64}
    assert [p.to_dict() for p in suite.probes] == [{"name": "latency", "params": {}}]
    assert suite.models[0].trust_remote_code is True and suite.models[0].experts_implementation == "eager"
    assert suite.models[1].trust_remote_code is False and suite.models[1].experts_implementation is None
    assert suite.models[1].routing == () and suite.models[0].routing[0].to_dict() == {"name": "native", "params": {}}
    assert suite.models[1].derive == {"from": "moe", "match": "active"} and suite.models[0].derive is None
    assert suite.name == "errs" and suite.raw["name"] == "errs" and suite.path is None


def test_tasks_by_name_by_file_and_from_the_corpus(tmp_path):
    task_file = tmp_path / "mine.yaml"
    task_file.write_text("task: mine\ndataset_path: json\ndataset_kwargs: {data_files: mine.jsonl}\n"
                         "process_docs: !function utils.process\n")
    (tmp_path / "other.yml").write_text("task: other\n")
    data = _with(TRAINED, tasks=["arc_easy", str(task_file), str(tmp_path / "other.yml"),
                                 {"path": str(task_file), "name": "mine", "limit": 7, "num_fewshot": 2},
                                 {"corpus": "longtail"}])
    tasks = parse(data).tasks
    assert [t.to_dict() for t in tasks[:4]] == [
        {"name": "arc_easy", "path": None, "limit": None, "num_fewshot": None},
        {"name": "mine", "path": str(task_file), "limit": None, "num_fewshot": None},
        {"name": "other", "path": str(tmp_path / "other.yml"), "limit": None, "num_fewshot": None},
        {"name": "mine", "path": str(task_file), "limit": 7, "num_fewshot": 2},
    ]
    assert tasks[4].name == "longtail" and tasks[4].path is None and tasks[4].corpus["entities"] == 20
    assert tasks[4].to_dict()["corpus"] == tasks[4].corpus and "corpus" not in tasks[0].to_dict()
    assert [t.shards for t in tasks] == [1] * 5

    assert _err(_with(BASE, tasks=[{"path": str(task_file), "name": "yours"}])) == \
        "tasks[0].name: 'yours' does not match the file's task 'mine'"
    assert _err(_with(BASE, tasks=[str(tmp_path / "none.yaml")])) == \
        f"tasks[0].path: no such task file: {tmp_path / 'none.yaml'}"
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n")
    assert _err(_with(BASE, tasks=[str(bad)])).startswith(f"tasks[0].path: {bad} is not valid YAML: ")
    notask = tmp_path / "notask.yaml"
    notask.write_text("dataset_path: json\n")
    assert _err(_with(BASE, tasks=[{"name": "x"}, str(notask)])) == \
        f"tasks[1].path: {notask} is not an lm-eval task file (no 'task:' name)"
    listed = tmp_path / "list.yaml"
    listed.write_text("- task: x\n")
    assert _err(_with(BASE, tasks=[str(listed)])) == \
        f"tasks[0].path: {listed} is not an lm-eval task file (no 'task:' name)"


def test_load_names_a_missing_file_and_where_the_yaml_breaks(tmp_path):
    missing = tmp_path / "none.yaml"
    with pytest.raises(SuiteError) as info:
        load(missing)
    assert str(info.value) == f"no such suite file: {missing}" and info.value.path == ""
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nmodels: [\n  - a: b\n    c\n")
    with pytest.raises(SuiteError) as info:
        load(broken)
    text = str(info.value)
    assert text.startswith(f"{broken} is not valid YAML (line 3, column 3): ") and info.value.path == ""
    assert "\n" not in text
    scaled = tmp_path / "scaled.yaml"
    scaled.write_text(json.dumps(_with(BASE, scales={"tiny": {}, "big": {}}, scale="tiny")))
    assert load(scaled).scale == "tiny" and load(scaled, scale="big").scale == "big"
    assert load(str(scaled)).path == Path(str(scaled))


# ---------------------------------------------------------------- plugin parameters: the type check

import typing  # noqa: E402

import attrs  # noqa: E402

from moe_schema.check import structure  # noqa: E402


class _Thing:
    pass


@attrs.frozen
class _Params:
    """One field of every annotation a plugin's config class may use."""

    k: int | None = None
    mode: typing.Literal["fast", "slow"] = "fast"
    sizes: list[int] = attrs.field(factory=list)
    pair: tuple = ()
    table: dict = attrs.field(factory=dict)
    opts: typing.Dict[str, int] = attrs.field(factory=dict)
    ratio: float = 0.5
    on: bool = True
    label: str = "x"
    anything: typing.Any = None
    thing: _Thing | None = None
    fraction: float = attrs.field(default=0.5, validator=attrs.validators.lt(1.0))
    need: int = attrs.field(default=attrs.NOTHING, kw_only=True)


@pytest.mark.parametrize("params, message", [
    ({"k": "two"}, "p.k: expected int or null, got 'two'"),
    ({"k": True}, "p.k: expected int or null, got bool True"),
    ({"mode": "medium"}, "p.mode: expected one of 'fast', 'slow', got 'medium'"),
    ({"sizes": [1, "2"]}, "p.sizes[1]: expected int, got '2'"),
    ({"sizes": 3}, "p.sizes: expected list of int, got int 3"),
    ({"pair": "ab"}, "p.pair: expected list, got 'ab'"),
    ({"table": [1]}, "p.table: expected map, got list [1]"),
    ({"opts": [1]}, "p.opts: expected typing.Dict[str, int], got list [1]"),
    ({"ratio": "half"}, "p.ratio: expected float, got 'half'"),
    ({"on": 1}, "p.on: expected bool, got int 1"),
    ({"label": 3}, "p.label: expected str, got int 3"),
    ({"thing": 3}, "p.thing: expected _Thing or null, got int 3"),
    ({"kk": 1}, "p.kk: unknown key (did you mean 'k'?); known: "),
    ({"fraction": 2.0}, "p: 'fraction' must be < 1.0: 2.0"),
    ({}, "p: missing 'need'"),
])
def test_plugin_parameters_of_the_wrong_type_are_refused_at_their_path(params, message):
    with pytest.raises(SuiteError) as info:
        structure(_Params, {"need": 1, **params} if params else {}, "p")
    assert str(info.value).startswith(message) if message.endswith("known: ") else str(info.value) == message


def test_plugin_parameters_of_the_right_type_are_accepted_as_given():
    thing = _Thing()
    got = structure(_Params, {"need": 1, "k": 3, "mode": "slow", "sizes": [1, 2], "pair": [1, "a"], "table": {"a": 1},
                              "opts": {"a": 1}, "ratio": 2, "on": False, "label": "y", "anything": [object],
                              "thing": thing, "fraction": 0.25}, "p")
    assert (got.k, got.mode, got.sizes, got.pair, got.table, got.ratio, got.on, got.label, got.thing) == \
        (3, "slow", [1, 2], [1, "a"], {"a": 1}, 2, False, "y", thing)
    assert structure(_Params, {"k": None, "sizes": [], "need": 1}, "p").k is None
    assert structure(_Params, {"need": 2}, "p") == _Params(need=2)


def test_an_annotation_the_check_does_not_know_accepts_any_value():
    @attrs.frozen
    class WithHook:
        hook: typing.Callable = None  # noqa: F821 (resolved by attrs from this module)

    assert structure(WithHook, {"hook": "any text"}, "p").hook == "any text"


def test_derive_options_reach_the_twin_and_a_bad_one_is_named():
    plain = parse(copy.deepcopy(BASE)).models[1].build["config"]
    rounded = parse(_with(BASE, models__1__derive={"from": "moe", "match": "active", "multiple_of": 8})).models[1]
    assert rounded.build["config"]["intermediate_size"] % 8 == 0
    assert rounded.build["config"]["intermediate_size"] != plain["intermediate_size"]
    assert _err(_with(BASE, models__1__derive={"from": "moe", "match": "active", "multiple_of": "8"})) == \
        "models[1].derive: multiple_of must be a positive int, got '8'"
    two = {**BASE, "models": [BASE["models"][0], {"name": "other", "config": MOE},
                              {"name": "d", "derive": {"from": "nope", "match": "active"}}]}
    assert _err(two) == "models[2].derive.from: no config build named 'nope' before this model; known: moe, other"


def test_a_sweep_sets_top_k_up_to_the_number_of_experts_and_names_a_bad_width():
    suite = parse(_with(BASE, sweep={"top_k": [1, 4]}))
    moes = [m for m in suite.models if m.moe]
    assert [m.build["config"]["num_experts_per_tok"] for m in moes] == [1, 4]
    assert [m.name for m in moes] == ["moe[top_k=1]", "moe[top_k=4]"]
    assert _err(_with(BASE, sweep={"experts": [3]})) == \
        "sweep.experts[0]: 3 experts at the granularity of 4 experts x top-2 need top-1.5 per token, not a whole number"
    assert _err(_with(TRAINED, sweep={"corpus.entities": [10, -1]})) == \
        "sweep.corpus.entities[1]: expected int >= 10, got int -1"


def test_a_task_file_that_is_not_yaml_gives_the_parsers_first_line(tmp_path):
    import yaml

    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n")
    with pytest.raises(yaml.YAMLError) as info:
        yaml.safe_load(bad.read_text())
    first = str(info.value).splitlines()[0]
    assert _err(_with(BASE, tasks=[str(bad)])) == f"tasks[0].path: {bad} is not valid YAML: {first}"


def test_a_suite_with_characters_yaml_refuses_names_the_problem_without_a_position(tmp_path):
    bad = tmp_path / "ctrl.yaml"
    bad.write_text("name: a\x07b\n")
    with pytest.raises(SuiteError) as info:
        load(bad)
    # a reader error has no line and column (and a second line of its own, left out: errors are one line)
    assert str(info.value) == (f"{bad} is not valid YAML: unacceptable character #x0007: special characters are "
                               "not allowed")

