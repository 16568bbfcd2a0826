"""The harness's own experts implementations for transformers' MoE families (decode-oriented, CUDA-graph safe).

    from workers.experts import register
    register()                                   # once per process, before loading
    AutoModelForCausalLM.from_pretrained(path, experts_implementation="harness")
    model.set_experts_implementation("harness")  # or switch a loaded model

Two names, both registered in transformers' experts interface, so every family whose experts class
uses ``@use_experts_implementation`` (olmoe, mixtral, qwen2_moe, qwen3_moe, ...) can take them:

- ``"harness"``: plain torch, the path picked from static sizes (gather, grouped_mm, or a loop on CPU).
- ``"harness_triton"``: the fused Triton kernels of ``workers.experts.triton_moe`` (CUDA; on CPU only
  under ``TRITON_INTERPRET=1``). ``unsupported`` says beforehand why a model cannot take it.

How each computes: ``workers.experts.forward``.
"""

from __future__ import annotations

from workers.experts.forward import (PATHS, choose_path, experts_forward, force_path,
                                     triton_experts_forward)

NAME = "harness"
TRITON_NAME = "harness_triton"
NAMES = {NAME: experts_forward, TRITON_NAME: triton_experts_forward}

__all__ = ["NAME", "NAMES", "PATHS", "TRITON_NAME", "choose_path", "experts_forward", "force_path",
           "is_registered", "register", "unsupported"]


def register() -> str:
    """Register ``"harness"`` and ``"harness_triton"`` with transformers; idempotent. Returns ``NAME``."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    for name, forward in NAMES.items():
        ALL_EXPERTS_FUNCTIONS.register(name, forward)
    return NAME


def is_registered() -> bool:
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    return all(name in ALL_EXPERTS_FUNCTIONS for name in NAMES)


def unsupported(model, implementation: str | None, device) -> str | None:
    """Why ``model``'s experts cannot run under ``implementation`` on ``device`` (one line), or None.

    Only ``"harness_triton"`` has conditions (Triton present, a CUDA device, a fused-able experts
    class); every other name is transformers' to check.
    """
    if implementation != TRITON_NAME:
        return None
    from workers.experts.triton_moe import supported
    from workers.moe_blocks import find_moe_blocks

    for block in find_moe_blocks(model):
        why = supported(block.experts, device)
        if why is not None:
            return why
    return None
