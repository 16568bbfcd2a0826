"""``random``: k experts per token drawn uniformly at random, whatever the input: the floor.

Each MoE layer has its own generator, seeded with ``seed * 1_000_003 + position`` (its position among
the MoE layers), so no layer's draws depend on another's; ``reset()`` reseeds, so
the same calls after ``apply`` or ``reset`` give the same routes. The chosen experts are gated by
the router's probabilities (renormalised as the checkpoint does unless ``renormalize`` says)."""

from __future__ import annotations

import torch

from workers.routing.base import Routed, Strategy, check_k, gate_weights, probabilities


class RandomChoice(Strategy):
    def setup(self, session):
        for gate in session.gates:
            check_k(gate, self.config.k or gate.top_k, "'random'")
        self.reset()

    def reset(self):
        self._generators: dict[tuple, torch.Generator] = {}  # (layer position, device) -> generator

    def _generator(self, gate, device) -> torch.Generator:
        key = (gate.position, str(device))
        if key not in self._generators:
            g = torch.Generator(device=device)
            g.manual_seed(self.config.seed * 1_000_003 + gate.position)
            self._generators[key] = g
        return self._generators[key]

    def route(self, gate, hidden):
        logits = gate.router_logits(hidden)
        probs = probabilities(logits)
        k = self.config.k or gate.top_k
        noise = torch.rand(probs.shape, generator=self._generator(gate, probs.device), device=probs.device)
        index = torch.topk(noise, k).indices  # k distinct experts, uniformly
        return Routed(logits, gate_weights(gate, probs, index, self.config.renormalize, logits), index)
