"""Router telemetry: what each MoE layer did with the tokens it saw.

Counters live on the model's device and are updated with ``scatter_add_`` (a bincount that never
waits for the device); they reach the CPU only in ``as_dict``. Padding tokens (attention mask 0)
are not counted when the mask is known; a token may count more than once (``counted``: an evaluation
counts a shared prompt prefix once per request that shares it, see ``workers.evaluation.lm``).

Per layer: tokens per expert, experts per token (mean and histogram), dropped assignments, and
load balance over the experts: max/mean load, coefficient of variation (std/mean), and the
entropy of the load distribution divided by log(num_experts) (1 = perfectly even).
"""

from __future__ import annotations

import math

import torch


class LayerCounts:
    """Running counters for one MoE layer."""

    def __init__(self, num_experts: int):
        self.num_experts = num_experts
        self._t: dict[str, torch.Tensor] | None = None

    def reset(self) -> None:
        self._t = None

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        if self._t is None:
            zeros = lambda n: torch.zeros(n, dtype=torch.long, device=device)  # noqa: E731
            e = self.num_experts
            # experts: one slot more for the "no expert" sentinel; per_token: 0..num_experts experts
            self._t = {"experts": zeros(e + 1), "per_token": zeros(e + 1), "scalars": zeros(3)}
        elif self._t["experts"].device != device:  # the model moved
            self._t = {k: v.to(device) for k, v in self._t.items()}
        return self._t

    @torch.no_grad()
    def record(self, index: torch.Tensor, counted: torch.Tensor | None,
               dropped: torch.Tensor | None, requested: int) -> None:
        """``index``: (tokens, slots) expert ids (num_experts = empty slot); ``counted``: (tokens,)
        bool mask or integer counts (how many times each token counts), None: each once;
        ``dropped``: (tokens,) dropped assignments or None."""
        t = self._tensors(index.device)
        e = self.num_experts
        index = index.clamp(0, e)
        if counted is None:
            counted = torch.ones(index.shape[0], dtype=torch.long, device=index.device)
        else:
            counted = counted.to(device=index.device, dtype=torch.long)
        used = (index < e).long() * counted[:, None]
        t["experts"].scatter_add_(0, index.reshape(-1), used.reshape(-1))
        t["per_token"].scatter_add_(0, (index < e).sum(dim=1).clamp(max=e), counted)
        tokens = counted.sum()
        t["scalars"][0] += tokens
        if dropped is not None:
            t["scalars"][1] += (dropped.long() * counted).sum()
            t["scalars"][2] += tokens * requested

    def as_dict(self, layer: int) -> dict:
        if self._t is None:
            counts, hist, (tokens, dropped, requested) = [0] * self.num_experts, [0], (0, 0, 0)
        else:
            t = {k: v.cpu().tolist() for k, v in self._t.items()}
            counts, hist, (tokens, dropped, requested) = t["experts"][:-1], t["per_token"], t["scalars"]
        assignments = sum(k * n for k, n in enumerate(hist))
        return {
            "layer": layer,
            "tokens": tokens,
            "tokens_per_expert": counts,
            "experts_per_token_mean": assignments / tokens if tokens else None,
            "experts_per_token_hist": {str(k): n for k, n in enumerate(hist) if n},
            "dropped": dropped,
            "drop_rate": dropped / requested if requested else 0.0,
            "requested": requested,
            **load_balance(counts),
        }


def load_balance(counts: list[int]) -> dict:
    """max/mean, coefficient of variation and normalised entropy of an expert load vector."""
    total = sum(counts)
    n = len(counts)
    if not total or not n:
        return {"max_over_mean": None, "cv": None, "entropy": None}
    mean = total / n
    std = math.sqrt(sum((c - mean) ** 2 for c in counts) / n)
    entropy = -sum(c / total * math.log(c / total) for c in counts if c)
    return {
        "max_over_mean": max(counts) / mean,
        "cv": std / mean,
        "entropy": entropy / math.log(n) if n > 1 else 1.0,
    }


def summarize(layers: list[dict]) -> dict:
    """One line over all MoE layers: token-weighted experts/token, overall drop rate, and the
    layers' mean max/mean, CV and entropy."""
    tokens = sum(l["tokens"] for l in layers)
    assignments = sum(l["experts_per_token_mean"] * l["tokens"] for l in layers if l["tokens"])
    requested = sum(l["requested"] for l in layers)
    out = {
        "experts_per_token_mean": assignments / tokens if tokens else None,
        "drop_rate": sum(l["dropped"] for l in layers) / requested if requested else 0.0,
        "tokens": max((l["tokens"] for l in layers), default=0),
    }
    for key in ("max_over_mean", "cv", "entropy"):
        values = [l[key] for l in layers if l[key] is not None]
        out[key] = sum(values) / len(values) if values else None
    return out
