"""A third-party engine, end to end, with no edit to the harness: examples/engine_plugin (``hf_eager``,
transformers with eager attention) installed into a fresh virtual environment by pip, then a
suite naming ``engine: [transformers, hf_eager]`` planned, run on real local daemons and reported,
with engine parity against transformers; and the strategy it refuses refused when the suite is read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

#: a fresh venv, a pip install and a real run: `tox -e heavy`, which .ci/run runs
pytestmark = pytest.mark.heavy

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "examples" / "engine_plugin"
MOE = {"model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
       "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_experts": 4,
       "num_experts_per_tok": 2, "moe_intermediate_size": 32, "max_position_embeddings": 256}


@pytest.fixture(scope="module")
def plugin_python(tmp_path_factory) -> str:
    """A fresh venv over the system's packages, with the plugin pip-installed (no network, no edit here)."""
    env_dir = tmp_path_factory.mktemp("plugin") / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = str(env_dir / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "-e", str(PLUGIN)], check=True, cwd=REPO, timeout=300, capture_output=True)
    return python


def harness(python: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([python, "-m", "harness.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600, env=env)


def write_suite(path: Path, routing, engine) -> Path:
    path.write_text(json.dumps({
        "name": "plugin", "seed": 1, "dtype": "float32",
        "models": [{"name": "moe", "config": MOE, "routing": routing, "engine": engine}],
        "tasks": [{"path": str(REPO / "suites" / "tasks" / "smoke_mc.yaml"), "limit": 8}], "workers": []}))
    return path


def test_the_plugin_engine_is_unknown_without_its_install(tmp_path):
    """The neighbouring case: this Python has no such entry point, so the suite is refused by name."""
    proc = harness(sys.executable, "plan", str(write_suite(tmp_path / "s.json", ["native"], "hf_eager")))
    assert proc.returncode == 2
    assert "models[0].engine: unknown engine 'hf_eager'; known: llamacpp, transformers, vllm" in proc.stderr


def test_a_strategy_the_plugin_refuses_is_refused_when_the_suite_is_read(plugin_python, tmp_path):
    suite = write_suite(tmp_path / "s.json", ["native", "capacity"], ["transformers", "hf_eager"])
    proc = harness(plugin_python, "plan", str(suite))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "harness: models[0].routing[1]: capacity cannot run on engine hf_eager (variant moe@capacity[hf_eager]): "
        "its rule reads every token of the batch at once (a token's experts depend on the others), and hf_eager "
        "runs per-token rules only (an example of an engine refusing a strategy)"]


def test_a_plugin_engine_plans_runs_and_shows_in_engine_parity(plugin_python, tmp_path):
    suite = write_suite(tmp_path / "s.json", ["native"], ["transformers", "hf_eager"])
    plan = harness(plugin_python, "plan", str(suite), "--json")
    assert plan.returncode == 0, plan.stderr
    names = {v["name"] for v in json.loads(plan.stdout)["variants"]}
    assert names == {"moe", "moe[hf_eager]"}
    out = tmp_path / "run"
    proc = harness(plugin_python, "run", str(suite), "--out", str(out), "--no-cache")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert {(r["variant"], r["engine"]["name"]) for r in records if r["kind"] == "evaluate"} == {
        ("moe", "transformers"), ("moe[hf_eager]", "hf_eager")}
    report = (out / "report.md").read_text()
    parity = report[report.index("Engine parity"):]
    parity = parity[:parity.find("\n## ", 1) if "\n## " in parity[1:] else None]
    assert "No build was evaluated on two engines" not in parity and "hf_eager" in parity, parity
