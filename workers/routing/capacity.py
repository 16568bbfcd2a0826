"""``capacity``: token-choice top-k with a per-expert capacity (Switch Transformer, GShard).

An expert takes at most ``ceil(capacity_factor * k * tokens / experts)`` assignments per batch.
Assignments are served rank by rank (every token's first choice before any second choice), in
token order within a rank; the rest are dropped: that expert adds nothing for the token and the
residual stream carries it on. The kept weights are not renormalised after the drop. Padding
tokens (attention mask 0) take no capacity."""

from __future__ import annotations

import math

import torch

from workers.routing.base import Routed, Strategy, check_k, gate_weights, probabilities


def within_capacity(index: torch.Tensor, num_experts: int, capacity: int,
                    counted: torch.Tensor | None = None) -> torch.Tensor:
    """(tokens, k) bool: which assignments fit, serving rank 0 of all tokens first."""
    tokens, k = index.shape
    by_rank = index.t().reshape(-1)  # rank-major order
    # int32 only saves memory, and one_hot's inferred width would count the same seats
    onehot = torch.nn.functional.one_hot(by_rank, num_experts).to(torch.int32)  # pragma: no mutate (equivalent)
    if counted is not None:  # padding takes no seat
        onehot = onehot * counted.repeat(k)[:, None]  # bool x int32 stays int32
    seat = (onehot.cumsum(dim=0) * onehot).sum(dim=1)  # 1-based place in its expert's queue
    fits = seat <= capacity
    return fits.reshape(k, tokens).t()


class Capacity(Strategy):
    def setup(self, session):
        for gate in session.gates:
            check_k(gate, self.config.k or gate.top_k, "'capacity'")

    def route(self, gate, hidden):
        cfg = self.config
        logits = gate.router_logits(hidden)
        probs = probabilities(logits)
        k = cfg.k or gate.top_k
        index = torch.topk(probs, k).indices  # over the experts (last) axis
        weights = gate_weights(gate, probs, index, cfg.renormalize, logits)
        mask = gate.token_mask(hidden.shape[0])
        tokens = hidden.shape[0] if mask is None else int(mask.sum())
        capacity = math.ceil(cfg.capacity_factor * k * tokens / gate.num_experts)
        fits = within_capacity(index, gate.num_experts, capacity, mask)
        index = index.masked_fill(~fits, gate.num_experts)
        weights = weights.masked_fill(~fits, 0.0)
        return Routed(logits, weights, index, padded=True, dropped=(~fits).sum(dim=1), requested=k)
