"""The routing strategy interface: ``route`` is the abstract method a plugin must implement."""

from __future__ import annotations

import inspect

import pytest

from workers.routing.base import Strategy, saved_state


def test_route_is_the_abstract_method_of_a_strategy():
    # it once sat, dead, inside saved_state after a return, so Strategy had no route at all
    assert inspect.isabstract(Strategy) and Strategy.__abstractmethods__ == frozenset({"route"})
    assert "route" not in saved_state.__code__.co_names

    class Forgetful(Strategy):  # a plugin that forgot route
        pass

    with pytest.raises(TypeError, match="route"):
        Forgetful(config=None)


def test_every_builtin_strategy_implements_route():
    from moe_schema.registry import resolve
    from moe_schema.routing import ROUTING, STRATEGY_BASE

    for name in ROUTING.names():
        cls = resolve(ROUTING.get(name).implementation, base=STRATEGY_BASE)  # raises if route is missing
        assert issubclass(cls, Strategy) and not inspect.isabstract(cls), name
