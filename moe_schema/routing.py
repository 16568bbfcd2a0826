"""Routing strategy parameters: one attrs class per strategy, and the ``ROUTING`` registry.

Torch-free: the harness validates a suite's ``routing:`` entries against these classes without
a worker. ``build()`` imports the torch side (``implementation``, "module:Class") lazily.

Writing a strategy (built-in or third party)
--------------------------------------------
1. A config class, frozen and keyword-only, holding the strategy's parameters with validators::

       @attrs.frozen(kw_only=True)
       class MyConfig(StrategyConfig):
           name = "mine"                 # the name suites use
           causal = True                 # False if a token's route depends on later tokens
           needs = TOKEN                 # what its rule reads: TOKEN, BATCH or STATE (NEEDS); each
                                         # engine decides from it whether it runs the strategy
           implementation = "my_package.strategy:Mine"   # the torch side, imported lazily by build()
           k: int = attrs.field(default=1, validator=positive_int)

           def experts_per_token(self, native_k, num_experts):
               return float(self.k)      # None: dynamic, active params follow the measured mean

   ``label()`` (``"mine(k=2)"``, non-default parameters only) comes from the base class.
2. A torch strategy object, subclass of ``workers.routing.base.Strategy``, whose
   ``route(gate, hidden) -> Routed`` picks experts for the ``(tokens, hidden)`` input of one MoE
   layer (see ``workers/routing/base.py``; ``workers/routing/topk.py`` is a short example).
3. Register: built-ins with ``@strategy`` below; third parties with an entry point in the group
   ``moe_harness.routing`` whose value is the config class, e.g. in ``pyproject.toml``::

       [project.entry-points."moe_harness.routing"]
       mine = "my_package.config:MyConfig"

``config_from_spec({"name": "topk", "params": {"k": 2}})`` turns a variant's routing spec into a
validated config (the worker's check, at ``variant.routing``); the suite parser checks its entries
with ``routing_config`` at their YAML paths. Both structure the parameters with the one structurer,
``moe_schema.check.structure``; bad input raises a ``SchemaError`` naming the path of the bad value
(``variant.routing.params.k: routing strategy 'topk': k must be a positive integer, got 0``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import attrs

from moe_schema.check import SchemaError, expect, known_keys, structure
from moe_schema.registry import Registry, UnknownName, resolve

#: what every routing strategy's torch side subclasses (route is its abstract method)
STRATEGY_BASE = "workers.routing.base:Strategy"

# an entry is a StrategyConfig subclass (checked on lookup); its torch side is named by `implementation`
ROUTING: Registry = Registry("routing strategy", "moe_harness.routing", base="moe_schema.routing:StrategyConfig")


#: What a strategy's rule reads to pick one token's experts: the one fact about itself a strategy
#: states (``needs``), from which each engine decides whether it runs it (moe_schema.engines).
TOKEN = "token"
BATCH = "batch"
STATE = "state"
NEEDS = {
    TOKEN: "reads one token's router logits (and its id and position)",
    BATCH: "reads every token of the batch at once (a token's experts depend on the others)",
    STATE: "reads learned state saved beside the checkpoint besides the router logits",
}


def strategy(cls):
    """Class decorator: register a built-in config class under its ``name``."""
    ROUTING.add(cls.name, cls)
    return cls


# ---------------------------------------------------------------- validators


# A validator's SchemaError is at the parameter's name; structure() puts it under the entry's path
# (``variant.routing.params.k``, ``models[0].routing[1].k``).
def _where(inst, attribute) -> str:
    return f"routing strategy {getattr(inst, 'name', type(inst).__name__)!r}: {attribute.name}"


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(inst, attribute, value):
    if not _is_int(value) or value < 1:
        raise SchemaError(attribute.name, f"{_where(inst, attribute)} must be a positive integer, got {value!r}")


def optional_positive_int(inst, attribute, value):
    if value is not None:
        positive_int(inst, attribute, value)


def int_value(inst, attribute, value):
    if not _is_int(value):
        raise SchemaError(attribute.name, f"{_where(inst, attribute)} must be an integer, got {value!r}")


def positive_float(inst, attribute, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0 or math.isinf(value):
        raise SchemaError(attribute.name, f"{_where(inst, attribute)} must be a positive number, got {value!r}")


def non_negative_float(inst, attribute, value):
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0 or math.isinf(value):
        raise SchemaError(attribute.name, f"{_where(inst, attribute)} must be a number >= 0, got {value!r}")


def bool_value(inst, attribute, value):
    if not isinstance(value, bool):
        raise SchemaError(attribute.name, f"{_where(inst, attribute)} must be true or false, got {value!r}")


def optional_bool(inst, attribute, value):
    if value is not None and not isinstance(value, bool):
        raise SchemaError(attribute.name, f"{_where(inst, attribute)} must be true, false or null, got {value!r}")


def _renormalize():
    """``renormalize``: rescale the kept experts' weights to sum to 1; None = as the checkpoint does."""
    return attrs.field(default=None, validator=optional_bool)


