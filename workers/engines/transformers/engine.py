"""The ``transformers`` engine: the harness runs the transformers model itself, loaded with
transformers' own defaults (the default engine). Everything it does is ``HarnessForward``'s."""

from __future__ import annotations

from workers.engines.forward import HarnessForward


class TransformersEngine(HarnessForward):
    """transformers' ``from_pretrained`` defaults (its own attention implementation choice)."""
