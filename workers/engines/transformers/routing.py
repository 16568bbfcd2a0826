"""Routing on the transformers engine: a strategy installed in the model's router modules."""

from __future__ import annotations

from workers.engines.base import routing_errors


def apply_routing(model, strategy, tokenizer=None):
    """Install ``strategy`` (a ``StrategyConfig``, a ``{"name", "params"}`` spec, or None: the
    checkpoint's own) with ``workers.routing.apply`` (restoring native routers first; the tokenizer
    serves strategies that calibrate on text); bad parameters answer INVALID_PARAMS."""
    from workers.routing.apply import apply

    with routing_errors():
        return apply(model, strategy, tokenizer=tokenizer)