# ---------------------------------------------------------------- base class


@attrs.frozen(kw_only=True)
class StrategyConfig:
    """Parameters of one routing strategy (subclass per strategy; see the module docstring)."""

    name: ClassVar[str] = ""
    causal: ClassVar[bool] = True
    implementation: ClassVar[str] = ""  # "module:Class" of the torch strategy; build() imports it lazily
    # The one fact an engine needs to decide whether it runs the strategy (moe_schema.engines,
    # EngineSpec.routes): what the rule reads to pick a token's experts (NEEDS).
    needs: ClassVar[str] = TOKEN

    def experts_per_token(self, native_k: int, num_experts: int) -> float | None:
        """Experts a token uses, for active-parameter accounting; None = dynamic (measured)."""
        return float(native_k)

    def label(self) -> str:
        """``"topk(k=2)"``: the name plus the parameters that differ from their defaults."""
        parts = []
        for f in attrs.fields(type(self)):
            value = getattr(self, f.name)
            if f.default is not attrs.NOTHING and value == f.default:
                continue
            parts.append(f"{f.name}={_show(value)}")
        return f"{self.name}({','.join(parts)})" if parts else self.name

    def params(self) -> dict:
        """The parameters as plain JSON-safe values (tuples become lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in attrs.fields(type(self))}

    def build(self):
        """The torch strategy object (``workers.routing.base.Strategy``), from ``implementation``;
        imports torch. Override it where building needs more than ``Class(config)``."""
        if not self.implementation:
            raise NotImplementedError(f"routing strategy {self.name!r} names no implementation")
        return resolve(self.implementation, base=STRATEGY_BASE, what=f"routing strategy {self.name!r}")(self)


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    return str(value)


def routing_config(name, params, where: str, params_where: str | None = None) -> StrategyConfig:
    """The one check of a routing entry, on both sides: strategy ``name`` (did-you-mean against the
    registry) with ``params`` structured by ``moe_schema.check.structure``. Errors are ``SchemaError``s:
    the name's at ``where``, a parameter's under ``params_where`` (default ``where``), so the suite
    says ``models[0].routing[1].k: ...`` and the worker ``variant.routing.params.k: ...``."""
    name = expect(f"{where}.name", name, str, "a strategy name")
    try:
        cls = ROUTING.get(name)
    except UnknownName as exc:
        raise SchemaError(where, str(exc)) from None
    return structure(cls, {} if params is None else params, where if params_where is None else params_where)


def config_from_spec(spec, where: str = "variant.routing") -> StrategyConfig:
    """A variant's routing spec ``{"name": ..., "params": {...}}`` (or a config object) → a validated
    config object (see ``routing_config``)."""
    if isinstance(spec, StrategyConfig):
        return spec
    expect(where, spec, dict, "a map with a strategy 'name' and its 'params'")
    known_keys(where, spec, ("name", "params"))
    if "name" not in spec:
        raise SchemaError(where, "missing 'name'")
    return routing_config(spec["name"], spec.get("params"), where, f"{where}.params")


def _to_tuple(value):
    if isinstance(value, list):
        return tuple(_to_tuple(v) for v in value)
    return value


# ---------------------------------------------------------------- built-ins


@strategy
@attrs.frozen(kw_only=True)
class NativeConfig(StrategyConfig):
    """The checkpoint's own router, unchanged (recorded for telemetry)."""

    name: ClassVar[str] = "native"
    implementation: ClassVar[str] = "workers.routing.native:Native"


