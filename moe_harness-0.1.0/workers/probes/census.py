"""Count the distinct experts each forward pass touches, from the routers' ``top_k_index`` outputs.

A forward hook on every MoE block's router (the family's own or a routing strategy swapped in)
reads the chosen expert ids; padding ids outside ``[0, num_experts)`` (used by
dynamic strategies for "no expert") are not experts.
"""

from __future__ import annotations

from workers.moe_blocks import find_moe_blocks, router_order, split_router_output


class ExpertCensus:
    """Context manager: while active, ``passes`` gets one list per forward of (distinct, picks, tokens) per layer."""

    def __init__(self, model):
        self.blocks = find_moe_blocks(model)
        self.passes: list[list[tuple[int, int, int]]] = []
        self._current: list[tuple[int, int, int]] | None = None
        self._handles = []

    def __enter__(self):
        for block in self.blocks:
            hook = self._hook(block.num_experts, router_order(block.router))
            self._handles.append(block.router.register_forward_hook(hook))
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, num_experts: int, order):
        def hook(module, inputs, output):
            index = split_router_output(output, order)[2]
            index = index.reshape(-1, index.shape[-1]) if index.dim() >= 2 else index.reshape(1, -1)
            tokens = index.shape[0]
            valid = index[(index >= 0) & (index < num_experts)]
            distinct = int(valid.unique().numel())
            if self._current is None or len(self._current) >= len(self.blocks):
                self._current = []
                self.passes.append(self._current)
            self._current.append((distinct, int(valid.numel()), tokens))
        return hook

    def summary(self) -> dict | None:
        """Mean distinct experts per layer per pass, per-layer means, and measured experts per token."""
        if not self.passes:
            return None
        n_layers = len(self.blocks)
        per_layer = [sum(p[i][0] for p in self.passes) / len(self.passes) for i in range(n_layers)]
        picks = sum(x[1] for p in self.passes for x in p)
        tokens = sum(x[2] for p in self.passes for x in p)
        return {"experts_touched": sum(per_layer) / n_layers, "experts_touched_per_layer": per_layer,
                "experts_per_token": picks / tokens if tokens else None, "passes": len(self.passes)}
