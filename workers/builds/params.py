"""Parameter accounting from a model's module structure: total and active, with and without embeddings.

MoE blocks are found where routing and probes find them (``workers.moe_blocks.find_moe_blocks``:
a router beside an ``experts`` module). A token passes through ``k`` of a block's ``E`` routed
experts, so the experts module's parameters count ``k / E`` as active. Everything else (attention,
norms, routers, qwen2_moe's shared expert and its gate) is always active. Input embeddings and an
untied ``lm_head`` are the embedding parameters.
"""

from __future__ import annotations

from workers.moe_blocks import find_moe_blocks


def count_params(model, experts_per_token: float | None = None) -> dict:
    """Count ``model``'s parameters; ``experts_per_token`` overrides each MoE block's top-k."""
    unique = {id(p): p for p in model.parameters()}  # tied weights once
    total = sum(p.numel() for p in unique.values())
    embed_ids = set()
    for emb in (model.get_input_embeddings(), model.get_output_embeddings()):  # either may be None
        weight = getattr(emb, "weight", None)
        if weight is not None:
            embed_ids.add(id(weight))
    embed = sum(unique[i].numel() for i in embed_ids if i in unique)

    routed_total, routed_active, ns, ks = 0, 0.0, [], []
    for block in find_moe_blocks(model):
        size = sum(p.numel() for p in block.experts.parameters())
        n = block.num_experts
        k = block.top_k if experts_per_token is None else experts_per_token
        routed_total += size
        routed_active += size * min(k, n) / n
        ns.append(n)
        ks.append(k)

    active = round(total - routed_total + routed_active)
    return {
        "total": total,
        "active": active,
        "total_no_embed": total - embed,
        "active_no_embed": active - embed,
        "num_experts": max(ns) if ns else None,
        "experts_per_token": float(max(ks)) if ks else None,
        "active_measured": False,
    }
