"""Probe plugins and their parameters: torch-free, so the harness validates a suite's probes.

A suite names probes as ``probes: [{name: latency, batch_sizes: [1, 4], ...}, ...]``. Each probe is
an attrs frozen class registered in ``PROBES``; ``parse_probe(name, params, where)`` checks every
parameter (through ``moe_schema.check.structure``, the structurer routing parameters use too; the
suite parser and the probe job both call it) and fails with one line naming the YAML path, e.g.
``probes[0].batch_sizes[1]: must be a positive int, got 0``. ``config.runner()`` imports the probe's
worker module lazily and returns its ``run(config, ctx)`` function.
"""

from __future__ import annotations

import attrs

from moe_schema.check import SchemaError, did_you_mean, fits, structure
from moe_schema.registry import Registry, resolve

PROBES: Registry = Registry("probe", "moe_harness.probes", base="moe_schema.probes:ProbeConfig")

COMPILE_MODES = ("none", "graphs", "compile")


class ProbeConfigError(SchemaError):
    """A probe's parameters are wrong; the message names the YAML path."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_at_least(low: int):
    def check(inst, attr, value):
        if not _is_int(value) or value < low:
            raise ProbeConfigError(f"{attr.name}: must be an int >= {low}, got {value!r}")
    return check


def _int_list(inst, attr, value):
    if not isinstance(value, tuple) or not value:
        raise ProbeConfigError(f"{attr.name}: must be a non-empty list of positive ints, got {value!r}")
    for i, v in enumerate(value):
        if not _is_int(v) or v < 1:
            raise ProbeConfigError(f"{attr.name}[{i}]: must be a positive int, got {v!r}")


def _to_tuple(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _compile(inst, attr, value):
    if value is not None and value not in COMPILE_MODES:
        raise ProbeConfigError(f"{attr.name}: must be one of {', '.join(COMPILE_MODES)}{did_you_mean(value, COMPILE_MODES)}, "
                               f"got {value!r}")


def _opt_str(inst, attr, value):
    if value is not None and (not isinstance(value, str) or not value):
        raise ProbeConfigError(f"{attr.name}: must be a name (e.g. eager, grouped_mm) or null, got {value!r}")


_PEAK_KEYS = ("bandwidth_gbs", "tflops")


def _peaks(inst, attr, value):
    if value is None:
        return
    if not isinstance(value, dict):
        raise ProbeConfigError(f"{attr.name}: must be a mapping {{bandwidth_gbs: ..., tflops: ...}}, got {value!r}")
    for key in value:
        if key not in _PEAK_KEYS:
            raise ProbeConfigError(f"{attr.name}.{key}: unknown key{did_you_mean(key, _PEAK_KEYS)}; "
                                   f"known: {', '.join(_PEAK_KEYS)}")
    for key, v in value.items():
        if not fits(float, v) or v <= 0:
            raise ProbeConfigError(f"{attr.name}.{key}: must be a positive number, got {v!r}")


@attrs.frozen(kw_only=True)
class ProbeConfig:
    """Parameters every probe takes."""

    name = "?"
    module = "?"  # workers.probes.<module>: holds run(config, ctx) -> rows

    experts_implementation: str | None = attrs.field(default=None, validator=_opt_str)
    seed: int = attrs.field(default=0, validator=_int_at_least(0))

    def runner(self):
        """The probe's ``run(config, ctx) -> list[dict]``, imported on first use (needs torch)."""
        return resolve(f"workers.probes.{self.module}:run", what=f"probe {self.name!r}")

    def to_params(self) -> dict:
        """The parameters as plain JSON-safe data (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.asdict(self).items()}


@attrs.frozen(kw_only=True)
class TimedConfig(ProbeConfig):
    """Parameters of the probes that time the model."""

    warmup: int = attrs.field(default=2, validator=_int_at_least(0))
    repeats: int = attrs.field(default=5, validator=_int_at_least(1))
    compile: str | None = attrs.field(default=None, validator=_compile)  # None: graphs on CUDA, none on CPU
    device_peaks: dict | None = attrs.field(default=None, validator=_peaks)


@PROBES.register("latency")
@attrs.frozen(kw_only=True)
class LatencyConfig(TimedConfig):
    """Prefill time per prompt length (batch 1); decode time per token per batch size and context."""

    name = "latency"
    module = "latency"
    prompt_lengths: tuple[int, ...] = attrs.field(default=(32, 128), converter=_to_tuple, validator=_int_list)
    batch_sizes: tuple[int, ...] = attrs.field(default=(1, 4), converter=_to_tuple, validator=_int_list)
    context_lengths: tuple[int, ...] = attrs.field(default=(64,), converter=_to_tuple, validator=_int_list)
    new_tokens: int = attrs.field(default=16, validator=_int_at_least(0))


@PROBES.register("throughput")
@attrs.frozen(kw_only=True)
class ThroughputConfig(TimedConfig):
    """Tokens per second over a batch-size sweep, prefill and decode apart."""

    name = "throughput"
    module = "throughput"
    batch_sizes: tuple[int, ...] = attrs.field(default=(1, 2, 4, 8, 16), converter=_to_tuple, validator=_int_list)
    prompt_length: int = attrs.field(default=128, validator=_int_at_least(1))
    context_length: int = attrs.field(default=128, validator=_int_at_least(1))
    new_tokens: int = attrs.field(default=16, validator=_int_at_least(0))


@PROBES.register("memory")
@attrs.frozen(kw_only=True)
class MemoryConfig(ProbeConfig):
    """Peak memory split into weights, KV cache and activations, per batch size and context."""

    name = "memory"
    module = "memory"
    batch_sizes: tuple[int, ...] = attrs.field(default=(1, 4), converter=_to_tuple, validator=_int_list)
    context_lengths: tuple[int, ...] = attrs.field(default=(128,), converter=_to_tuple, validator=_int_list)


@PROBES.register("routing")
@attrs.frozen(kw_only=True)
class RoutingConfig(ProbeConfig):
    """Distinct experts touched per prefill and per decode step, by batch size."""

    name = "routing"
    module = "routing"
    batch_sizes: tuple[int, ...] = attrs.field(default=(1, 4, 16, 64), converter=_to_tuple, validator=_int_list)
    prompt_length: int = attrs.field(default=64, validator=_int_at_least(1))
    new_tokens: int = attrs.field(default=8, validator=_int_at_least(0))


def parse_probe(name, params: dict | None = None, where: str = "probe") -> ProbeConfig:
    """Validate one probe entry; every error is a one-line ``ProbeConfigError`` naming ``where``."""
    from moe_schema.registry import UnknownName

    if not isinstance(name, str):
        raise ProbeConfigError(f"{where}.name: must be a probe name, got {name!r}")
    try:
        cls = PROBES.get(name)
    except UnknownName as e:
        raise ProbeConfigError(f"{where}.name: {e}") from None
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise ProbeConfigError(f"{where}: probe parameters must be a mapping, got {params!r}")
    try:  # the one structurer, as for routing parameters
        return structure(cls, params, where)
    except SchemaError as e:
        raise ProbeConfigError(e.path, e.message) from None
