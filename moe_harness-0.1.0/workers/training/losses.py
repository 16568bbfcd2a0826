"""Training losses: next-token cross-entropy, plus for MoE builds a load-balancing loss and a router
z-loss computed here from forward hooks on each MoE block's router (``workers.moe_blocks``).

We compute our own rather than transformers' ``output_router_logits`` aux loss so that (a) both
coefficients come from the job, (b) the z-loss exists (transformers' MoE models have none), and
(c) the balance term uses the experts the *installed* routing strategy chose (the gate's returned
``top_k_index``), not a top-k recomputed from the logits. Per layer, averaged over layers:

- balance (Switch / OLMoE form): ``E * Σ_i f_i * P_i``, ``f_i`` the share of routed slots sent to
  expert ``i``, ``P_i`` its mean router probability; 1.0 when perfectly balanced.
- z-loss (ST-MoE): ``mean(logsumexp(router_logits)^2)``.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from workers.moe_blocks import find_moe_blocks, router_order, split_router_output


class RouterLosses:
    """Collects each gate's ``(logits, index)`` during a forward; ``pop()`` gives the two losses."""

    def __init__(self, model):
        self.captured: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.handles = [b.router.register_forward_hook(functools.partial(self._hook, router_order(b.router)))
                        for b in find_moe_blocks(model)]

    @property
    def moe(self) -> bool:
        return bool(self.handles)

    def _hook(self, order, module, args, output):
        logits, _, index = split_router_output(output, order)
        self.captured.append((logits, index))

    def pop(self) -> tuple[torch.Tensor, torch.Tensor]:
        balance, z = [], []
        for logits, index in self.captured:
            logits = logits.reshape(-1, logits.shape[-1]).float()
            n = logits.shape[-1]
            probs = logits.softmax(-1)
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