@strategy
@attrs.frozen(kw_only=True)
class TopKConfig(StrategyConfig):
    """The k most probable experts per token."""

    name: ClassVar[str] = "topk"
    implementation: ClassVar[str] = "workers.routing.topk:TopK"
    k: int = attrs.field(validator=positive_int)
    renormalize: bool | None = _renormalize()

    def experts_per_token(self, native_k, num_experts):
        return float(min(self.k, num_experts))


@strategy
@attrs.frozen(kw_only=True)
class TopPConfig(StrategyConfig):
    """Per token, the fewest experts whose probabilities sum to at least ``p`` (``min_k``..``max_k``)."""

    name: ClassVar[str] = "topp"
    implementation: ClassVar[str] = "workers.routing.topp:TopP"
    p: float = attrs.field(validator=positive_float)
    min_k: int = attrs.field(default=1, validator=positive_int)
    max_k: int | None = attrs.field(default=None, validator=optional_positive_int)
    renormalize: bool | None = _renormalize()

    def __attrs_post_init__(self):
        if self.p > 1:
            raise ValueError(f"routing strategy 'topp': p must be in (0, 1], got {self.p!r}")
        if self.max_k is not None and self.max_k < self.min_k:
            raise ValueError(f"routing strategy 'topp': max_k ({self.max_k}) is below min_k ({self.min_k})")

    def experts_per_token(self, native_k, num_experts):
        return None


@strategy
@attrs.frozen(kw_only=True)
class RandomConfig(StrategyConfig):
    """Uniformly random experts per token (the floor); ``k`` defaults to the checkpoint's.

    By default each MoE layer draws from its own seeded stream, so a token's experts depend on the
    calls before it (how requests were batched). ``keyed: true`` draws them from a hash of (seed,
    layer, token id, position) instead: the same experts for the same token at the same position
    whatever the batching, shard or engine, so one build compares document by document on
    transformers and vLLM."""

    name: ClassVar[str] = "random"
    implementation: ClassVar[str] = "workers.routing.random_choice:RandomChoice"
    k: int | None = attrs.field(default=None, validator=optional_positive_int)
    seed: int = attrs.field(default=0, validator=int_value)
    renormalize: bool | None = _renormalize()
    keyed: bool = attrs.field(default=False, validator=bool_value)

    def experts_per_token(self, native_k, num_experts):
        return float(min(self.k or native_k, num_experts))


@strategy
@attrs.frozen(kw_only=True)
class HashConfig(StrategyConfig):
    """Hash layers: the token id alone fixes its ``k`` experts (a seeded table)."""

    name: ClassVar[str] = "hash"
    implementation: ClassVar[str] = "workers.routing.hashing:HashRouting"
    k: int = attrs.field(default=1, validator=positive_int)
    seed: int = attrs.field(default=0, validator=int_value)
    renormalize: bool | None = _renormalize()

    def experts_per_token(self, native_k, num_experts):
        return float(min(self.k, num_experts))


@strategy
@attrs.frozen(kw_only=True)
class CapacityConfig(StrategyConfig):
    """Token-choice top-k with expert capacity ``capacity_factor * k * tokens / experts``;
    assignments past an expert's capacity are dropped (that expert adds nothing: the residual carries on)."""

    name: ClassVar[str] = "capacity"
    implementation: ClassVar[str] = "workers.routing.capacity:Capacity"
    needs: ClassVar[str] = BATCH  # an expert's capacity is shared by every token of the batch
    capacity_factor: float = attrs.field(default=1.0, validator=positive_float)
    k: int | None = attrs.field(default=None, validator=optional_positive_int)
    renormalize: bool | None = _renormalize()

    def experts_per_token(self, native_k, num_experts):
        return None


