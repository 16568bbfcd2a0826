"""Held-out loss along training (``train.heldout_curve``) and the token efficiency read off it.

A train result's ``heldout_curve`` is a list of ``{"tokens", "seconds", "loss": {"seen", "unseen"}}``
ordered by tokens: held-out cross-entropy (nats per token) at a few log-spaced token counts, the last
at the end of training. ``seen``: fresh biographies of entities the build trained on; ``unseen``:
entities it never saw.

Token efficiency of an equal-active pair (claim 1, OLMoE arXiv 2409.02060 Fig. 4): the tokens the MoE
needed to reach its dense twin's *final* held-out loss, over the twin's tokens. The MoE's curve is
interpolated linearly in log(tokens) between the two evaluations around the crossing (loss curves are
close to straight on a log-token axis). The same in training seconds, on the device that trained them.
Pure python; the figures are in :mod:`harness.report.sections.efficiency`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.report.run import Run
from harness.report.seeds import ModelPair, split_seed
from harness.report.stats import SeedCI, t_interval

KINDS = ("seen", "unseen")
#: OLMoE-1B-7B vs OLMo-1B (arXiv 2409.02060 Fig. 4): the MoE reaches the dense model's quality with
#: ~3x fewer tokens and ~2x less wall-clock (23.6k vs 37.5k tokens/s/GPU)
OLMOE_TOKEN_FRACTION = 1 / 3
OLMOE_SECONDS_FRACTION = 1 / 2


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def heldout_curve(run: Run, variant: str) -> list[dict]:
    """The variant's usable curve points (numeric tokens), in token order; [] without one."""
    curve = (run.training(variant) or {}).get("heldout_curve")
    if not isinstance(curve, list):
        return []
    points = [p for p in curve if isinstance(p, dict) and _num(p.get("tokens")) and isinstance(p.get("loss"), dict)]
    return sorted(points, key=lambda p: p["tokens"])


def points(curve: list[dict], kind: str, x: str = "tokens") -> list[tuple[float, float]]:
    """[(x, loss)] of one held-out kind, ``x`` = "tokens" or "seconds"."""
    return [(float(p[x]), float(p["loss"][kind])) for p in curve if _num(p.get(x)) and _num(p["loss"].get(kind))]


@dataclass(frozen=True)
class Reach:
    """Where a curve first reaches a target loss: ``x`` (None: never), ``bound`` True when the first
    evaluation was already below the target (so it was reached at or before ``x``)."""

    x: float | None
    bound: bool = False

    @property
    def reached(self) -> bool:
        return self.x is not None


def reach(curve: list[tuple[float, float]], target: float) -> Reach:
    """First ``x`` where the loss falls to ``target``, interpolated linearly in log(x) (linearly in x
    where the earlier point is at x = 0)."""
    for i, (x1, l1) in enumerate(curve):
        if l1 > target:
            continue
        if i == 0:
            return Reach(x1, bound=l1 < target)
        if l1 == target:
            return Reach(x1)
        x0, l0 = curve[i - 1]
        f = (l0 - target) / (l0 - l1)
        if x0 > 0 and x1 > 0:
            return Reach(math.exp(math.log(x0) + f * (math.log(x1) - math.log(x0))))
        return Reach(x0 + f * (x1 - x0))
    return Reach(None)


@dataclass
class SeedEfficiency:
    """One seed of one pair, one held-out kind."""

    moe: str
    dense: str
    kind: str
    target: float            # the twin's final held-out loss
    twin_tokens: float
    twin_seconds: float | None
    tokens: Reach
    seconds: Reach

    @property
    def token_fraction(self) -> float | None:
        return self.tokens.x / self.twin_tokens if self.tokens.reached and self.twin_tokens else None

    @property
    def seconds_fraction(self) -> float | None:
        if self.seconds.reached and self.twin_seconds:
            return self.seconds.x / self.twin_seconds
        return None


@dataclass
class PairEfficiency:
    pair: ModelPair
    kind: str
    seeds: list[SeedEfficiency] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)

    def _fractions(self, attr: str) -> list[float]:
        return [getattr(s, attr) for s in self.seeds if getattr(s, attr) is not None]

    @property
    def not_reached(self) -> int:
        return sum(not s.tokens.reached for s in self.seeds)

    def token_ci(self) -> SeedCI | None:
        return t_interval(self._fractions("token_fraction")) if not self.not_reached else None

    def seconds_ci(self) -> SeedCI | None:
        fr = self._fractions("seconds_fraction")
        return t_interval(fr) if len(fr) == len(self.seeds) else None

    def mean(self, attr: str) -> float | None:
        fr = self._fractions(attr)
        return sum(fr) / len(fr) if fr and len(fr) == len(self.seeds) else None


def device_of(run: Run, variant: str) -> str:
    """The device that trained ``variant``, in words: the worker's device name and its torch device."""
    for r in run.ok("train", variant):
        env = r.get("env") or {}
        name, dev = env.get("device_name"), (r.get("train") or {}).get("device") or env.get("device")
        if name and dev and str(name) != str(dev):
            return f"{name} ({dev})"
        if name or dev:
            return str(name or dev)
    return "unknown device"


def seed_efficiency(run: Run, moe: str, dense: str, kind: str) -> SeedEfficiency | None:
    twin, mine = heldout_curve(run, dense), heldout_curve(run, moe)
    twin_pts, moe_pts = points(twin, kind), points(mine, kind)
    if not twin_pts or not moe_pts:
        return None
    last = twin[-1]
    target = twin_pts[-1][1]
    twin_s = float(last["seconds"]) if _num(last.get("seconds")) else None
    return SeedEfficiency(moe, dense, kind, target, twin_pts[-1][0], twin_s, reach(moe_pts, target),
                          reach(points(mine, kind, "seconds"), target))


def pair_efficiency(run: Run, pairs: list[ModelPair]) -> list[PairEfficiency]:
    """Token efficiency of every given (equal-active) pair, seed by seed, per held-out kind."""
    out = []
    for pair in pairs:
        for kind in KINDS:
            eff = PairEfficiency(pair, kind)
            for moe, dense in pair.seeds:
                s = seed_efficiency(run, moe, dense, kind)
                if s is not None:
                    eff.seeds.append(s)
            if eff.seeds:
                eff.devices = sorted({device_of(run, v) for s in eff.seeds for v in (s.moe, s.dense)})
                out.append(eff)
    return out


def seed_label(variant: str) -> str:
    seed = split_seed(variant)[1]
    return "-" if seed is None else str(seed)
