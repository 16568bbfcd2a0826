"""``topk``: the k most probable experts per token (k=native reproduces the checkpoint)."""

from __future__ import annotations

import torch

from workers.routing.base import Routed, Strategy, check_k, gate_weights, probabilities


class TopK(Strategy):
    def setup(self, session):
        for gate in session.gates:
            check_k(gate, self.config.k, "'topk'")

    def route(self, gate, hidden):
        logits = gate.router_logits(hidden)
        probs = probabilities(logits)
        index = torch.topk(probs, self.config.k).indices  # over the experts (last) axis
        return Routed(logits, gate_weights(gate, probs, index, self.config.renormalize, logits), index)
