"""Routing strategy configs (torch-free) and third-party strategies found through entry points."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from moe_schema.check import SchemaError
from moe_schema.registry import UnknownName
from moe_schema.routing import ROUTING, StrategyConfig, config_from_spec

REPO = Path(__file__).resolve().parent.parent
PLUGINS = REPO / "tests" / "plugins"
BUILT_INS = ["aux_free", "capacity", "expert_choice", "hash", "native", "prune", "random", "topk", "topp"]


def run_python(code: str, *, plugins: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    paths = [str(REPO)] + ([str(PLUGINS)] if plugins else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [env.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_config_module_does_not_import_torch():
    proc = run_python("""
        import sys
        from moe_schema.routing import ROUTING, config_from_spec
        config_from_spec({"name": "topk", "params": {"k": 1}}).label()
        ROUTING.names()
        assert "torch" not in sys.modules, "torch imported"
    """)
    assert proc.returncode == 0, proc.stderr


def test_built_ins_registered_with_their_names():
    for name in BUILT_INS:
        cls = ROUTING.get(name)
        assert issubclass(cls, StrategyConfig) and cls.name == name
    assert ROUTING.get("expert_choice").causal is False
    assert all(ROUTING.get(n).causal for n in BUILT_INS if n != "expert_choice")


@pytest.mark.parametrize("spec, label, ept", [
    ({"name": "native"}, "native", 2.0),
    ({"name": "topk", "params": {"k": 1}}, "topk(k=1)", 1.0),
    ({"name": "topk", "params": {"k": 4, "renormalize": False}}, "topk(k=4,renormalize=false)", 4.0),
    ({"name": "topp", "params": {"p": 0.5, "max_k": 4}}, "topp(p=0.5,max_k=4)", None),
    ({"name": "random"}, "random", 2.0),
    ({"name": "random", "params": {"k": 3, "seed": 7}}, "random(k=3,seed=7)", 3.0),
    ({"name": "hash"}, "hash", 1.0),
    ({"name": "capacity", "params": {"capacity_factor": 1.25}}, "capacity(capacity_factor=1.25)", None),
    ({"name": "prune", "params": {"experts": [1, 2]}}, "prune(experts=[1,2])", 2.0),
    ({"name": "prune", "params": {"experts": [[1, 2, 3, 4, 5, 6, 7], [0]]}},
     "prune(experts=[[1,2,3,4,5,6,7],[0]])", 1.0),
    ({"name": "prune", "params": {"fraction": 0.75}}, "prune(fraction=0.75)", 2.0),
    ({"name": "prune", "params": {"keep": 1}}, "prune(keep=1)", 1.0),
    ({"name": "expert_choice"}, "expert_choice", None),
    ({"name": "aux_free", "params": {"gamma": 0.01}}, "aux_free(gamma=0.01)", 2.0),
])
def test_labels_and_experts_per_token(spec, label, ept):
    config = config_from_spec(spec)
    assert config.label() == label
    assert config.experts_per_token(2, 8) == ept
    assert config_from_spec({"name": spec["name"], "params": config.params()}) == config  # params round-trip
    hash(config)  # frozen, usable as a cache key


@pytest.mark.parametrize("spec, path, message", [
    ({"name": "topk", "params": {"k": 0}}, "params.k", "'topk': k must be a positive integer, got 0"),
    ({"name": "topk", "params": {"k": True}}, "params.k", "expected int, got bool True"),
    ({"name": "topk"}, "params", "missing 'k'"),
    ({"name": "topk", "params": {"k": 1, "kk": 2}}, "params.kk",
     r"unknown key \(did you mean 'k'\?\); known: k, renormalize"),
    ({"name": "topk", "params": {"k": 1, "renormalize": "yes"}}, "params.renormalize", "expected bool or null"),
    ({"name": "topp", "params": {"p": 0}}, "params.p", "'topp': p must be a positive number, got 0"),
    ({"name": "topp", "params": {"p": 1.5}}, "params", r"'topp': p must be in \(0, 1\], got 1.5"),
    ({"name": "topp", "params": {"p": 0.5, "min_k": 3, "max_k": 2}}, "params", r"max_k \(2\) is below min_k \(3\)"),
    ({"name": "random", "params": {"seed": 1.5}}, "params.seed", "expected int, got float 1.5"),
    ({"name": "capacity", "params": {"capacity_factor": -1}}, "params.capacity_factor",
     "capacity_factor must be a positive number"),
    ({"name": "prune", "params": {}}, "params", "give exactly one of experts, fraction, keep"),
    ({"name": "prune", "params": {"fraction": 0.5, "keep": 2}}, "params", r"\(got fraction, keep\)"),
    ({"name": "prune", "params": {"fraction": 1.0}}, "params", r"fraction must be a number in \[0, 1\)"),
    ({"name": "prune", "params": {"experts": [1, -2]}}, "params", "expert ids"),
    ({"name": "prune", "params": {"experts": [1, 1]}}, "params", "lists an expert twice"),
    ({"name": "aux_free", "params": {"gamma": -0.1}}, "params.gamma", "gamma must be a number >= 0"),
    ({"name": "topk", "params": [1]}, "params", "expected a map of parameters, got list"),
    ({"params": {}}, "", "missing 'name'"),
    ({"name": "topk", "k": 1}, "k", "unknown key; known: name, params"),
    ({"name": "topq"}, "", r"unknown routing strategy 'topq' \(did you mean 'top[kp]'\?\)"),
])
def test_bad_parameters_name_the_path_of_the_bad_value(spec, path, message):
    with pytest.raises(SchemaError) as info:
        config_from_spec(spec)
    assert info.value.path == ".".join(p for p in ("variant.routing", path) if p)
    assert re.search(message, info.value.message), info.value.message


@pytest.mark.parametrize("entry, param", [({"name": "topk", "k": "four"}, "k"), ({"name": "topk", "k": 0}, "k"),
                                          ({"name": "topk", "kk": 1}, "kk"), ({"name": "topk"}, None),
                                          ({"name": "topp", "p": 2.0}, None), ({"name": "topq"}, None)])
def test_suite_and_worker_say_the_same_about_a_routing_entry(entry, param):
    """One structurer (moe_schema.check.structure) on both sides: the suite's error at the entry's YAML
    path, the worker's at variant.routing, with the same message."""
    from harness.suite import SuiteError, parse
    from workers.builds.spec import check_variant
    from workers.errors import JobError

    suite = {"name": "t", "tasks": [], "models": [{"name": "moe", "routing": [entry],
                                                   "config": {"model_type": "olmoe", "hidden_size": 32}}]}
    with pytest.raises(SuiteError) as suite_info:
        parse(suite)
    params = {k: v for k, v in entry.items() if k != "name"}
    with pytest.raises(JobError) as worker_info:
        check_variant({"build": {"checkpoint": "/x"}, "routing": {"name": entry["name"], "params": params}})
    worker_path, _, worker_message = worker_info.value.message.partition(": ")
    in_suite = "models[0].routing[0]"
    assert suite_info.value.path == (in_suite + f".{param}" if param else in_suite)
    is_name_error = entry["name"] not in ROUTING.names()
    assert worker_path == ("variant.routing" if is_name_error else
                           "variant.routing.params" + (f".{param}" if param else ""))
    assert suite_info.value.message == worker_message


