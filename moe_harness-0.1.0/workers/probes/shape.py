"""The loaded model's shape for the roofline, counted from its own parameters."""

from __future__ import annotations

from workers.moe_blocks import find_moe_blocks
from moe_schema.roofline import ModelShape


def shape_of(model) -> ModelShape:
    """Parameter counts by role (embedding, LM head, routed experts, the rest) of a loaded model."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    unique = {id(p): p for p in model.parameters()}
    embed = model.get_input_embeddings().weight
    head_mod = model.get_output_embeddings()
    head = head_mod.weight if head_mod is not None else embed
    tied = head is embed or head.data_ptr() == embed.data_ptr()
    blocks = find_moe_blocks(model)
    expert_total = per_expert = num_experts = top_k = 0
    for block in blocks:
        params = {id(p): p for p in block.experts.parameters()}
        n = sum(p.numel() for p in params.values())
        expert_total += n
        num_experts, per_expert, top_k = block.num_experts, n // block.num_experts, block.top_k
    total = sum(p.numel() for p in unique.values())
    other = total - embed.numel() - (0 if tied else head.numel()) - expert_total
    nh = cfg.num_attention_heads
    return ModelShape(
        layers=cfg.num_hidden_layers, hidden=cfg.hidden_size, heads=nh,
        kv_heads=getattr(cfg, "num_key_value_heads", None) or nh,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // nh, vocab=embed.shape[0],
        embed_params=embed.numel(), head_params=head.numel(), tied=tied, other_params=other,
        moe_layers=len(blocks), num_experts=num_experts, top_k=top_k, expert_params=per_expert,
        bytes_per_param=embed.element_size(), kv_bytes=embed.element_size())
