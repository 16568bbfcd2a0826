"""``RoutingSession``: a routing strategy installed in a hosted build, on any engine; the base of
each engine's session (transformers: ``workers.routing.apply.ModuleRoutingSession``; vLLM:
``workers.engines.vllm.routing.VllmRoutingSession``). It holds the strategy, one gate per MoE
layer (each with its ``LayerCounts``), and gives the telemetry in one shape on every engine.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from moe_schema.routing import StrategyConfig
from workers.errors import Unsupported
from workers.routing.telemetry import summarize


class RoutingSession(ABC):
    """A strategy installed in a hosted build; the handle to its telemetry and to undo it."""

    def __init__(self, model, config: StrategyConfig | None, strategy, gates: list,
                 context, tokenizer=None):
        self.model = model
        self.strategy_config = config
        self.strategy = strategy
        self.gates = gates
        self.context = context
        self.tokenizer = tokenizer
        self.causal = True if strategy is None else bool(strategy.causal)
        self._hooks: list = []
        self.installed = bool(gates)

    @property
    def label(self) -> str | None:
        return None if self.strategy_config is None else self.strategy_config.label()

    def telemetry(self) -> dict | None:
        """Per-layer router counts since install or the last ``reset()``; None on a dense model."""
        if not self.gates:
            return None
        layers = [g.counts.as_dict(g.layer) for g in self.gates]
        return {"strategy": self.label, "layers": layers, "summary": summarize(layers)}

    def reset(self) -> None:
        """Zero the telemetry and reset the strategy's state (random generators, biases)."""
        for gate in self.gates:
            gate.counts.reset()
        if self.strategy is not None:
            self.strategy.reset()

    def check_causal(self, what: str = "this job") -> None:
        """Raise ``Unsupported`` if the strategy is not causal (generation, decode probes need it)."""
        if not self.causal:
            raise Unsupported(f"routing strategy {self.label} is not causal (a token's experts depend on "
                              f"later tokens of the batch), so it cannot be used for {what}")

    @abstractmethod
    def restore(self) -> None:
        """Put the checkpoint's own routing back (and remove any hooks the install added)."""
