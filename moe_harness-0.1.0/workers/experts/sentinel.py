"""Fewer experts for some tokens: the "no expert" index ``num_experts``.

Routing strategies that give a token fewer experts than the block's top-k (top-p, capacity drops,
expert choice, pruning) mark the empty slots with index ``num_experts``. Whether an experts
implementation skips that index depends on the implementation and on the transformers release:
the eager forward one-hot encodes ``num_experts + 1`` classes in recent releases (5.2x) but only
``num_experts`` in 5.17, where the index is out of range; ``batched_mm`` indexes out of bounds on
it, and ``grouped_mm`` leaves those rows uninitialised. The harness's own implementations skip it.
Where it is not skipped, an empty slot is filled with the token's first expert at weight 0, which
adds exactly 0 and touches no expert the token did not already use.
"""

from __future__ import annotations

import functools
import inspect

import torch

from workers.experts import NAMES


@functools.cache
def _eager_skips(experts_class: type) -> bool:
    try:
        return "num_experts + 1" in inspect.getsource(experts_class)
    except (OSError, TypeError):  # no source to read: assume the older behaviour
        return False


def skips_sentinel(experts, implementation: str | None) -> bool:
    """Does ``experts`` under ``implementation`` skip index ``num_experts`` exactly?"""
    if implementation in NAMES:
        return True
    return implementation in (None, "eager") and _eager_skips(type(experts))


def fill_empty_slots(index: torch.Tensor, weights: torch.Tensor, num_experts: int,
                     empty: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty slots (index ``num_experts``, or ``empty`` where given) → the token's first expert at
    weight 0 (expert 0 for a token with none)."""
    if empty is None:
        empty = index >= num_experts
    first = index[:, :1].masked_fill(index[:, :1] >= num_experts, 0)
    return torch.where(empty, first.expand_as(index), index), weights.masked_fill(empty, 0.0)
