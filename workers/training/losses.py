"""Training losses: next-token cross-entropy, plus for MoE builds a load-balancing loss and a router
z-loss computed here from forward hooks on each MoE block's ``gate``.

We compute our own rather than transformers' ``output_router_logits`` aux loss so that (a) both
coefficients come from the job, (b) the z-loss exists (transformers' MoE models have none), and
(c) the balance term uses the experts the *installed* routing strategy chose (the gate's returned
``top_k_index``), not a top-k recomputed from the logits. Per layer, averaged over layers:

- balance (Switch / OLMoE form): ``E * Σ_i f_i * P_i``, ``f_i`` the share of routed slots sent to
  expert ``i``, ``P_i`` its mean router probability; 1.0 when perfectly balanced.
- z-loss (ST-MoE): ``mean(logsumexp(router_logits)^2)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def find_gates(model) -> list:
    """MoE blocks' router modules: a ``gate`` child with a 2-D weight next to an ``experts`` child."""
    gates = []
    for module in model.modules():
        gate, experts = module._modules.get("gate"), module._modules.get("experts")
        weight = getattr(gate, "weight", None)
        if experts is not None and isinstance(weight, torch.Tensor) and weight.dim() == 2:
            gates.append(gate)
    return gates


class RouterLosses:
    """Collects each gate's ``(logits, index)`` during a forward; ``pop()`` gives the two losses."""

    def __init__(self, model):
        self.captured: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        self.handles = [g.register_forward_hook(self._hook) for g in find_gates(model)]

    @property
    def moe(self) -> bool:
        return bool(self.handles)

    def _hook(self, module, args, output):
        if isinstance(output, tuple):
            logits, index = output[0], (output[2] if len(output) > 2 else None)
        else:
            logits, index = output, None
        self.captured.append((logits, index))

    def pop(self) -> tuple[torch.Tensor, torch.Tensor]:
        balance, z = [], []
        for logits, index in self.captured:
            logits = logits.reshape(-1, logits.shape[-1]).float()
            n = logits.shape[-1]
            probs = logits.softmax(-1)
            if index is None:
                index = probs.topk(1, dim=-1).indices
            idx = index.reshape(-1)
            idx = idx[(idx >= 0) & (idx < n)]  # strategies may mark empty slots with n
            share = torch.bincount(idx, minlength=n).float() / max(1, idx.numel())
            balance.append(n * (share * probs.mean(0)).sum())
            z.append(torch.logsumexp(logits, -1).pow(2).mean())
        self.captured = []
        if not balance:
            zero = torch.zeros(())
            return zero, zero
        return torch.stack(balance).mean(), torch.stack(z).mean()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))
