"""workers.training: a tiny train job lowers the loss, checkpoints, resumes after SIGKILL, and the
trained checkpoint loads with AutoModelForCausalLM and evaluates per bucket through workers.evaluation."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from moe_schema.train import TrainSpecError, check_train, resume_dir, trained_build, trained_dir, train_key

CONFIG = dict(model_type="olmoe", hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, num_experts=4, num_experts_per_tok=2)
JOB = {
    "kind": "train",
    "variant": {"name": "tiny-moe", "model": "tiny-moe", "build": {"config": CONFIG, "seed": 0}, "routing": None},
    "corpus": {"kind": "knowledge", "entities": 100, "tokens": 40_000, "eval_per_bucket": 8},
    "train": {"tokens": 60 * 8 * 64, "batch_size": 8, "seq_len": 64, "lr": 3e-3, "warmup_steps": 5,
              "checkpoint_every": 20, "log_every": 10},
    "seed": 0,
}


def _host(home):
    import torch

    from workers.host import Host

    torch.set_num_threads(1)
    return Host("cpu", home=home)


def _run(job, home, progress=lambda d, t, n: None, cancelled=None):
    from workers.training.job import run

    return run(job, _host(home), progress, cancelled or threading.Event())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The uninterrupted reference run (about 3 s on one core)."""
    home = tmp_path_factory.mktemp("train_home")
    return home, _run(JOB, home)


def test_loss_drops_and_result_shape(trained):
    home, result = trained
    t = result["train"]
    assert t["steps"] == 60 and t["tokens"] == 60 * 8 * 64 and t["resumed_from"] is None
    assert [p["step"] for p in t["curve"]] == [10, 20, 30, 40, 50, 60]
    assert t["final_loss"] < 0.7 * t["initial_loss"]  # byte-level loss from ~5.5 to ~3
    assert t["tokens_per_s"] > 0 and t["mfu"] is None and "cpu" in t["mfu_note"]
    assert t["curve"][0]["balance_loss"] >= 1.0 - 1e-3  # E * sum f P >= 1, = 1 when balanced
    assert result["params"]["num_experts"] == 4 and result["build"]["moe"] is True
    regime = result["corpus"]["regime"]
    assert regime["tokens_per_param"] == pytest.approx(t["tokens"] / result["params"]["total"])
    assert set(regime["exposures_per_fact"]) == {"head", "torso", "tail"}
    assert isinstance(regime["facts_exceed_capacity"], bool)
    json.dumps(result)  # JSON-safe (and so msgpack-safe)


def test_heldout_curve_is_log_spaced_and_ends_at_the_end(trained):
    """train.heldout_curve (the contract with the report): held-out loss on seen and unseen entities'
    biographies at log-spaced token counts, the last at the end, seconds excluding the evaluation."""
    import numpy as np

    from workers.training.heldout import curve_steps

    home, result = trained
    t = result["train"]
    curve = t["heldout_curve"]
    tokens = [p["tokens"] for p in curve]
    assert tokens == [s * 8 * 64 for s in curve_steps(60, 8)] and tokens[-1] == t["tokens"]
    assert len(curve) >= 6 and tokens == sorted(set(tokens))
    ratios = np.diff(np.log(tokens))
    assert ratios.max() < 3 * ratios[1:].min() + 1e-9  # evenly spaced in log tokens, up to rounding
    seconds = [p["seconds"] for p in curve]
    assert seconds == sorted(seconds) and 0 < seconds[-1] <= t["train_s"] + 1e-6
    for p in curve:
        assert set(p["loss"]) == {"seen", "unseen"} and all(0 < v < 10 for v in p["loss"].values())
    assert curve[-1]["loss"]["seen"] < curve[0]["loss"]["seen"] - 1  # it learns the language of bios
    assert curve_steps(1000, 8)[0] == 10 and curve_steps(1000, 8)[-1] == 1000 and curve_steps(5, 0) == []
    corpus = result["corpus"]
    assert corpus["fact_bits"] > 0 and corpus["capacity_bits"] == 2 * result["params"]["total"]
    assert corpus["tokens_per_param"] == pytest.approx(t["tokens"] / result["params"]["total"])


