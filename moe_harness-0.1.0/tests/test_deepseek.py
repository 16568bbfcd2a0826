"""deepseek_v3 config builds (fine-grained routed experts + shared experts, latent attention):
built by transformers' own class, counted like the arithmetic, routed and probed like any MoE."""

from __future__ import annotations

import pytest
import torch

from harness import derive
from test_counting import DEEPSEEK


@pytest.fixture(scope="module")
def model(one_torch_thread):
    from workers.builds.materialize import instantiate

    return instantiate({"config": DEEPSEEK, "seed": 0})


def test_blocks_counts_and_roofline_shape(model):
    from workers.builds.params import count_params
    from workers.moe_blocks import find_moe_blocks
    from workers.probes.shape import shape_of

    blocks = find_moe_blocks(model)
    assert [b.layer for b in blocks] == [1, 2]  # first_k_dense_replace = 1: layer 0 stays dense
    assert {(b.num_experts, b.top_k) for b in blocks} == {(8, 2)}
    counted = count_params(model)
    assert {k: counted[k] for k in ("total", "active")} == {k: derive.count(DEEPSEEK)[k] for k in ("total", "active")}
    shape = shape_of(model)
    assert shape.total_params == counted["total"] and (shape.moe_layers, shape.top_k) == (2, 2)


def test_routing_strategies_replace_its_routers(model):
    from workers.routing.apply import apply

    tokens = torch.tensor([[3, 4, 5, 6, 7, 8]])
    for spec, k in ((None, 2.0), ({"name": "topk", "params": {"k": 1}}, 1.0)):
        session = apply(model, spec)
        with torch.no_grad():
            model(tokens)
        assert session.telemetry()["summary"]["experts_per_token_mean"] == k
        session.restore()
