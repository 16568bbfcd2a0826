"""Training seeds: a suite that trains each model with several seeds names its variants ``<name>#s<seed>``.

The report groups those variants back into one model, states each figure as mean ± spread (sample
standard deviation over seeds), and pairs an MoE model with a dense twin seed by seed. A run without
seeds is the one-seed case of the same code: every variant is its own group.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from harness.report.run import Run

SEED_SUFFIX = re.compile(r"#s(-?\d+)$")


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


def model_pairs(run: Run) -> list[ModelPair]:
    """The run's variant pairs folded into model pairs; pairs across different seeds are dropped."""
    out: dict[tuple, ModelPair] = {}
    for p in run.pairs():
        (mb, ms), (db, ds) = split_seed(p.moe), split_seed(p.dense)
        if ms != ds:
            continue
        pair = out.setdefault((p.kind, mb, db), ModelPair(p.kind, mb, db, p.ratio))
        pair.seeds.append((p.moe, p.dense))
    return list(out.values())