def test_measuring_heldout_loss_changes_no_training(tmp_path):
    """The held-out forwards (MoE router outputs included) leave the training itself untouched."""
    short = {**JOB["train"], "tokens": 6 * 8 * 64, "log_every": 1}
    on = _run({**JOB, "train": {**short, "heldout_points": 6}}, tmp_path / "on")["train"]
    off = _run({**JOB, "train": {**short, "heldout_points": 0}}, tmp_path / "off")["train"]
    assert len(on["heldout_curve"]) >= 4 and off["heldout_curve"] == []
    assert [p["loss"] for p in on["curve"]] == [p["loss"] for p in off["curve"]]
    assert [p["balance_loss"] for p in on["curve"]] == [p["balance_loss"] for p in off["curve"]]


def test_heldout_loss_is_lm_evals_rolling_loglikelihood(trained):
    """The curve scores its documents like lm-eval's loglikelihood_rolling (the prefix token, BOS
    for the byte tokenizer, then every byte): nats per byte on the batch match the harness LM's."""
    import math

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workers.engines.transformers.lm import HarnessLM
    from workers.training.heldout import HeldoutEval, heldout_documents

    home, result = trained
    path = result["build"]["checkpoint"]
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    meta = {"tasks": result["corpus"]["tasks"]}
    docs = heldout_documents(meta, 5)
    ours = HeldoutEval.create(meta, 5, 1 << 30, "cpu", prefix_id=257).loss(model, {"device_type": "cpu", "enabled": False})
    lm = HarnessLM(model, AutoTokenizer.from_pretrained(path))
    from lm_eval.api.instance import Instance

    for kind, texts in docs.items():
        reqs = [Instance("loglikelihood_rolling", {}, (t,), i) for i, t in enumerate(texts)]
        ll = lm.loglikelihood_rolling(reqs)
        nats = -sum(ll) / sum(len(t.encode()) for t in texts)
        assert math.isclose(ours[kind], nats, rel_tol=1e-4), (kind, ours[kind], nats)


