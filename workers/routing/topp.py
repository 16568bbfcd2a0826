"""``topp``: per token, the fewest experts whose probabilities reach ``p`` (arXiv 2403.07652),
never fewer than ``min_k`` nor more than ``max_k``."""

from __future__ import annotations

import torch

from workers.routing.base import LogitsRule, check_k, gate_weights, probabilities


class TopP(LogitsRule):
    padded = True

    def setup(self, session):
        for gate in session.gates:
            check_k(gate, self.config.min_k, "'topp' (min_k)")

    def rule(self, gate, logits):
        cfg = self.config
        probs = probabilities(logits)
        width = min(cfg.max_k or gate.num_experts, gate.num_experts)
        sorted_probs, order = probs.sort(descending=True)  # over the experts (last) axis
        sorted_probs, order = sorted_probs[:, :width], order[:, :width]
        rank = torch.arange(width, device=probs.device)
        if cfg.p >= 1:
            keep = torch.ones_like(sorted_probs, dtype=torch.bool)
        else:  # keep an expert while the mass before it is still short of p
            before = sorted_probs.cumsum(dim=1) - sorted_probs
            keep = before < cfg.p
        keep |= rank < cfg.min_k
        index = order.masked_fill(~keep, gate.num_experts)
        return gate_weights(gate, probs, index, cfg.renormalize, logits), index
