"""``expert_choice``: each expert picks its best tokens in the batch (arXiv 2202.09368).

An expert takes the ``ceil(capacity_factor * k * tokens / experts)`` tokens with the highest
router probability for it, so a token may get many experts or none (counted as dropped). Not
causal: a token's route depends on the other tokens, later ones included, so generation and
decode probes refuse it (``RoutingSession.check_causal``). Padding tokens are never picked."""

from __future__ import annotations

import math

import torch

from workers.routing.base import Routed, Strategy, gate_weights, probabilities


class ExpertChoice(Strategy):
    def route(self, gate, hidden):
        cfg = self.config
        logits = gate.router_logits(hidden)
        probs = probabilities(logits)
        n, e = probs.shape
        mask = gate.token_mask(n)
        scores = probs if mask is None else probs.masked_fill(~mask[:, None], -math.inf)
        real = n if mask is None else int(mask.sum())
        capacity = min(n, math.ceil(cfg.capacity_factor * (cfg.k or gate.top_k) * real / e))
        picked = torch.zeros_like(probs, dtype=torch.bool)
        picked.scatter_(0, torch.topk(scores, capacity, dim=0).indices, True)
        if mask is not None:
            picked &= mask[:, None]
        # per token: its experts by id, then empty slots (id e)
        index = torch.arange(e, device=probs.device).masked_fill(~picked, e).sort(dim=1).values
        weights = gate_weights(gate, probs, index, cfg.renormalize, logits)
        none = (~picked.any(dim=1)).long()
        return Routed(logits, weights, index, padded=True, dropped=none, requested=1)
