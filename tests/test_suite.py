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