@strategy
@attrs.frozen(kw_only=True)
class PruneConfig(StrategyConfig):
    """Remove experts and route among the rest. Give exactly one of: ``experts`` (ids to remove,
    one list for every layer or one list per MoE layer), ``fraction`` of experts to remove, or
    ``keep`` experts to keep; the last two remove the least used on a calibration pass over
    ``calibration_text`` (default: a fixed English text; bytes mod vocab without a tokenizer)."""

    name: ClassVar[str] = "prune"
    implementation: ClassVar[str] = "workers.routing.prune:Prune"
    experts: tuple[int, ...] | tuple[tuple[int, ...], ...] | None = attrs.field(default=None, converter=_to_tuple)
    fraction: float | None = attrs.field(default=None)
    keep: int | None = attrs.field(default=None, validator=optional_positive_int)
    calibration_text: str | None = attrs.field(default=None)
    calibration_tokens: int = attrs.field(default=512, validator=positive_int)
    renormalize: bool | None = _renormalize()

    def __attrs_post_init__(self):
        where = "routing strategy 'prune'"
        given = [n for n in ("experts", "fraction", "keep") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError(f"{where}: give exactly one of experts, fraction, keep (got {', '.join(given) or 'none'})")
        if self.fraction is not None:
            f = self.fraction
            if not isinstance(f, (int, float)) or isinstance(f, bool) or not 0 <= f < 1:
                raise ValueError(f"{where}: fraction must be a number in [0, 1), got {f!r}")
        if self.experts is not None:
            e = self.experts
            if not isinstance(e, tuple):
                raise TypeError(f"{where}: experts must be a list of expert ids or a list of such lists, got {e!r}")
            nested = bool(e) and all(isinstance(x, tuple) for x in e)
            for ids in (e if nested else (e,)):
                if not isinstance(ids, tuple) or not all(_is_int(i) and i >= 0 for i in ids):
                    raise ValueError(f"{where}: experts must hold expert ids (integers >= 0), got {list(ids)!r}")
                if len(set(ids)) != len(ids):
                    raise ValueError(f"{where}: experts lists an expert twice: {list(ids)!r}")
        if self.calibration_text is not None and not isinstance(self.calibration_text, str):
            raise TypeError(f"{where}: calibration_text must be a string, got {self.calibration_text!r}")

    def per_layer(self) -> bool:
        return bool(self.experts) and all(isinstance(x, tuple) for x in self.experts)

    def kept(self, num_experts: int) -> int | None:
        """Experts left in the layer with the fewest (None when unknown before loading)."""
        if self.keep is not None:
            return min(self.keep, num_experts)
        if self.fraction is not None:
            return num_experts - round(self.fraction * num_experts)
        lists = self.experts if self.per_layer() else (self.experts,)
        return num_experts - max(len(ids) for ids in lists)

    def experts_per_token(self, native_k, num_experts):
        return float(max(1, min(native_k, self.kept(num_experts))))


@strategy
@attrs.frozen(kw_only=True)
class ExpertChoiceConfig(StrategyConfig):
    """Each expert takes its ``capacity_factor * k * tokens / experts`` best tokens of the batch.
    Not causal: a token's route depends on the other tokens, later ones included."""

    name: ClassVar[str] = "expert_choice"
    implementation: ClassVar[str] = "workers.routing.expert_choice:ExpertChoice"
    needs: ClassVar[str] = BATCH  # experts choose among every token of the batch, later ones included
    causal: ClassVar[bool] = False
    capacity_factor: float = attrs.field(default=1.0, validator=positive_float)
    k: int | None = attrs.field(default=None, validator=optional_positive_int)
    renormalize: bool | None = _renormalize()

    def experts_per_token(self, native_k, num_experts):
        return None


@strategy
@attrs.frozen(kw_only=True)
class AuxFreeConfig(StrategyConfig):
    """DeepSeek-V3 auxiliary-loss-free balancing: experts chosen by score + per-expert bias, gated by
    the score alone; in training mode each forward moves the bias by ``gamma`` against the load."""

    name: ClassVar[str] = "aux_free"
    implementation: ClassVar[str] = "workers.routing.aux_free:AuxFree"
    # At evaluation the bias is only read, so the rule is one over router logits (top-k of probability +
    # bias); but the bias is learned state (moved in training, saved beside the trained checkpoint).
    needs: ClassVar[str] = STATE
    gamma: float = attrs.field(default=0.001, validator=non_negative_float)
    k: int | None = attrs.field(default=None, validator=optional_positive_int)
    renormalize: bool | None = _renormalize()

    def experts_per_token(self, native_k, num_experts):
        return float(min(self.k or native_k, num_experts))

