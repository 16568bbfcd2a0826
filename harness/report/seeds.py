"""Training seeds: a suite that trains each model with several seeds names its variants ``<name>#s<seed>``.

The report groups those variants back into one model, states each figure as mean ± spread (sample
standard deviation over seeds), and pairs an MoE model with a dense twin seed by seed. A run without
seeds is the one-seed case of the same code: every variant is its own group.

Sweeps (the suite key ``sweep``) name their model copies ``<model>[<setting>=<value>]`` and carry
``"sweep": {setting: value}`` in each variant spec; pairs form only within one sweep point. Routing
strategies on one trained MoE (``<model>@<label>#s<seed>``) pair with the native routing of the same
model and seed (:func:`routing_pairs`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from harness.pairs import pair_group
from harness.report.run import Run

SEED_SUFFIX = re.compile(r"#s(-?\d+)$")
SWEEP_SUFFIX = re.compile(r"\[[^\[\]]*\]$")


def split_seed(variant: str) -> tuple[str, int | None]:
    """``"moe#s2"`` -> ``("moe", 2)``; a name without the suffix -> ``(name, None)``."""
    m = SEED_SUFFIX.search(variant)
    return (variant[: m.start()], int(m.group(1))) if m else (variant, None)


def seed_groups(run: Run) -> dict[str, list[str]]:
    """{model name without seed: [its variants, in run order]}."""
    groups: dict[str, list[str]] = {}
    for v in run.variants:
        groups.setdefault(split_seed(v)[0], []).append(v)
    return groups


def has_seeds(run: Run) -> bool:
    return any(len(vs) > 1 for vs in seed_groups(run).values())


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for fewer than two values)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((x - mean) ** 2 for x in values) / (len(values) - 1))


def fmt_mean_sd(values: list[float], fmt) -> str:
    """``0.2500`` for one value, ``0.2500 ± 0.0100 (2 seeds)`` for several."""
    if not values:
        return "-"
    mean, sd = mean_sd(values)
    return fmt(mean) if sd is None else f"{fmt(mean)} ± {fmt(sd)} ({len(values)} seeds)"


@dataclass
class ModelPair:
    """An MoE model and its dense twin at equal ``kind`` parameters, with their variants seed by seed."""

    kind: str
    moe: str
    dense: str
    ratio: float
    seeds: list[tuple[str, str]] = field(default_factory=list)  # (MoE variant, dense variant), same seed
    sweep: dict = field(default_factory=dict)  # the sweep point both sides belong to ({} without a sweep)


def sweep_of(run: Run, variant: str) -> dict:
    """The variant's sweep point ``{setting: value}``; {} outside a sweep."""
    sweep = run.spec(variant).get("sweep")
    return dict(sweep) if isinstance(sweep, dict) else {}


def sweep_label(sweep: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sweep.items())


def base_model(run: Run, variant: str) -> str:
    """The model a variant was made from, without seed, routing label or sweep point."""
    name = run.spec(variant).get("model") or split_seed(variant)[0].partition("@")[0]
    return SWEEP_SUFFIX.sub("", str(name))


def is_native(run: Run, variant: str) -> bool:
    """True for a variant under its build's own routing (or a dense build)."""
    routing = run.spec(variant).get("routing")
    return not routing or (routing.get("name") == "native" and not routing.get("params"))


def model_pairs(run: Run, native_only: bool = False) -> list[ModelPair]:
    """The run's variant pairs folded into model pairs; pairs across different seeds or sweep points
    are dropped. ``native_only``: only the MoE under its own routing (the claims' comparisons)."""
    out: dict[tuple, ModelPair] = {}
    for p in run.pairs():
        (mb, ms), (db, ds) = split_seed(p.moe), split_seed(p.dense)
        if ms != ds or sweep_of(run, p.moe) != sweep_of(run, p.dense):
            continue
        if native_only and not is_native(run, p.moe):
            continue
        pair = out.setdefault((p.kind, mb, db), ModelPair(p.kind, mb, db, p.ratio, sweep=sweep_of(run, p.moe)))
        pair.seeds.append((p.moe, p.dense))
    return list(out.values())


def routing_pairs(run: Run) -> list[ModelPair]:
    """Each non-native routing of a trained MoE against the native routing of the same model, seed,
    sweep point and engine setting (``harness.pairs.pair_group``): ``ModelPair(kind="routing", moe=<strategy variant's model>, dense=<native>)``."""
    def where(v: str) -> tuple:  # the model, and its sweep point, seed and engine setting
        return (run.spec(v).get("model"), *pair_group(v))

    native: dict[tuple, str] = {}
    for v in run.variants:
        if is_native(run, v) and run.is_moe(v):
            native[where(v)] = v
    out: dict[tuple, ModelPair] = {}
    for v in run.variants:
        if is_native(run, v) or not run.is_moe(v):
            continue
        if where(v) not in native:
            continue
        base = native[where(v)]
        key = (split_seed(v)[0], split_seed(base)[0])
        pair = out.setdefault(key, ModelPair("routing", key[0], key[1], 1.0, sweep=sweep_of(run, v)))
        pair.seeds.append((v, base))
    return list(out.values())
