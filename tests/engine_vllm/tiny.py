"""The build every vLLM test uses, and how the tests name its variants."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# a float32 tiny qwen3_moe with a head size vLLM's CPU attention takes (32)
TINY = {"model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
        "num_experts": 4, "num_experts_per_tok": 2, "max_position_embeddings": 256}


def variant(engine: str | None, routing=None, config=None, **engine_params) -> dict:
    name = f"tiny@{engine or 'transformers'}"
    return {"name": name, "model": "tiny", "build": {"config": dict(config or TINY), "seed": 0},
            "routing": routing, "dtype": "float32",
            "engine": None if engine is None else {"name": engine, "params": engine_params}}


def load(host, engine, routing=None):
    """The tiny build on ``engine`` with ``routing`` installed (telemetry from zero)."""
    return host.load(variant(engine, routing))
