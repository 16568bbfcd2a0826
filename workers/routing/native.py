"""``native``: the checkpoint's own router forward, unchanged; the gate records its telemetry.

On transformers ``route`` calls the router module itself (exact for any family); ``rule`` is the
same softmax top-k written over the logits, what an engine without that module (vLLM) runs."""

from __future__ import annotations

from workers.routing.base import LogitsRule, Routed, native_rule


class Native(LogitsRule):
    def rule(self, gate, logits):
        return native_rule(gate, logits)

    def route(self, gate, hidden):
        logits, weights, index = gate.native(hidden)
        return Routed(logits, weights, index)
