"""Engines: what runs a build's forward. One interface (``base.Engine``), one folder per engine.

- ``base``          the ``Engine`` interface every engine derives from (host a build, route it, answer
                    lm-eval, time probe steps), and what they share
- ``transformers/`` ``transformers``: the harness drives the transformers model itself (the default)
- ``vllm/``         ``vllm``: vLLM's own ``LLM`` in this process (load, LM, probe steps, routing)

An engine's torch-free spec (name, ``implementation``, library, distributions, parameters,
refusals) is registered in ``moe_schema.engines.ENGINES``; a third party's comes in through an
entry point and its worker side is any ``base.Engine`` subclass its spec names. ``get(name)``
resolves that ``implementation`` (once per process); ``available()`` lists the engines this worker
can host, for its ``hello``, without importing them. This package's ``__init__`` stays torch-free.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

from moe_schema import engines as specs
from moe_schema.registry import resolve

_INSTANCES: dict = {}


def version(name: str) -> str | None:
    """The installed version of the engine's library, or None when this worker cannot import it.
    Found from package metadata and ``find_spec`` of the spec's ``library``: nothing is imported."""
    spec = specs.get(name)
    try:
        found = importlib.util.find_spec(spec.library)
    except (ImportError, ValueError):
        return None
    if found is None or found.origin is None:  # absent, or only a folder of that name (a namespace package)
        return None
    for dist in spec.distributions:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None  # importable but installed by no distribution its spec names: not an engine we host


def available() -> dict[str, str]:
    """``{engine: version}`` of the engines this worker can host (a worker's ``hello``)."""
    out = {}
    for name in specs.ENGINES.names():
        try:
            v = version(name)
        except Exception:  # a third party's spec that does not import: not hosted here
            continue
        if v is not None:
            out[name] = v
    return out


def get(name: str):
    """The engine object for ``name`` (one per process), from its spec's ``implementation``."""
    if name not in _INSTANCES:
        from workers.engines.base import Engine

        spec = specs.get(name)
        cls = resolve(spec.implementation, base=Engine, what=f"engine {name!r}")
        _INSTANCES[name] = cls(spec)
    return _INSTANCES[name]


def engine_for(variant) -> object:
    """The engine hosting ``variant`` (a ``moe_schema.variant.Variant``, or a variant dict whose
    ``engine`` names it; missing: the default engine)."""
    engine = getattr(variant, "engine", None)
    return get(engine.name if engine is not None else specs.engine_name(variant))


def identity(variant: dict) -> dict:
    """What every result says about its engine: ``{"name", "version"}``."""
    name = specs.engine_name(variant)
    return {"name": name, "version": version(name) or "unknown"}
