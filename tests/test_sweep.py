"""The `sweep:` suite key: grid expansion with twins re-derived at every point, pairs within a
point and seed, evaluation-only routing on the trained checkpoint, and one-line errors (exit 2)."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from harness import plan as planner
from harness.derive import count
from harness.pairs import match_pairs
from harness.suite import SuiteError, parse

SUITE = {
    "name": "sw",
    "seed": 5,
    "corpus": {"kind": "knowledge", "entities": 50, "tokens": 5000, "eval_per_bucket": 2},
    "train": {"tokens": 4096, "batch_size": 4, "seq_len": 32, "seeds": [1, 2]},
    "models": [
        {"name": "moe", "config": {"model_type": "olmoe", "hidden_size": 32, "intermediate_size": 32,
                                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_experts": 8,
                                   "num_experts_per_tok": 2},
         "routing": ["native"], "eval_routing": [{"name": "topk", "k": 1}, "random", {"name": "prune", "fraction": 0.25}]},
        {"name": "dense-active", "derive": {"from": "moe", "match": "active"}},
        {"name": "dense-total", "derive": {"from": "moe", "match": "total"}},
    ],
    "tasks": [{"corpus": "longtail_heldout"}],
    "sweep": {"train.tokens": [4096, 8192], "experts": [4, 16]},
}


def _suite(**changes):
    data = copy.deepcopy(SUITE)
    data.update(changes)
    return data


def _error(data) -> SuiteError:
    with pytest.raises(SuiteError) as info:
        parse(data)
    return info.value


def test_grid_copies_every_model_and_rederives_the_twins():
    suite = parse(_suite())
    names = [m.name for m in suite.models]
    assert len(names) == 4 * 3 and names[:3] == [
        "moe[train.tokens=4096,experts=4]", "dense-active[train.tokens=4096,experts=4]",
        "dense-total[train.tokens=4096,experts=4]"]
    by = {m.name: m for m in suite.models}
    for tokens in (4096, 8192):
        for experts, k in ((4, 1), (16, 4)):  # granularity: k scales with the experts
            label = f"[train.tokens={tokens},experts={experts}]"
            moe, da, dt = by[f"moe{label}"], by[f"dense-active{label}"], by[f"dense-total{label}"]
            cfg = moe.build["config"]
            assert (cfg["num_experts"], cfg["num_experts_per_tok"]) == (experts, k)
            assert moe.sweep == {"train.tokens": tokens, "experts": experts} == da.sweep == dt.sweep
            assert moe.train["tokens"] == da.train["tokens"] == tokens
            c = count(cfg)
            assert abs(c["active"] / count(SUITE["models"][0]["config"])["active"] - 1) < 0.01  # active fixed
            assert abs(count(da.build["config"])["total"] / c["active"] - 1) < 0.02  # twins of this point's MoE
            assert abs(count(dt.build["config"])["total"] / c["total"] - 1) < 0.02


def test_variant_specs_carry_their_point_and_pairs_stay_within_it():
    suite = parse(_suite())
    vs, jobs = planner.expand(suite)
    assert all("sweep" in v for v in vs)
    assert {v["name"]: v["sweep"] for v in vs}["moe[train.tokens=8192,experts=16]#s2"] == {
        "train.tokens": 8192, "experts": 16}
    # train.tokens changes no shape: every point's builds have the same counts, yet pairs stay in-point
    params, is_moe = {}, {}
    for v in vs:
        if v["routing"] is not None and v["routing"]["name"] != "native":
            continue
        cfg = next(m for m in suite.models if m.name == v["model"]).build["config"]
        params[v["name"]] = count(cfg)
        is_moe[v["name"]] = v["model"].startswith("moe")
    pairs = match_pairs(params, is_moe, 0.05)
    assert len(pairs) == 4 * 2 * 2  # points x seeds x {active, total}
    for p in pairs:
        assert p.moe[p.moe.index("["):] == p.dense[p.dense.index("["):]  # same point, same seed
    # the plan shows the grid
    doc = planner.plan_document(suite, vs, jobs)
    assert doc["sweep"]["settings"] == SUITE["sweep"] and len(doc["sweep"]["points"]) == 4


def test_eval_routing_uses_the_trained_checkpoint_of_the_native_variant():
    suite = parse(_suite(sweep=None))
    vs, jobs = planner.expand(suite)
    trains = {j.spec["variant"]["name"]: j for j in jobs if j.kind == "train"}
    assert set(trains) == {f"{m}#s{s}" for m in ("moe", "dense-active", "dense-total") for s in (1, 2)}
    evals = {j.variant: j for j in jobs if j.kind == "evaluate"}
    for seed in (1, 2):
        native = evals[f"moe#s{seed}"]
        for label in ("topk(k=1)", "random", "prune(fraction=0.25)"):
            job = evals[f"moe@{label}#s{seed}"]
            assert job.spec["variant"]["build"] == native.spec["variant"]["build"]  # the same trained weights
            assert job.after == native.after == trains[f"moe#s{seed}"].key
            assert job.spec["variant"]["routing"]["name"] == label.split("(")[0]
    # describe counts each routing on the build its checkpoint starts from
    from harness.plan import untrained

    described = untrained([j for j in jobs if j.kind == "describe"], jobs)
    assert all("config" in j.spec["variant"]["build"] for j in described)


def test_corpus_sweep_gives_each_point_its_own_corpus_and_tasks():
    suite = parse(_suite(sweep={"corpus.entities": [20, 40]}))
    vs, jobs = planner.expand(suite)
    for j in jobs:
        if j.kind in ("train", "evaluate"):
            entities = (j.spec["corpus"] if j.kind == "train" else j.spec["task"]["corpus"])["entities"]
            assert entities == j.spec["variant"]["sweep"]["corpus.entities"], j.variant


def test_without_a_sweep_nothing_changes_but_the_empty_sweep():
    suite = parse(_suite(sweep=None))
    assert [m.name for m in suite.models] == ["moe", "dense-active", "dense-total"]
    vs, _ = planner.expand(suite)
    assert all(v["sweep"] == {} for v in vs)


@pytest.mark.parametrize("sweep,needle", [
    ({"top_k": [1, "two"]}, "sweep.top_k[1]: expected int >= 1, got 'two'"),
    ({"top_k": [1, 9]}, "sweep.top_k[1]: 9 experts per token, but models[0] 'moe' has 8 experts"),
    ({"train.tokens": [100, 0]}, "sweep.train.tokens[1]: expected int >= 1, got int 0"),
    ({"train.aux_loss_coef": [0.01, True]}, "sweep.train.aux_loss_coef[1]: expected number >= 0, got bool True"),
    ({"experts": [4, 6]}, "sweep.experts[1]: 6 experts at the granularity of 8 experts x top-2 need top-1.5 per"),
    ({"corpus.entities": [5]}, "sweep.corpus.entities[0]: expected int >= 10, got int 5"),
    ({"top_q": [1]}, "sweep.top_q: unknown sweep setting; known: train.tokens"),
    ({"top_k": []}, "sweep.top_k: expected a non-empty list of values"),
    ({"top_k": [1, 1]}, "sweep.top_k: value 1 listed twice"),
    ([1, 2], "sweep: expected a map of setting: [values]"),
])
def test_bad_sweeps_name_their_yaml_path(sweep, needle):
    assert needle in str(_error(_suite(sweep=sweep)))


def test_train_settings_need_a_train_section():
    data = _suite(sweep={"train.tokens": [1, 2]})
    del data["train"]
    assert "sweep.train.tokens: sweeps a train setting, but the suite has no 'train'" in str(_error(data))
    dense_only = _suite(sweep={"top_k": [1]}, models=[{"name": "d", "config": {"model_type": "llama",
                                                                                "hidden_size": 32}}])
    assert "sweep.top_k: no config MoE build" in str(_error(dense_only))


@pytest.mark.parametrize("command", ["plan", "run"])
def test_cli_exit_2_with_the_path(tmp_path, command):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(_suite(sweep={"top_k": [1, "x"]})))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", command, str(f)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert [x for x in proc.stderr.splitlines() if x.strip()] == [
        "harness: sweep.top_k[1]: expected int >= 1, got 'x'"]


def test_plan_prints_the_points(tmp_path):
    f = tmp_path / "ok.yaml"
    f.write_text(yaml.safe_dump(_suite(), sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "plan", str(f)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "sweep: 4 point(s) over train.tokens, experts" in proc.stdout
    assert "[train.tokens=8192,experts=16]: moe[train.tokens=8192,experts=16]" in proc.stdout.replace("\n  ", " ")


@pytest.mark.parametrize("family,experts_key", [("olmoe", "num_experts"), ("mixtral", "num_local_experts"),
                                                ("qwen3_moe", "num_experts")])
def test_regranulate_keeps_active_parameters(family, experts_key):
    from harness.derive import DeriveError, regranulate

    base = {"model_type": family, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            experts_key: 8, "num_experts_per_tok": 2,
            ("moe_intermediate_size" if family == "qwen3_moe" else "intermediate_size"): 64}
    for e, k in ((4, 1), (16, 4), (32, 8)):
        cfg = regranulate(base, e)
        assert (cfg[experts_key], cfg["num_experts_per_tok"]) == (e, k)
        assert abs(count(cfg)["active"] / count(base)["active"] - 1) < 0.01
        assert abs(count(cfg)["total"] / count(base)["total"] - 1) < 0.05  # E x width stays about fixed
    with pytest.raises(DeriveError, match="top-0.5 per token"):
        regranulate(base, 2)
