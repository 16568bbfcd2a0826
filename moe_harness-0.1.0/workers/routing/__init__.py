"""Routing strategies: plugins swapped into an MoE build's router modules, and router telemetry.

(The torch-free parameter classes and the ``ROUTING`` registry live in ``moe_schema.routing``.)

- ``base``      the torch-side ``Strategy`` interface and helpers a strategy writer uses
- ``gate``      ``RoutedGate``: the module that replaces each MoE block's ``gate``
- ``apply``     ``apply(model, spec) -> RoutingSession``, ``find_moe_blocks(model)``
- ``telemetry`` per-layer router counters (tokens per expert, experts per token, drops, balance)
- one module per built-in strategy (``native``, ``topk``, ``topp``, ...)

This package's ``__init__`` stays torch-free.
"""
