"""The training recipe, pinned: every loss term (language-model loss, load balancing, router z-loss)
reaches the gradient through the objective the train loop differentiates (``step_loss``), the loop
uses that objective, and the data order is a fresh permutation of every window each epoch."""

from __future__ import annotations

import threading

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from workers.training.data import Batches  # noqa: E402
from workers.training.losses import RouterLosses  # noqa: E402

CONFIG = {"model_type": "olmoe", "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
          "num_attention_heads": 2, "num_key_value_heads": 2, "num_experts": 4, "num_experts_per_tok": 2,
          "max_position_embeddings": 64}
TRAIN = {"aux_loss_coef": 0.0, "z_loss_coef": 0.0}
CPU = {"device_type": "cpu", "dtype": None, "enabled": False}


@pytest.fixture(scope="module")
def model():
    from workers.builds.materialize import instantiate

    return instantiate({"config": CONFIG, "seed": 0}).train()


def _grads(model, **coefs):
    from workers.training.job import step_loss

    torch.manual_seed(0)
    batch = torch.randint(0, 259, (2, 17))
    router = RouterLosses(model)
    try:
        total, lm, balance, z = step_loss(model, batch, router, {**TRAIN, **coefs}, CPU)
        model.zero_grad(set_to_none=True)
        total.backward()
    finally:
        router.remove()
    grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
             for n, p in model.named_parameters()}
    return grads, tuple(float(x.detach()) for x in (total, lm, balance, z))


def _router(grads):
    return torch.cat([g.flatten() for n, g in grads.items() if ".gate." in n or n.endswith(".gate.weight")])


def test_lm_loss_reaches_every_trainable_part(model):
    grads, (total, lm, _, _) = _grads(model)
    assert total == pytest.approx(lm)
    assert grads["lm_head.weight"].abs().sum() > 0 and grads["model.embed_tokens.weight"].abs().sum() > 0
    assert _router(grads).abs().sum() > 0


@pytest.mark.parametrize("term,index", [("aux_loss_coef", 2), ("z_loss_coef", 3)])
def test_each_router_loss_reaches_the_router_gradient(model, term, index):
    base, _ = _grads(model)
    moved, values = _grads(model, **{term: 10.0})
    assert values[0] == pytest.approx(values[1] + 10.0 * values[index], rel=1e-5)  # total = lm + coef * term
    diff = (_router(moved) - _router(base)).abs().max()
    assert diff > 1e-6, f"{term}: the router's gradient does not change with the term's coefficient"
    assert torch.equal(moved["lm_head.weight"], base["lm_head.weight"])  # the term touches only the router path


def test_the_train_loop_differentiates_step_loss(monkeypatch, tmp_path):
    from workers.host import Host
    from workers.training import job

    calls, real = [], job.step_loss

    def spy(model, batch, router, train, autocast):
        out = real(model, batch, router, train, autocast)
        calls.append(out[0].requires_grad)
        return out

    monkeypatch.setattr(job, "step_loss", spy)
    spec = {"kind": "train", "seed": 0,
            "variant": {"name": "r", "model": "r", "routing": None, "build": {"config": CONFIG, "seed": 0}},
            "corpus": {"kind": "knowledge", "entities": 10, "tokens": 4000, "eval_per_bucket": 1, "heldout_docs": 1},
            "train": {"tokens": 3 * 2 * 32, "batch_size": 2, "seq_len": 32, "warmup_steps": 1, "heldout_points": 0}}
    result = job.run(spec, Host("cpu", home=tmp_path), lambda *a: None, threading.Event())
    assert calls == [True] * result["train"]["steps"] == [True] * 3
    assert result["train"]["aux_losses"]["balance_coef"] == 0.01  # the defaults' coefficients are recorded


def test_data_order_is_a_new_permutation_every_epoch():
    windows, seq = 12, 4
    tokens = np.arange(windows * seq + 1, dtype=np.uint16)
    b = Batches(tokens, batch_size=3, seq_len=seq, seed=7)
    per_epoch = windows // 3

    def epoch(e, batches=b):
        return [int(row[0]) // seq for s in range(e * per_epoch, (e + 1) * per_epoch) for row in batches.at(s)]

    orders = [epoch(e) for e in range(3)]
    for o in orders:
        assert sorted(o) == list(range(windows))  # every window once per epoch
    assert orders[0] != orders[1] and orders[1] != orders[2]  # the order changes between epochs
    assert orders == [epoch(e, Batches(tokens, 3, seq, 7)) for e in range(3)]  # a pure function of (seed, step)
    assert orders[0] != epoch(0, Batches(tokens, 3, seq, 8))  # and of the seed
