"""The torch side of a routing strategy: the ``Strategy`` interface and helpers.

A strategy object is built once per ``apply`` (``config.build()``) and shared by every MoE layer
of the model. Each layer's ``RoutedGate`` calls ``strategy.route(gate, hidden)`` with the layer's
``(tokens, hidden)`` input and gets a ``Routed`` back. What a strategy can read on ``gate``:

- ``gate.num_experts``, ``gate.top_k`` (the checkpoint's k), ``gate.norm_topk_prob``
- ``gate.position`` (0.. among MoE layers) and ``gate.layer`` (decoder layer index)
- ``gate.router_logits(hidden)`` (the checkpoint's router weights), ``gate.native(hidden)``
- ``gate.token_ids(n)`` / ``gate.token_mask(n)``: the batch's input ids / attention mask, flattened
- ``gate.training``: whether the model is in training mode

A slot of ``Routed.index`` may hold ``gate.num_experts`` (the sentinel: no expert) with weight 0,
so a token can use fewer experts than the widest token; set ``padded=True`` when it does. The gate
then makes that exact under every experts implementation (see ``workers/routing/gate.py``).

A strategy that is a rule over the router logits alone (``native``, ``topk``, ``topp``, ``random``,
``hash``, ``prune``) subclasses ``LogitsRule`` and writes only ``rule(gate, logits) -> (weights,
index)``: the one definition both engines run. transformers' ``RoutedGate`` computes the logits and
calls it through ``LogitsRule.route``; vLLM's fused-MoE router calls it from its custom routing
function (``workers/engines/vllm_routing.py``) with a gate-like view of that layer (the same
attributes as above; ``token_ids`` from the batch's flattened input ids).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch


class Routed(NamedTuple):
    logits: torch.Tensor  # (tokens, experts) raw router logits: what load-balancing losses see
    weights: torch.Tensor  # (tokens, slots) gate weight of each chosen expert
    index: torch.Tensor  # (tokens, slots) int64 expert ids; == num_experts in an empty slot
    padded: bool = False  # some slots may be empty
    dropped: torch.Tensor | None = None  # (tokens,) assignments dropped per token (capacity limits)
    requested: int = 0  # assignments a token asked for, the denominator of the drop rate


class Strategy(ABC):
    """Base class of the torch strategy objects (one per applied routing spec). A plugin must
    implement ``route``; the rest have defaults."""

    causal: bool = True

    def __init__(self, config):
        self.config = config
        self.causal = getattr(config, "causal", True)

    @abstractmethod
    def route(self, gate, hidden: torch.Tensor) -> Routed:
        """Choose experts for one MoE layer's tokens.

        ``hidden`` is the layer's input flattened to ``(tokens, hidden_size)``. Return a ``Routed``
        with ``logits`` ``(tokens, num_experts)`` and ``weights`` / ``index`` ``(tokens, slots)``.
        Top-2 of 4 experts for 3 tokens, the middle one routed to one expert only::

            logits  = gate.router_logits(hidden)          # (3, 4)
            index   = [[1, 3], [0, 4], [2, 1]]            # 4 == gate.num_experts: an empty slot
            weights = [[.6, .4], [1., 0.], [.7, .3]]      # 0 in the empty slot
            return Routed(logits, weights, index, padded=True)
        """

    def setup(self, session) -> None:
        """Called once after the gates are installed (``session.gates``, ``session.model``):
        check parameters against the model, build per-layer state, run a calibration pass."""

    def reset(self) -> None:
        """Back to the state right after ``setup`` (reseed random generators, ...)."""

    def state(self) -> dict[str, torch.Tensor]:
        """Learned routing state (tensors by name) that belongs with a trained checkpoint; none by default.
        Saved as ``ROUTING_STATE`` beside the weights, and handed back through ``setup`` when a
        model loaded from that checkpoint is routed by the same strategy again. Also part of a
        train job's resume state (``load_state`` puts it back)."""
        return {}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Put back what ``state`` returned (a train job resuming mid-run); nothing by default."""


class LogitsRule(Strategy):
    """A strategy that is a function of one layer's router logits: ``rule`` is all it writes.
    ``padded``: the rule may leave slots empty (index ``num_experts``, weight 0)."""

    padded: bool = False

    @abstractmethod
    def rule(self, gate, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weights, index)``, each ``(tokens, slots)``, from ``logits`` ``(tokens, num_experts)``.

        Top-1 of 4 experts for 2 tokens::

            logits  = [[.1, 2., -1, .3], [1., 0., 0., 0.]]
            weights = [[1.], [1.]];  index = [[1], [0]]     # renormalised over the one kept expert
        """

    def route(self, gate, hidden: torch.Tensor) -> Routed:
        logits = gate.router_logits(hidden)
        weights, index = self.rule(gate, logits)
        return Routed(logits, weights, index, padded=self.padded)


def native_rule(gate, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The checkpoint's own softmax top-k (k = ``gate.top_k``, renormalised as it does): what the
    transformers routers of the supported families and vLLM's default CPU router compute."""
    probs = probabilities(logits)
    index = torch.topk(probs, gate.top_k).indices
    return gate_weights(gate, probs, index, None, logits), index


ROUTING_STATE = "routing_state.safetensors"  # metadata: {"strategy": name}


def saved_state(model, strategy: str) -> dict[str, torch.Tensor]:
    """The routing state a trained checkpoint saved for ``strategy``, or {} (none, or another strategy's)."""
    from pathlib import Path

    from safetensors import safe_open

    path = Path(str(getattr(model.config, "_name_or_path", "") or "")) / ROUTING_STATE
    if not path.is_file():
        return {}
    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("strategy") != strategy:
            return {}
        return {k: f.get_tensor(k) for k in f.keys()}


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax in float32, as the transformers routers compute it."""
    return torch.softmax(logits, dim=-1, dtype=torch.float32)


def gate_weights(gate, probs: torch.Tensor, index: torch.Tensor, renormalize: bool | None,
                 logits: torch.Tensor) -> torch.Tensor:
    """Weights of the chosen experts: their probabilities, rescaled to sum to 1 per token when
    ``renormalize`` (None: as the checkpoint does), in the dtype the checkpoint's router returns
    (float32 or ``logits``' dtype). Empty slots (index == num_experts) get weight 0."""
    padded_probs = torch.nn.functional.pad(probs, (0, 1))  # column num_experts: probability 0
    weights = padded_probs.gather(1, index)
    if gate.norm_topk_prob if renormalize is None else renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True).clamp_min(1e-20)
    return weights if gate.weights_in_float32 else weights.to(logits.dtype)


def check_k(gate, k: int, what: str) -> None:
    if k > gate.num_experts:
        raise ValueError(f"routing strategy {what}: k={k} exceeds the {gate.num_experts} experts "
                         f"of MoE layer {gate.layer}")
