"""``random``: k experts per token drawn uniformly at random, whatever the input: the floor.

Each MoE layer has its own generator, seeded with ``seed * 1_000_003 + position`` (its position among
the MoE layers), so no layer's draws depend on another's; ``reset()`` reseeds, so
the same calls after ``apply`` or ``reset`` give the same routes. The chosen experts are gated by
the router's probabilities (renormalised as the checkpoint does unless ``renormalize`` says).

``keyed``: no stream; a token's k experts are the top k of E uniform numbers hashed from (seed,
layer position, token id, position in its sequence, expert), integer arithmetic that every engine
computes alike, so routing does not depend on how tokens were batched (``gate.token_ids`` and
``gate.token_positions`` give the ids and positions)."""

from __future__ import annotations

import torch

from workers.routing.base import LogitsRule, check_k, gate_weights, probabilities


class RandomChoice(LogitsRule):
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

    def rule(self, gate, logits):
        probs = probabilities(logits)
        k = self.config.k or gate.top_k
        if self.config.keyed:
            noise = self._keyed(gate, probs)
        else:
            noise = torch.rand(probs.shape, generator=self._generator(gate, probs.device), device=probs.device)
        index = torch.topk(noise, k).indices  # k distinct experts, uniformly
        return gate_weights(gate, probs, index, self.config.renormalize, logits), index

    def _keyed(self, gate, probs: torch.Tensor) -> torch.Tensor:
        n = probs.shape[0]
        ids, positions = gate.token_ids(n), gate.token_positions(n)
        if ids is None or positions is None:
            raise ValueError("routing strategy 'random' with keyed: true needs each token's id and position, "
                             "and this forward gave none (inputs_embeds?) or of another shape")
        return keyed_uniform(self.config.seed, gate.position, ids, positions, probs.shape[1])


_MASK = (1 << 62) - 1


def _mix(x: torch.Tensor) -> torch.Tensor:
    """A 62-bit integer mix (splitmix64's finaliser, kept below int64's sign bit)."""
    x = (x ^ (x >> 31)) & _MASK
    x = (x * 0x3F58476D1CE4E5B9) & _MASK
    x = (x ^ (x >> 29)) & _MASK
    x = (x * 0x14D049BB133111EB) & _MASK
    return x ^ (x >> 32)


def keyed_uniform(seed: int, layer: int, ids: torch.Tensor, positions: torch.Tensor, experts: int) -> torch.Tensor:
    """(tokens, experts) numbers in [0, 1), a function of (seed, layer, id, position, expert) alone."""
    key = _mix(torch.full((), (seed * 1_000_003 + layer) & _MASK, dtype=torch.int64))
    token = _mix(key ^ _mix(ids.reshape(-1).to(torch.int64) * 0x9E3779B1 + positions.reshape(-1).to(torch.int64)))
    cols = torch.arange(experts, dtype=torch.int64, device=token.device)
    x = _mix(token[:, None].to(cols.device) ^ _mix(cols + 0x2545F491))
    return (x & ((1 << 52) - 1)).to(torch.float64) / float(1 << 52)
