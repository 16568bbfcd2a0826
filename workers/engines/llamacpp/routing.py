"""Routing on llama.cpp: the checkpoint's own router with the GGUF's ``expert_used_count``, or that
count overridden (``topk``). The engine loads the GGUF again when k changes (``engine.route``); the
session only names the strategy. llama.cpp gives no per-token expert choice, so ``telemetry()`` is
None on every build and ``engine.TELEMETRY`` says why in the result."""

from __future__ import annotations

from workers.routing.session import RoutingSession


class LlamacppRoutingSession(RoutingSession):
    def __init__(self, model, config, tokenizer=None):
        super().__init__(model, config, None, [], None, tokenizer)

    def telemetry(self):
        return None  # unavailable, not zero: the result's build.routing_telemetry says so

    def restore(self) -> None:
        """Nothing is installed in the model: the next ``route`` loads the count it needs."""
