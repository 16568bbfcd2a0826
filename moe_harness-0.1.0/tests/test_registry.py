"""The plugin registry, shaped like lm-eval's: lazy ``module:object`` entries resolved in one place,
the base class checked on lookup, abstract methods a plugin must implement."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from moe_schema.registry import PluginError, Registry, UnknownName, resolve

REPO = Path(__file__).resolve().parent.parent


def test_a_lazy_entry_is_imported_on_lookup_only():
    code = textwrap.dedent("""
        import sys
        from moe_schema.registry import Registry
        r = Registry("thing")
        r.add("decoder", "json.decoder:JSONDecoder")
        sys.modules.pop("json.decoder", None); sys.modules.pop("json", None)
        assert r.names() == ["decoder"] and "json.decoder" not in sys.modules
        assert r.get("decoder").__name__ == "JSONDecoder" and "json.decoder" in sys.modules
        print("OK")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.stdout.strip() == "OK", proc.stderr


def test_the_base_class_is_checked_on_lookup():
    r = Registry("codec", base="json:JSONDecoder")
    r.add("decoder", "json.decoder:JSONDecoder")
    r.add("encoder", "json:JSONEncoder")
    assert r.get("decoder").__name__ == "JSONDecoder"
    with pytest.raises(PluginError, match=r"codec 'encoder': 'json:JSONEncoder' is not a subclass of json\.decoder\.JSONDecoder"):
        r.get("encoder")
    with pytest.raises(UnknownName, match=r"unknown codec 'decodr' \(did you mean 'decoder'\?\); known: decoder, encoder"):
        r.get("decodr")


def test_bad_references_name_the_plugin():
    with pytest.raises(PluginError, match=r"probe 'x': 'nocolon' is not a 'module:object' reference"):
        resolve("nocolon", what="probe 'x'")
    with pytest.raises(PluginError, match=r"probe 'x': cannot import 'no_such_module_here:run'"):
        resolve("no_such_module_here:run", what="probe 'x'")


def test_a_strategy_missing_route_fails_by_name_when_built(monkeypatch):
    import types

    import attrs

    from moe_schema.routing import StrategyConfig
    from workers.routing.base import Strategy

    module = types.ModuleType("half_done_plugin")

    class HalfDone(Strategy):  # forgot route
        pass

    module.HalfDone = HalfDone
    monkeypatch.setitem(sys.modules, "half_done_plugin", module)

    @attrs.frozen(kw_only=True)
    class HalfDoneConfig(StrategyConfig):
        name = "half_done"
        implementation = "half_done_plugin:HalfDone"

    with pytest.raises(PluginError, match=r"routing strategy 'half_done': .*HalfDone does not implement route"):
        HalfDoneConfig().build()
    module.HalfDone = dict  # not a Strategy at all
    with pytest.raises(PluginError, match=r"not a subclass of workers\.routing\.base\.Strategy"):
        HalfDoneConfig().build()


def test_builtin_registries_check_their_config_base_classes():
    from moe_schema.probes import PROBES, ProbeConfig
    from moe_schema.routing import ROUTING, StrategyConfig

    assert all(issubclass(ROUTING.get(n), StrategyConfig) for n in ROUTING.names())
    assert all(issubclass(PROBES.get(n), ProbeConfig) for n in PROBES.names())
    ROUTING.add("not_a_config", "json:JSONDecoder")
    try:
        with pytest.raises(PluginError, match="not a subclass of moe_schema.routing.StrategyConfig"):
            ROUTING.get("not_a_config")
    finally:
        ROUTING._entries.pop("not_a_config")