def test_checkpoint_is_ordinary_hf_dir_and_rerun_is_reused(trained):
    home, result = trained
    final = trained_dir(JOB, home)
    assert result["build"]["checkpoint"] == str(final)
    assert trained_build(JOB) == {"trained": train_key(JOB)} and final.name == train_key(JOB)
    names = {p.name for p in final.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "train.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    assert not resume_dir(JOB, home).exists()
    again = _run(JOB, home)
    assert again["train"]["reused"] is True and again["train"]["curve"] == result["train"]["curve"]


def test_trained_build_loads_and_evaluates_per_bucket(trained):
    import torch
    from transformers import AutoModelForCausalLM

    home, result = trained
    path = result["build"]["checkpoint"]
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == "OlmoeForCausalLM"
    from workers.evaluation.job import run as evaluate

    host = _host(home)
    variant = {"name": "trained", "model": "trained", "build": trained_build(JOB), "routing": None}  # as planned
    loaded = host.load(variant)
    task = {"name": "longtail", "path": result["corpus"]["tasks"]["longtail"], "limit": None, "num_fewshot": 0}
    out = evaluate({"kind": "evaluate", "variant": variant, "task": task, "seed": 0}, loaded,
                   lambda *a: None, threading.Event())
    assert set(out["samples"]) == {"longtail_head", "longtail_torso", "longtail_tail"}
    for name in out["samples"]:
        assert len(out["samples"][name]) == 8 * 5
        assert 0 <= out["metrics"][name]["acc"] <= 1 and "bucket" not in out["metrics"]
    with torch.no_grad():  # the evaluated weights are the trained ones, not the fresh build's
        fresh = AutoModelForCausalLM.from_pretrained(str(Path(home) / "builds" / os.listdir(Path(home) / "builds")[0]))
        assert not torch.equal(fresh.model.embed_tokens.weight, model.model.embed_tokens.weight)


_CHILD = textwrap.dedent("""
    import json, sys, threading, time
    import torch
    torch.set_num_threads(1)
    from workers.host import Host
    from workers.training.job import run
    job, home = json.loads(sys.argv[1]), sys.argv[2]
    def progress(done, total, note):
        time.sleep(0.2 if done >= 20 else 0)  # slow down after the first checkpoint: the parent kills us
    run(job, Host("cpu", home=home), progress, threading.Event())
""")


def test_resumes_after_sigkill_and_ends_with_the_same_weights(trained, tmp_path):
    import torch
    from safetensors.torch import load_file

    home, reference = trained
    other = tmp_path / "home"
    env = {**os.environ, "MOE_HARNESS_HOME": str(other)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(JOB), str(other)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    latest = resume_dir(JOB, other) / "latest.json"
    deadline = time.monotonic() + 120
    while not latest.exists():
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (trained_dir(JOB, other) / "train.json").exists()
    saved = json.loads(latest.read_text())["step"]
    assert saved == 20
    result = _run(JOB, other)
    assert result["train"]["resumed_from"] == saved
    assert result["train"]["curve"][-1]["step"] == 60
    a = load_file(str(trained_dir(JOB, other) / "model.safetensors"))
    b = load_file(str(trained_dir(JOB, home) / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    assert result["train"]["curve"][-1]["loss"] == pytest.approx(reference["train"]["curve"][-1]["loss"], rel=1e-4)
    # the held-out curve measured before the kill came back with the resume state
    got, want = result["train"]["heldout_curve"], reference["train"]["heldout_curve"]
    assert [p["tokens"] for p in got] == [p["tokens"] for p in want]
    assert any(p["tokens"] <= saved * 8 * 64 for p in got)
    for a_, b_ in zip(got, want):
        for kind in ("seen", "unseen"):
            assert a_["loss"][kind] == pytest.approx(b_["loss"][kind], rel=1e-4)


def test_cancel_saves_state_and_raises(tmp_path):
    from workers.errors import JobCancelled

    cancelled = threading.Event()
    job = {**JOB, "train": {**JOB["train"], "tokens": 12 * 8 * 64}}

    def progress(done, total, note):
        if done == 3:
            cancelled.set()

    with pytest.raises(JobCancelled, match="cancelled at step 3 of 12"):
        _run(job, tmp_path, progress, cancelled)
    assert json.loads((resume_dir(job, tmp_path) / "latest.json").read_text())["step"] == 3
    result = _run(job, tmp_path)
    assert result["train"]["resumed_from"] == 3 and result["train"]["steps"] == 12


def test_a_diverged_training_fails_the_job_naming_the_step_and_lr(tmp_path):
    """A finite but absurd lr makes the loss NaN: the job fails in one line naming the step and the
    lr, and leaves no trained checkpoint (nothing is cached or evaluated). The neighbouring sane lr
    trains (the ``trained`` fixture)."""
    from moe_schema import protocol
    from workers.errors import JobError

    job = {**JOB, "train": {**JOB["train"], "tokens": 6 * 8 * 64, "lr": 1e10, "warmup_steps": 1, "log_every": 3}}
    with pytest.raises(JobError) as err:
        _run(job, tmp_path)
    assert err.value.code == protocol.JOB_FAILED and "\n" not in err.value.message
    assert re.match(r"train loss is nan at step [1-6] \(lr 1e\+10\): the training diverged", err.value.message)
    assert not (trained_dir(job, tmp_path) / "train.json").exists()


def test_dense_build_trains_without_router_losses(tmp_path):
    from harness.derive import derive_twin

    dense = derive_twin(CONFIG, "active")
    job = {**JOB, "variant": {**JOB["variant"], "build": {"config": dense, "seed": 0}},
           "train": {**JOB["train"], "tokens": 6 * 8 * 64, "log_every": 3}}
    result = _run(job, tmp_path)
    assert result["train"]["aux_losses"] is None and "balance_loss" not in result["train"]["curve"][0]
    assert result["params"]["num_experts"] is None and result["build"]["family"] == "olmo"


def test_expert_choice_routing_during_training(tmp_path):
    job = {**JOB, "variant": {**JOB["variant"], "routing": {"name": "expert_choice", "params": {}}},
           "train": {**JOB["train"], "tokens": 6 * 8 * 64, "log_every": 3}}
    result = _run(job, tmp_path)
    assert train_key(job) != train_key(JOB)
    assert result["routing"] is not None and result["train"]["curve"][-1]["loss"] < result["train"]["curve"][0]["loss"] + 1
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(result["build"]["checkpoint"])  # native routers saved back


def test_aux_free_bias_is_saved_with_the_checkpoint_and_routed_with_again(tmp_path):
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    from workers.routing.apply import apply
    from workers.routing.base import ROUTING_STATE

    job = {**JOB, "variant": {**JOB["variant"], "routing": {"name": "aux_free", "params": {"gamma": 0.01}}},
           "train": {**JOB["train"], "tokens": 6 * 8 * 64, "log_every": 3}}
    result = _run(job, tmp_path)
    ckpt = result["build"]["checkpoint"]
    assert (Path(ckpt) / ROUTING_STATE).is_file()
    model = AutoModelForCausalLM.from_pretrained(ckpt).eval()  # an ordinary checkpoint: native routers
    session = apply(model, {"name": "aux_free", "params": {"gamma": 0.01}})
    learned = torch.stack([session.strategy.bias(g.position) for g in session.gates])
    assert learned.abs().sum() > 0, "the bias learned in training is routed with"
    session.restore()
    config = copy.deepcopy(model.config)
    config._name_or_path = ""
    fresh = AutoModelForCausalLM.from_config(config).eval()  # not from the checkpoint: zero bias
    other = apply(fresh, {"name": "aux_free", "params": {}})
    assert all(torch.equal(other.strategy.bias(g.position), torch.zeros(4)) for g in other.gates)


def test_aux_free_bias_survives_an_interrupted_run(tmp_path):
    """Cancelled at step 3 and resumed, an aux_free run ends with the bias of an uninterrupted one."""
    import torch
    from safetensors.torch import load_file

    from workers.errors import JobCancelled
    from workers.routing.base import ROUTING_STATE

    job = {**JOB, "variant": {**JOB["variant"], "routing": {"name": "aux_free", "params": {"gamma": 0.01}}},
           "train": {**JOB["train"], "tokens": 6 * 8 * 64, "log_every": 3}}
    straight = _run(job, tmp_path / "straight")
    cancelled = threading.Event()
    with pytest.raises(JobCancelled):
        _run(job, tmp_path / "broken", lambda done, total, note: done == 3 and cancelled.set(), cancelled)
    step = resume_dir(job, tmp_path / "broken") / "step-00000003"
    halfway = load_file(str(step / "routing.safetensors"))
    assert sum(b.abs().sum() for b in halfway.values()) > 0  # three steps of updates were kept
    resumed = _run(job, tmp_path / "broken")
    assert resumed["train"]["resumed_from"] == 3
    a = load_file(str(Path(straight["build"]["checkpoint"]) / ROUTING_STATE))
    b = load_file(str(Path(resumed["build"]["checkpoint"]) / ROUTING_STATE))
    assert a.keys() == b.keys() == halfway.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_schedule_and_data_order():
    import numpy as np

    from workers.training.data import Batches
    from workers.training.schedule import lr_at

    assert lr_at(0, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10, 0.1) == pytest.approx(1.0)
    assert lr_at(99, 100, 1.0, 10, 0.1) == pytest.approx(0.1, abs=1e-3)
    tokens = np.arange(1000, dtype=np.uint16)
    a, b = Batches(tokens, 4, 16, seed=1), Batches(tokens, 4, 16, seed=1)
    assert np.array_equal(a.at(7), b.at(7)) and a.at(7).shape == (4, 17)
    assert not np.array_equal(a.at(7), Batches(tokens, 4, 16, seed=2).at(7))
    epoch = [tuple(a.at(s)[:, 0]) for s in range(62 // 4)]  # 62 windows: every one visited once per epoch
    assert len({x for row in epoch for x in row}) == 60
    with pytest.raises(ValueError, match="shorter than one sequence"):
        Batches(tokens[:10], 4, 16, seed=0)


@pytest.mark.parametrize("train,needle", [
    ({"lr": -1}, "job.train.lr: expected a number >= 0"),
    ({"batch": 4}, "job.train.batch: unknown key (did you mean 'batch_size'?)"),
    ({"seq_len": 1}, "job.train.seq_len: expected an int >= 2"),
    ({"betas": [0.9]}, "job.train.betas"),
    ({"autocast": "fp8"}, "job.train.autocast"),
])
def test_bad_train_specs_name_the_field(train, needle):
    with pytest.raises(TrainSpecError) as err:
        check_train(train)
    assert needle in str(err.value)


def test_bad_job_is_invalid_params(tmp_path):
    from workers.errors import JobError

    with pytest.raises(JobError, match="job.corpus.kind"):
        _run({**JOB, "corpus": {"kind": "nope"}}, tmp_path)
    with pytest.raises(JobError, match="job.train.tokens"):
        _run({**JOB, "train": {"tokens": 0}}, tmp_path)
