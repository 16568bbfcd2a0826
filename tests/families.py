"""The MoE families of the installed transformers, and a tiny config of each (test and survey helper).

A family counts as MoE here when its model, built on the meta device from a tiny config, holds 3-D
expert tensors. ``survey(model_type)`` then checks what `harness describe`, routing and probes need:
the checkpoint-header count equals ``count_params`` (describe), ``find_moe_blocks`` finds a router
beside the experts, a ``topk(k=1)`` strategy routes a forward pass (route), and the roofline's
``shape_of`` adds up to the parameter count (probe).
"""

from __future__ import annotations

import re

SHRINK = dict(hidden_size=64, intermediate_size=64, moe_intermediate_size=32, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, vocab_size=300, num_experts=8, num_local_experts=8,
              n_routed_experts=8, num_experts_per_tok=2, shared_expert_intermediate_size=32, kv_lora_rank=16,
              q_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, n_group=1, topk_group=1,
              first_k_dense_replace=0, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)


MAX_TINY = 20_000_000


def candidate_families() -> list[str]:
    """Causal-LM model types whose modeling file defines an experts or MoE class."""
    import importlib

    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    out = []
    for mt in sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        try:
            module = importlib.import_module(f"transformers.models.{mt}.modeling_{mt}")
            source = open(module.__file__).read()
        except Exception:
            continue
        if re.search(r"class \w*(Experts|MoE|Moe)\w*\(", source):
            out.append(mt)
    return out


def tiny(model_type: str, device: str = "cpu"):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    base = AutoConfig.for_model(model_type)
    keys = {k: v for k, v in SHRINK.items() if hasattr(base, k)}
    if hasattr(base, "head_dim") and not hasattr(base, "qk_rope_head_dim"):  # latent attention sets its own
        keys["head_dim"] = 16
    config = AutoConfig.for_model(model_type, **keys)
    torch.manual_seed(0)
    with torch.device(device):
        return AutoModelForCausalLM.from_config(config).eval()


def survey(model_type: str) -> dict:
    """{"describe", "blocks", "route", "probe"}: True, or the reason it is not."""
    import torch

    from moe_schema import headers
    from workers.builds.params import count_params
    from workers.moe_blocks import find_moe_blocks
    from workers.probes.shape import shape_of
    from workers.routing.apply import apply

    out = {}
    try:
        meta = tiny(model_type, "meta")
    except Exception as exc:
        return {"build": f"no tiny config: {type(exc).__name__}: {str(exc)[:80]}"}
    if not any(p.ndim == 3 for p in meta.parameters()):
        return {"build": "no 3-D expert tensors: not an MoE family here"}
    size = sum(p.numel() for p in meta.parameters())
    if size > MAX_TINY:  # a config key this survey does not shrink: never allocate it on a shared machine
        return {"build": f"the tiny config still has {size:,} parameters (a key not shrunk)"}
    unique = {}  # what a checkpoint holds: parameters and persistent buffers, tied ones once
    for name, p in meta.state_dict(keep_vars=True).items():
        unique.setdefault(id(p), (name, ("BF16", tuple(p.shape))))
    tensors = dict(unique.values())
    try:
        want = count_params(meta)
        got = headers.count_tensors(tensors, meta.config.to_dict())
        out["describe"] = True if all(got[k] == want[k] for k in ("total", "active")) else \
            f"header count {got['active']} active != {want['active']}"
    except Exception as exc:
        out["describe"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:100]}"
    blocks = find_moe_blocks(meta)
    out["blocks"] = True if blocks else "no router (gate/router with a 2-D weight) beside the experts"
    if not blocks:
        return out
    try:
        model = tiny(model_type)
        session = apply(model, {"name": "topk", "params": {"k": 1}})
        with torch.no_grad():
            model(torch.tensor([[3, 4, 5, 6]]))
        mean = session.telemetry()["summary"]["experts_per_token_mean"]
        out["route"] = True if mean == 1.0 else f"experts/token {mean}, not 1"
        session.restore()
        shape = shape_of(model)
        out["probe"] = True if shape.total_params == count_params(model)["total"] else "shape_of != count"
    except Exception as exc:
        out.setdefault("route", f"{type(exc).__name__}: {' '.join(str(exc).split())[:100]}")
    return out
