"""What every experts path shares about slots (one per token x chosen expert): where each expert's
rows begin once the slots are sorted by expert, and the weighted sum of a token's k slot outputs.

Its own module so that ``forward`` (the plain-torch paths, which import the Triton path lazily)
and ``triton_moe`` (the fused path) both import it instead of each other.
"""

from __future__ import annotations

import torch


def combine(self, out: torch.Tensor, weights: torch.Tensor, valid: torch.Tensor, tokens: int,
            k: int, dtype: torch.dtype) -> torch.Tensor:
    """Per-slot outputs (T*k, H) in slot order -> weighted sum per token (T, H); sentinel slots dropped."""
    if getattr(self, "has_post_expert_norm", False):  # transformers >= 5.23 only
        out = self.post_expert_norm(out)
    out = out * weights.reshape(-1, 1)
    out = torch.where(valid.unsqueeze(-1), out, torch.zeros((), dtype=out.dtype, device=out.device))
    return out.view(tokens, k, -1).sum(dim=1).to(dtype)


def expert_edges(sorted_ids: torch.Tensor, num_experts: int) -> torch.Tensor:
    """(E + 1,) row boundaries: expert e's slots are ``sorted_ids[edges[e]:edges[e + 1]]``; sentinels
    (ids >= E) lie past ``edges[E]``. A ``searchsorted``: static shape, no host read, deterministic."""
    experts = torch.arange(num_experts + 1, device=sorted_ids.device, dtype=sorted_ids.dtype)
    return torch.searchsorted(sorted_ids, experts)
