"""Suite validation: every mistake a user makes gets a one-line error with its YAML path and exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.suite import SuiteError, load, parse

REPO = Path(__file__).resolve().parent.parent

GOOD = {
    "name": "t",
    "models": [
        {"name": "moe", "config": {"model_type": "olmoe", "hidden_size": 32, "num_experts": 4,
                                   "num_experts_per_tok": 2}},
        {"name": "dense", "config": {"model_type": "llama", "hidden_size": 32}},
    ],
    "tasks": [],
}


def _with(**changes):
    import copy

    data = copy.deepcopy(GOOD)
    data.update(changes)
    return data


def _error(data, path=None) -> SuiteError:
    with pytest.raises(SuiteError) as info:
        parse(data, path)
    return info.value


def test_good_suite_parses_with_native_default():
    suite = parse(GOOD)
    assert [m.name for m in suite.models] == ["moe", "dense"]
    assert [r.name for r in suite.models[0].routing] == ["native"]
    assert suite.models[1].routing == ()
    assert suite.models[0].moe is True and suite.models[1].moe is False
    assert suite.pairing.tolerance == pytest.approx(0.10)


def test_unknown_top_level_key_with_suggestion():
    err = _error(_with(modles=[]))
    assert err.path == "modles"
    assert "did you mean 'models'" in str(err)


def test_wrong_type_names_the_yaml_path():
    data = _with()
    data["models"][0]["config"]["num_experts"] = "many"
    err = _error(data)
    assert str(err) == "models[0].config.num_experts: expected int, got 'many'"


def test_unknown_config_key():
    data = _with()
    data["models"][1]["config"]["hiden_size"] = 3
    err = _error(data)
    assert err.path == "models[1].config.hiden_size"
    assert "did you mean 'hidden_size'" in err.message


def test_unknown_model_family_lists_known():
    data = _with()
    data["models"][1]["config"]["model_type"] = "lama"
    err = _error(data)
    assert err.path == "models[1].config.model_type"
    assert "unknown model family 'lama'" in err.message and "llama" in err.message and "olmoe" in err.message


def test_missing_checkpoint_directory(tmp_path):
    data = _with(models=[{"name": "x", "checkpoint": "./no/such/dir"}])
    err = _error(data, tmp_path / "suite.yaml")
    assert err.path == "models[0].checkpoint"
    assert "no such checkpoint directory" in err.message


def test_checkpoint_without_config_json(tmp_path):
    (tmp_path / "ckpt").mkdir()
    err = _error(_with(models=[{"name": "x", "checkpoint": "ckpt"}]), tmp_path / "suite.yaml")
    assert "no config.json" in err.message


def test_hub_id_is_accepted_as_is():
    suite = parse(_with(models=[{"name": "olmoe", "checkpoint": "allenai/OLMoE-1B-7B-0924"}]))
    assert suite.models[0].build == {"checkpoint": "allenai/OLMoE-1B-7B-0924"}
    assert suite.models[0].moe is None  # not known until a worker describes it


def test_missing_task_file(tmp_path):
    err = _error(_with(tasks=[{"path": "tasks/nope.yaml"}]), tmp_path / "suite.yaml")
    assert err.path == "tasks[0].path" and "no such task file" in err.message


def test_task_file_that_is_not_an_lm_eval_task(tmp_path):
    (tmp_path / "t.yaml").write_text("just: a map\n")
    err = _error(_with(tasks=[{"path": "t.yaml"}]), tmp_path / "suite.yaml")
    assert "not an lm-eval task file" in err.message


def test_bad_limit_and_fewshot():
    assert _error(_with(tasks=[{"name": "x", "limit": -1}])).path == "tasks[0].limit"
    assert _error(_with(tasks=[{"name": "x", "num_fewshot": "two"}])).path == "tasks[0].num_fewshot"


def test_duplicate_model_names():
    data = _with()
    data["models"][1]["name"] = "moe"
    assert _error(data).path == "models[1].name"


def test_routing_on_dense_build_refused():
    data = _with()
    data["models"][1]["routing"] = ["topk"]
    err = _error(data)
    assert err.path == "models[1].routing" and "dense" in err.message


def test_unknown_strategy_lists_known_names():
    data = _with()
    data["models"][0]["routing"] = ["native", {"name": "topq", "k": 1}]
    err = _error(data)
    assert err.path == "models[0].routing[1]"
    assert "unknown routing strategy 'topq'" in err.message and "topk" in err.message


def test_bad_strategy_parameter_fails_at_validation():
    data = _with()
    data["models"][0]["routing"] = [{"name": "topk", "k": "four"}]
    err = _error(data)
    assert err.path == "models[0].routing[0].k" and "expected int" in err.message


def test_bad_endpoint():
    assert _error(_with(workers=["localhost:5555"])).path == "workers[0]"


def test_not_yaml(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(SuiteError, match="not valid YAML"):
        load(f)


def test_smoke_suite_is_valid():
    suite = load(REPO / "suites" / "smoke.yaml")
    assert {m.name for m in suite.models} == {"moe-8x2", "dense-active", "dense-total"}
    assert all(Path(t.path).is_file() for t in suite.tasks)


@pytest.mark.parametrize("command", ["run", "plan"])
def test_cli_prints_one_line_and_exits_2(tmp_path, command):
    data = _with()
    data["models"][0]["config"]["num_experts"] = "many"
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(data))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", command, str(f)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["harness: models[0].config.num_experts: expected int, got 'many'"]


# ---------------------------------------------------------------- training suites (derive, train, corpus, scale)

TRAINED = {
    "name": "lt",
    "scale": "tiny",
    "scales": {"tiny": {"config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                                   "num_key_value_heads": 4, "num_experts": 4, "num_experts_per_tok": 2,
                                   "intermediate_size": 32},
                        "train": {"tokens": 5000}}},
    "corpus": {"kind": "knowledge", "entities": 50, "tokens": 5000},
    "train": {"batch_size": 4, "seq_len": 32},
    "models": [
        {"name": "moe", "config": {"model_type": "olmoe"}},
        {"name": "dense-active", "derive": {"from": "moe", "match": "active"}},
    ],
    "tasks": [{"corpus": "longtail"}],
}


def _trained(**changes):
    import copy

    data = copy.deepcopy(TRAINED)
    data.update(changes)
    return data


def test_scale_fills_configs_and_derive_solves_a_twin():
    from harness.derive import count

    suite = parse(TRAINED)
    moe, dense = suite.models
    assert moe.build["config"]["hidden_size"] == 32 and moe.build["config"]["num_experts"] == 4
    assert dense.moe is False and dense.family == "olmo"
    a, b = count(moe.build["config"])["active"], count(dense.build["config"])["total"]
    assert abs(a - b) / a < 0.02
    assert suite.train["tokens"] == 5000 and suite.train["batch_size"] == 4 and suite.train_seeds == (1234,)
    assert suite.tasks[0].corpus["entities"] == 50


def test_training_plan_trains_first_then_uses_the_checkpoints():
    from harness import plan as planner

    vs, jobs = planner.expand(parse(_trained(train={"seeds": [1, 2]})))
    assert [j.kind for j in jobs[:4]] == ["train"] * 4
    assert {v["name"] for v in vs} == {"moe#s1", "moe#s2", "dense-active#s1", "dense-active#s2"}
    trains = {j.key for j in jobs if j.kind == "train"}
    rest = [j for j in jobs if j.kind != "train"]
    assert rest and all(j.after in trains for j in rest)
    from moe_schema.train import train_key

    keys = {train_key(j.spec) for j in jobs if j.kind == "train"}
    assert all(j.spec["variant"]["build"]["trained"] in keys for j in rest)  # found under each worker's home


@pytest.mark.parametrize("change, path, words", [
    ({"scale": "huge"}, "scale", "unknown scale 'huge'; known: tiny"),
    ({"train": {"lr": -1}}, "train.lr", "expected a number >= 0"),
    ({"corpus": {"kind": "knowledge", "zipf": "steep"}}, "corpus.zipf", "expected a number"),
    ({"tasks": [{"corpus": "longtail_middle"}]}, "tasks[0].corpus", "unknown corpus task"),
])
def test_training_section_errors(change, path, words):
    err = _error(_trained(**change))
    assert err.path == path and words in err.message, str(err)


def test_derive_errors_name_the_model():
    data = _trained()
    data["models"][1]["derive"] = {"from": "nope", "match": "active"}
    err = _error(data)
    assert err.path == "models[1].derive.from" and "no config build named 'nope'" in err.message
    data["models"][1]["derive"] = {"from": "moe", "match": "half"}
    assert _error(data).path.startswith("models[1].derive")


def test_train_without_corpus_refused():
    data = _trained()
    del data["corpus"]
    data["tasks"] = []
    assert _error(data).path == "train"
