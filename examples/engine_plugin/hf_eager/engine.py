"""The worker side of ``hf_eager``: the shared base of engines the harness drives in transformers,
loaded with ``attn_implementation="eager"``."""

from __future__ import annotations

from workers.engines.forward import HarnessForward


class HfEagerEngine(HarnessForward):
    def load_options(self, variant) -> dict:
        return {"attn_implementation": "eager"}
