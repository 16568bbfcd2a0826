"""Coordinator side of moe-harness. Never imports torch, transformers or lm-eval."""

__version__ = "0.1.0"
