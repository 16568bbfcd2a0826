"""The harness's own experts implementation for transformers' MoE families (decode-oriented, CUDA-graph safe).

    from workers.experts import register
    register()                                   # once per process, before loading
    AutoModelForCausalLM.from_pretrained(path, experts_implementation="harness")
    model.set_experts_implementation("harness")  # or switch a loaded model

Works for every family whose experts class uses ``@use_experts_implementation`` (olmoe, mixtral,
qwen2_moe, qwen3_moe, ...). How it computes: ``workers.experts.forward``.
"""

from __future__ import annotations

from workers.experts.forward import PATHS, choose_path, experts_forward, force_path

NAME = "harness"

__all__ = ["NAME", "PATHS", "choose_path", "experts_forward", "force_path", "is_registered", "register"]


def register() -> str:
    """Register ``experts_forward`` as transformers experts implementation ``"harness"``; idempotent."""
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    ALL_EXPERTS_FUNCTIONS.register(NAME, experts_forward)
    return NAME


def is_registered() -> bool:
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    return NAME in ALL_EXPERTS_FUNCTIONS
