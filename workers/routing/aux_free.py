"""``aux_free``: DeepSeek-V3's auxiliary-loss-free load balancing (arXiv 2412.19437, 2.1.2).

Experts are selected by router probability plus a per-expert bias, and gated by the probability
alone. In training mode every forward moves each bias by ``gamma`` toward balance: down for an
expert above the mean load, up for one below. In eval mode the bias is only read.
``bias(position)`` gives a layer's current bias (``session.strategy.bias(0)``); it lives as long
as the session (``session.reset()`` keeps it). A train job keeps it in its resume state (an
interrupted run continues with the bias it had) and saves it beside the trained checkpoint, where
routing that checkpoint with ``aux_free`` again picks it up."""

from __future__ import annotations

import torch

from workers.routing.base import Routed, Strategy, check_k, gate_weights, probabilities, saved_state


class AuxFree(Strategy):
    def setup(self, session):
        for gate in session.gates:
            check_k(gate, self.config.k or gate.top_k, "'aux_free'")
        # learned state, like a parameter: zero at setup (or as a trained checkpoint saved it),
        # kept across session.reset()
        saved = saved_state(session.model, "aux_free")
        self._bias = {gate.position: saved.get(f"bias.{gate.position}", torch.zeros(gate.num_experts)).float()
                      for gate in session.gates}

    def state(self) -> dict[str, torch.Tensor]:
        return {f"bias.{position}": bias.detach().cpu() for position, bias in self._bias.items()}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        for position, bias in self._bias.items():
            self._bias[position] = tensors[f"bias.{position}"].float().to(bias.device)

    def bias(self, position: int) -> torch.Tensor:
        return self._bias[position]

    def route(self, gate, hidden):
        logits = gate.router_logits(hidden)
        probs = probabilities(logits)
        bias = self._bias[gate.position]
        if bias.device != probs.device:
            bias = self._bias[gate.position] = bias.to(probs.device)
        index = torch.topk(probs + bias, self.config.k or gate.top_k).indices
        if gate.training:
            self._update(gate, index)
        return Routed(logits, gate_weights(gate, probs, index, self.config.renormalize, logits), index)

    @torch.no_grad()
    def _update(self, gate, index):
        counted = torch.ones(index.shape[0], device=index.device)
        mask = gate.token_mask(index.shape[0])
        if mask is not None:
            counted = mask.float()
        load = torch.zeros(gate.num_experts, device=index.device)
        load.scatter_add_(0, index.reshape(-1), counted.repeat_interleave(index.shape[1]))
        self._bias[gate.position] += self.config.gamma * torch.sign(load.mean() - load)