def test_unknown_name_gives_known_list_and_did_you_mean():
    with pytest.raises(UnknownName) as info:
        ROUTING.get("exprt_choice")
    assert "did you mean 'expert_choice'?" in str(info.value)
    assert "known: aux_free, capacity, expert_choice, hash, native" in str(info.value)


def test_third_party_strategy_found_through_its_entry_point_and_applied():
    proc = run_python("""
        import torch, transformers
        transformers.logging.set_verbosity_error()
        torch.set_num_threads(1)
        from transformers import OlmoeConfig, OlmoeForCausalLM
        from moe_schema.routing import ROUTING, config_from_spec
        from workers.routing.apply import apply
        cls = ROUTING.get("bottomk")
        assert cls.__module__ == "moe_harness_example_routing", cls
        assert "bottomk" in ROUTING.names()
        config = config_from_spec({"name": "bottomk", "params": {"k": 2}})
        assert config.label() == "bottomk(k=2)" and config.experts_per_token(4, 8) == 2.0
        torch.manual_seed(0)
        model = OlmoeForCausalLM(OlmoeConfig(vocab_size=64, hidden_size=32, intermediate_size=16,
            num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=4, num_experts=8,
            num_experts_per_tok=2, bos_token_id=None, eos_token_id=None, pad_token_id=None)).eval()
        ids = torch.randint(0, 64, (2, 8))
        session = apply(model, {"name": "bottomk", "params": {"k": 2}})
        seen = {}
        mlp = model.model.layers[0].mlp
        mlp.gate.register_forward_pre_hook(lambda m, a: seen.__setitem__("hidden", a[0]))
        mlp.experts.register_forward_pre_hook(lambda m, a: seen.__setitem__("index", a[1]))
        with torch.no_grad():
            model(input_ids=ids)
            probs = torch.softmax(seen["hidden"] @ mlp.gate.weight.T, dim=-1)
        least = torch.topk(probs, 2, dim=-1, largest=False).indices
        assert torch.equal(seen["index"].sort(-1).values, least.sort(-1).values)
        assert session.telemetry()["summary"]["experts_per_token_mean"] == 2
        print("OK", session.label)
    """, plugins=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "OK bottomk(k=2)" in proc.stdout


def test_third_party_strategy_absent_without_its_package():
    proc = run_python("""
        from moe_schema.routing import ROUTING
        try:
            ROUTING.get("bottomk")
        except KeyError as exc:
            print("ERR", exc)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "ERR unknown routing strategy 'bottomk'" in proc.stdout
