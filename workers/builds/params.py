"""Parameter accounting from a model's module structure: total and active, with and without embeddings.

An MoE block is found by its experts module (the one holding 3-D weights, one slice per expert).
A token passes through ``k`` of its ``E`` routed experts, so those parameters count ``k / E`` as
active. Everything else (attention, norms, routers, qwen2_moe's shared expert and its gate) is
always active. Input embeddings and an untied ``lm_head`` are the embedding parameters.
"""

from __future__ import annotations


def find_expert_modules(model) -> list[tuple[str, object]]:
    """(name, module) of every module holding 3-D parameters directly: the routed experts."""
    return [(name, module) for name, module in model.named_modules()
            if any(p.ndim == 3 for p in module.parameters(recurse=False))]


def native_top_k(model, expert_name: str) -> int:
    """Experts per token of the MoE block holding ``expert_name``: its router's ``top_k``, else the config's."""
    parent_name = expert_name.rpartition(".")[0]
    block = model.get_submodule(parent_name) if parent_name else model
    for child_name, child in block.named_children():
        k = getattr(child, "top_k", None)
        if child_name != expert_name.rpartition(".")[2] and isinstance(k, int):
            return k
    k = getattr(model.config, "num_experts_per_tok", None)
    if not isinstance(k, int):
        raise ValueError(f"{expert_name}: no router with an integer top_k and no config.num_experts_per_tok")
    return k


def count_params(model, experts_per_token: float | None = None) -> dict:
    """Count ``model``'s parameters; ``experts_per_token`` overrides each MoE block's top-k."""
    unique = {id(p): p for p in model.parameters()}  # tied weights once
    total = sum(p.numel() for p in unique.values())
    embed_ids = set()
    for emb in (model.get_input_embeddings(), model.get_output_embeddings()):
        if emb is not None and getattr(emb, "weight", None) is not None:
            embed_ids.add(id(emb.weight))
    embed = sum(unique[i].numel() for i in embed_ids if i in unique)

    routed_total, routed_active, num_experts, ks = 0, 0.0, None, []
    for name, experts in find_expert_modules(model):
        size = sum(p.numel() for p in experts.parameters())
        n = next(p.shape[0] for p in experts.parameters(recurse=False) if p.ndim == 3)
        k = native_top_k(model, name) if experts_per_token is None else experts_per_token
        routed_total += size
        routed_active += size * min(k, n) / n
        num_experts = max(num_experts or 0, n)
        ks.append(k)

    active = round(total - routed_total + routed_active)
    return {
        "total": total,
        "active": active,
        "total_no_embed": total - embed,
        "active_no_embed": active - embed,
        "num_experts": num_experts,
        "experts_per_token": float(max(ks)) if ks else None,
        "active_measured": False,
    }
