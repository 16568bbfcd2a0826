"""``RoutedGate``: the module put in place of an MoE block's router while a strategy is applied.

It shares the original router's weight (same ``Parameter``: training updates it, ``state_dict``
keys are unchanged), asks the strategy for a route, records telemetry, and returns what the
transformers router returns: ``(router_logits, top_k_weights, top_k_index)``, in the order that
router uses (``workers.moe_blocks.router_order``).

Its class is made per router class as ``Routed<RouterClass>(RoutedGate, RouterClass)`` so that
``isinstance(gate, OlmoeTopKRouter)`` still holds: transformers finds the routers by class to
collect ``router_logits`` for the load-balancing loss (``output_router_logits``).

Fewer experts for some tokens: empty slots carry index ``num_experts`` where the experts
implementation skips it, else the token's first expert at weight 0 (``workers.experts.sentinel``).
Slots no token uses are trimmed first.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from workers.experts.sentinel import fill_empty_slots, skips_sentinel
from workers.moe_blocks import router_order, split_router_output, to_router_order
from workers.routing.base import Routed
from workers.routing.telemetry import LayerCounts


class RoutingContext:
    """The current batch's input ids and attention mask, captured by hooks on the model; and
    ``counted``, set by the caller (the evaluation LM) for the forwards it runs: how many times each
    token counts in the telemetry, (batch, seq) per token or (batch,) per row (``token_counts``)."""

    def __init__(self):
        self.input_ids: torch.Tensor | None = None
        self.attention_mask: torch.Tensor | None = None
        self.position_ids: torch.Tensor | None = None
        self.cache_position: torch.Tensor | None = None
        self.counted: torch.Tensor | None = None  # not cleared per forward: the caller sets and unsets it

    def clear(self) -> None:
        self.input_ids = self.attention_mask = self.position_ids = self.cache_position = None

    def token_positions(self, n: int) -> torch.Tensor | None:
        """(n,) each token's position in its sequence: the call's ``position_ids`` (packed rows pass
        them), else counted from a 2-D attention mask (left padding), else ``cache_position``."""
        ids = self.input_ids
        if ids is None or ids.numel() != n or ids.dim() != 2:
            return None
        batch, seq = ids.shape
        if self.position_ids is not None and self.position_ids.numel() in (n, seq):
            return self.position_ids.expand(batch, seq).reshape(-1)
        mask = self.attention_mask
        if mask is not None and mask.dim() == 2 and mask.shape[0] == batch and mask.shape[1] >= seq:
            counted = mask.long().cumsum(dim=1) - 1
            return counted[:, mask.shape[1] - seq:].clamp_min(0).reshape(-1)
        start = self.cache_position if self.cache_position is not None and self.cache_position.numel() == seq else None
        positions = start if start is not None else torch.arange(seq, device=ids.device)
        return positions.expand(batch, seq).reshape(-1)

    def token_ids(self, n: int) -> torch.Tensor | None:
        ids = self.input_ids
        return ids.reshape(-1) if ids is not None and ids.numel() == n else None

    def token_mask(self, n: int) -> torch.Tensor | None:
        """(n,) bool: False on padding, for a batch of n = batch * seq tokens (None if unknown)."""
        mask = self.attention_mask
        if mask is None or mask.dim() != 2 or n % mask.shape[0]:
            return None
        seq = n // mask.shape[0]
        if mask.shape[1] < seq:
            return None
        return mask[:, mask.shape[1] - seq:].reshape(-1).bool()

    def token_counts(self, n: int) -> torch.Tensor | None:
        """(n,) long: how many times each of the n tokens counts in the telemetry: 0 on padding
        (``token_mask``), times the caller's ``counted`` when set; None: every token once."""
        mask = self.token_mask(n)
        counts = None if mask is None else mask.long()
        given = self.counted
        if given is None:
            return counts
        if given.dim() == 2 and given.numel() == n:
            per = given.reshape(-1)
        elif given.dim() == 1 and given.numel() and n % given.numel() == 0:
            per = given.repeat_interleave(n // given.numel())
        else:
            raise ValueError(f"routing telemetry: counted {tuple(given.shape)} does not fit a forward of {n} tokens")
        per = per.to(dtype=torch.long, device=mask.device if mask is not None else per.device)
        return per if counts is None else counts * per


class RoutedGate(nn.Module):
    def __init__(self, original: nn.Module, experts: nn.Module, strategy, context: RoutingContext,
                 layer: int, position: int):
        nn.Module.__init__(self)  # not the router class's __init__: it wants a config
        for key, value in vars(original).items():  # top_k, num_experts, norm_topk_prob, hidden_dim...
            if not key.startswith("_"):  # `training` too: self.train() below sets it again
                setattr(self, key, value)
        self.weight = original.weight
        # hooks already on the original (e.g. transformers' router_logits recorder) keep firing
        self._forward_hooks = OrderedDict(original._forward_hooks)
        self._forward_hooks_with_kwargs = OrderedDict(original._forward_hooks_with_kwargs)
        self._forward_hooks_always_called = OrderedDict(original._forward_hooks_always_called)
        self._forward_pre_hooks = OrderedDict(original._forward_pre_hooks)
        self._forward_pre_hooks_with_kwargs = OrderedDict(original._forward_pre_hooks_with_kwargs)
        # plain attributes, not submodules: they must not show up in named_modules / state_dict
        self.__dict__["_original"] = original
        self.__dict__["_experts"] = experts
        self.__dict__["strategy"] = strategy
        self.__dict__["context"] = context
        self.num_experts = int(original.weight.shape[0])
        self.top_k = int(getattr(original, "top_k", 1))
        self.norm_topk_prob = bool(getattr(original, "norm_topk_prob", True))  # mixtral: always
        self.output_order = router_order(original)
        self.weights_in_float32 = _returns_float32_weights(original, self.output_order)
        self.layer, self.position = layer, position
        self.counts = LayerCounts(self.num_experts)
        self.train(original.training)

    # ---- for strategies
    def router_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(hidden, self.weight)

    def native(self, hidden: torch.Tensor):
        """The checkpoint's own router forward as ``(logits, weights, index)`` (hooks not run twice)."""
        return split_router_output(self._original.forward(hidden), self.output_order)

    def token_ids(self, n: int) -> torch.Tensor | None:
        return self.context.token_ids(n)

    def token_mask(self, n: int) -> torch.Tensor | None:
        return self.context.token_mask(n)

    def token_positions(self, n: int) -> torch.Tensor | None:
        return self.context.token_positions(n)

    # ---- the router call
    def forward(self, hidden_states: torch.Tensor):
        hidden = hidden_states.reshape(-1, self.weight.shape[1])
        routed: Routed = self.strategy.route(self, hidden)
        self.counts.record(routed.index, self.context.token_counts(hidden.shape[0]), routed.dropped, routed.requested)
        weights, index = routed.weights, routed.index
        if routed.padded:
            weights, index = self._fit_experts(weights, index)
        return to_router_order(routed.logits, weights, index, self.output_order)

    def _fit_experts(self, weights: torch.Tensor, index: torch.Tensor):
        """Make empty slots exact for the experts implementation in use (see the module docstring)."""
        empty = index >= self.num_experts
        # used slots first, in order (dim 1 is the last axis; torch on CPU sorts stably even unasked)
        order = empty.to(torch.int8).argsort(dim=1, stable=True)  # pragma: no mutate (equivalent on CPU)
        index, weights, empty = index.gather(1, order), weights.gather(1, order), empty.gather(1, order)
        width = max(1, int((~empty).sum(dim=1).max())) if index.numel() else index.shape[1]
        index, weights, empty = index[:, :width], weights[:, :width], empty[:, :width]
        weights = weights.masked_fill(empty, 0.0)
        implementation = getattr(getattr(self._experts, "config", None), "_experts_implementation", None)
        if skips_sentinel(self._experts, implementation):
            return weights, index.masked_fill(empty, self.num_experts)
        index, weights = fill_empty_slots(index, weights, self.num_experts)
        return weights, index

    def extra_repr(self) -> str:
        return f"layer={self.layer}, experts={self.num_experts}, strategy={self.strategy.config.label()}"


def _returns_float32_weights(router: nn.Module, order) -> bool:
    """Does the checkpoint's router hand float32 weights to the experts whatever the model dtype?
    (Mixtral does; OLMoE and Qwen cast to the logits' dtype.) Found by one tiny router call."""
    weight = router.weight
    if weight.device.type == "meta" or weight.dtype == torch.float32:
        return weight.dtype == torch.float32
    with torch.no_grad():
        # a probe of the weight's dtype and device; any shape gives the answer
        probe = weight.new_zeros(1, weight.shape[1])  # pragma: no mutate (equivalent: any probe shape)
        out = router.forward(probe)
        _, weights, _ = split_router_output(out, order)  # pragma: no mutate (equivalent: weights sit mid-output in every order)
    return weights.dtype == torch.float32


_CLASSES: dict[type, type] = {}


def gate_class(router_class: type) -> type:
    """``Routed<RouterClass>``: a RoutedGate that is also an instance of the original router class."""
    if router_class not in _CLASSES:
        name, bases = f"Routed{router_class.__name__}", (RoutedGate, router_class)
        # type() would take __module__ from the calling module anyway; said for the reader
        _CLASSES[router_class] = type(name, bases, {"__module__": __name__})  # pragma: no mutate (equivalent)
    return _CLASSES[router_class]
