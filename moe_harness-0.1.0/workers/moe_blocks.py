"""Where a model's MoE blocks are, and how to read their routers: one place for routing, probes and training.

An MoE block is a module with a router child, ``gate`` (olmoe, mixtral, qwen2_moe, qwen3_moe) or
``router`` (granitemoe), holding a 2-D ``weight`` with one row per expert, beside an ``experts``
child. Found by structure, so a checkpoint of another family with the same layout is found too.

A router returns three tensors: the router logits (T, E), the top-k weights (T, k) and the top-k
index (T, k). Their order depends on the family and the transformers release: ``(logits, weights,
index)`` for most, ``(index, weights, logits)`` for granitemoe in 5.17. ``router_order`` finds it
from one tiny call (the index is the integer tensor); ``split_router_output`` reads any of them in
the canonical order, and a router put in place of another returns its order (``to_router_order``).
"""

from __future__ import annotations

import re

import attrs
import torch
from torch import nn

ROUTER_NAMES = ("gate", "router")
CANONICAL = ("logits", "weights", "index")
REVERSED = ("index", "weights", "logits")


@attrs.frozen
class MoeBlock:
    """One MoE block: ``module.<router_name>`` routes, ``module.experts`` holds the experts."""

    layer: int  # decoder layer index (ordinal among MoE blocks when the name holds none)
    name: str  # module path, e.g. "model.layers.3.mlp"
    module: nn.Module
    router_name: str  # "gate" or "router"
    num_experts: int
    top_k: int  # the checkpoint's experts per token

    @property
    def router(self) -> nn.Module:
        return self.module._modules[self.router_name]

    def set_router(self, new: nn.Module) -> None:
        setattr(self.module, self.router_name, new)

    @property
    def experts(self) -> nn.Module:
        return self.module._modules["experts"]


def find_moe_blocks(model: nn.Module) -> list[MoeBlock]:
    """The model's MoE blocks in order (dense layers, and dense models, have none)."""
    blocks = []
    for name, module in model.named_modules():
        experts = module._modules.get("experts")
        if experts is None:
            continue
        for router_name in ROUTER_NAMES:
            router = module._modules.get(router_name)
            weight = getattr(router, "weight", None)
            if isinstance(weight, torch.Tensor) and weight.dim() == 2:
                match = re.search(r"layers\.(\d+)\.", name + ".")
                layer = int(match.group(1)) if match else len(blocks)
                top_k = getattr(router, "top_k", None) or getattr(getattr(model, "config", None),
                                                                  "num_experts_per_tok", 1)
                blocks.append(MoeBlock(layer, name, module, router_name, int(weight.shape[0]), int(top_k)))
                break
    return blocks


def router_order(router: nn.Module) -> tuple[str, str, str]:
    """The order of ``router``'s three outputs, found once per router class by a one-token call
    (a router the harness put in place says it: ``output_order``)."""
    if isinstance(getattr(router, "output_order", None), tuple):
        return router.output_order
    router_class = type(router)
    known = _ORDERS.get(router_class)
    if known is not None:
        return known
    weight = router.weight
    if weight.device.type == "meta":
        return CANONICAL  # nothing to call on; every family but granitemoe 5.17 returns this
    with torch.no_grad():
        out = router.forward(torch.zeros(1, weight.shape[1], dtype=weight.dtype, device=weight.device))
    if not (isinstance(out, tuple) and len(out) == 3):
        raise ValueError(f"{router_class.__name__}: a router returning {type(out).__name__}, not "
                         f"(logits, weights, index), cannot be read")
    ints = [i for i, t in enumerate(out) if isinstance(t, torch.Tensor) and not t.is_floating_point()]
    if ints not in ([0], [2]):
        raise ValueError(f"{router_class.__name__}: cannot tell which of its outputs is the expert index")
    _ORDERS[router_class] = CANONICAL if ints == [2] else REVERSED
    return _ORDERS[router_class]


_ORDERS: dict[type, tuple[str, str, str]] = {}


def split_router_output(output, order: tuple[str, str, str] = CANONICAL):
    """``(logits, weights, index)`` from a router's output in ``order``."""
    by_name = dict(zip(order, output))
    return by_name["logits"], by_name["weights"], by_name["index"]


def to_router_order(logits, weights, index, order: tuple[str, str, str]) -> tuple:
    """The three outputs in ``order`` (what the block that calls the router unpacks)."""
    values = {"logits": logits, "weights": weights, "index": index}
    return tuple(values[name] for name in order)
