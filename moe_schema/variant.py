"""The variant spec a job carries (docs/internals.md, "Variant spec"), checked: its build (checkpoint,
config or trained), routing, dtype, loading options and engine (moe_schema.engines: a build the
engine cannot host, or a routing strategy it cannot run, is refused here by the engines' one check).

``parse_variant`` checks a variant once and returns a ``Variant``: the checked dict, its routing
strategy's config object and its engine's spec, which the worker passes down (nothing re-parses
the dict). The worker parses every job's variant with it (``workers.builds.spec`` turns a
``SchemaError`` into INVALID_PARAMS); the harness's tests check every variant the planner makes
from the example suites with it, so the two sides cannot drift apart.
"""

from __future__ import annotations

import re

import attrs

from moe_schema import engines, families
from moe_schema.check import SchemaError, expect, known_keys, unknown
from moe_schema.routing import StrategyConfig, config_from_spec

DTYPES = ("float32", "float16", "bfloat16", "auto")  # auto: the checkpoint's own dtype
#: what a suite may ask for (``dtype:``): a run compares variants, so it names one dtype, never "auto"
SUITE_DTYPES = ("float32", "bfloat16", "float16")


def check_build(build, where: str = "variant.build") -> dict:
    """Validate ``{"checkpoint": str}``, ``{"config": {...}, "seed": int}`` or ``{"trained": key}``
    (a train job's result, see moe_schema.train); return it."""
    if not isinstance(build, dict):
        raise SchemaError(where, f"expected a map, got {type(build).__name__}")
    if sum(k in build for k in ("checkpoint", "config", "trained")) != 1:
        raise SchemaError(where, "give exactly one of 'checkpoint', 'config' and 'trained'")
    if "trained" in build:
        known_keys(where, build, ["trained"])
        if not isinstance(build["trained"], str) or not re.fullmatch(r"[0-9a-f]{16}", build["trained"]):
            raise SchemaError(f"{where}.trained", f"expected a train key (16 hex digits), got {build['trained']!r}")
        return build
    if "checkpoint" in build:
        known_keys(where, build, ["checkpoint"])
        if not isinstance(build["checkpoint"], str) or not build["checkpoint"].strip():
            raise SchemaError(f"{where}.checkpoint", "expected a non-empty string (a directory or a hub id)")
        return build
    known_keys(where, build, ["config", "seed"])
    seed = build.get("seed", 0)
    expect(f"{where}.seed", seed, int)
    families.check_config(build["config"], f"{where}.config")
    return build


@attrs.frozen(eq=False)
class Variant:
    """A checked variant: ``spec`` (the dict with defaults filled in, as jobs carry it and keys hash
    it), ``strategy`` (its routing's config object; None: the checkpoint's own routing) and
    ``engine`` (its engine's ``moe_schema.engines.EngineSpec``; the parameters are
    ``spec["engine"]["params"]``)."""

    spec: dict
    strategy: StrategyConfig | None
    engine: engines.EngineSpec

    @property
    def name(self) -> str:
        return self.spec.get("name") or "the variant"


def parse_variant(variant) -> Variant:
    """Validate a variant spec (docs/internals.md) once; return it as a ``Variant``."""
    if isinstance(variant, Variant):
        return variant
    if not isinstance(variant, dict):
        raise SchemaError("variant", f"expected a map, got {type(variant).__name__}")
    v = {"routing": None, "dtype": "float32", "trust_remote_code": False, "experts_implementation": None,
         **variant}
    if "build" not in v:
        raise SchemaError("variant", "missing 'build'")
    check_build(v["build"])
    if not isinstance(v.get("name", ""), str):
        raise SchemaError("variant.name", f"expected a string, got {v['name']!r}")
    # the strategy and its parameters, as the suite parser checked them
    strategy = None if v["routing"] is None else config_from_spec(v["routing"], "variant.routing")
    if v["dtype"] not in DTYPES:
        raise SchemaError("variant.dtype", unknown("dtype", v["dtype"], DTYPES))
    if not isinstance(v["trust_remote_code"], bool):
        raise SchemaError("variant.trust_remote_code", f"expected a bool, got {v['trust_remote_code']!r}")
    impl = v["experts_implementation"]
    if impl is not None and not isinstance(impl, str):
        raise SchemaError("variant.experts_implementation", f"expected null or a string, got {impl!r}")
    v["engine"] = engines.check_engine("variant.engine", v.get("engine"))  # missing: the default engine
    name = v["engine"]["name"]
    refused = engines.refusal(v["engine"], config=v["build"].get("config"), dtype=v["dtype"], strategies=(strategy,))
    if refused is not None and refused.what == "routing":
        raise SchemaError("variant.routing", f"{v['routing']['name']} cannot run on engine {name}: {refused.why}")
    if refused is not None:
        raise SchemaError("variant.engine", f"{v.get('name') or 'this variant'} cannot run on engine {name}: {refused.why}")
    return Variant(spec=v, strategy=strategy, engine=engines.get(name))


def check_variant(variant) -> dict:
    """Validate a variant spec (docs/internals.md); return it with defaults filled in (a copy)."""
    return parse_variant(variant).spec
