"""``topk``: the k most probable experts per token (k=native reproduces the checkpoint)."""

from __future__ import annotations

import torch

from workers.routing.base import LogitsRule, check_k, gate_weights, probabilities


class TopK(LogitsRule):
    def setup(self, session):
        for gate in session.gates:
            check_k(gate, self.config.k, "'topk'")

    def rule(self, gate, logits):
        probs = probabilities(logits)
        index = torch.topk(probs, self.config.k).indices  # over the experts (last) axis
        return gate_weights(gate, probs, index, self.config.renormalize, logits), index
