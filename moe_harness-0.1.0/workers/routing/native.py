"""``native``: the checkpoint's own router forward, unchanged; the gate records its telemetry."""

from __future__ import annotations

from workers.routing.base import Routed, Strategy


class Native(Strategy):
    def route(self, gate, hidden):
        logits, weights, index = gate.native(hidden)
        return Routed(logits, weights, index)
