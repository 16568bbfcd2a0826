"""Small-sample statistics the verdicts rest on: t-intervals over seeds, detectable differences, sample sizes.

Pure python (the Student t quantile is computed here, so the report needs no scipy). Two sources of
uncertainty, kept apart because they answer different questions:

- **over seeds**: each training seed gives one paired difference (MoE − twin, same seed, same data);
  a t-interval over those differences says how the *training* outcome varies;
- **within a seed**: the paired bootstrap over documents (:mod:`harness.report.bootstrap`) says how
  the *evaluation sample* varies, for one trained pair.

Detectable difference (MDE) at two-sided level α and power 1 − β, for a standard error ``se`` of the
mean difference: ``MDE = (q(1 − α/2) + q(1 − β)) × se`` with ``q`` the t quantile on n − 1 degrees of
freedom over seeds, the normal quantile within a seed (where ``se`` comes from the bootstrap interval's
width: ``se = (hi − lo) / (2 z(1 − α/2))``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

ALPHA = 0.05
POWER = 0.8
#: the most seeds / documents a "needed" figure is searched up to; beyond it the answer is "more than"
MAX_SEEDS = 100_000


# ---- Student t ------------------------------------------------------------------------------
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_ppf(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on the CDF)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_ppf: p must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"t_ppf: df must be positive, got {df}")
    if p < 0.5:
        return -t_ppf(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def z_ppf(p: float) -> float:
    return NormalDist().inv_cdf(p)


# ---- intervals over seeds -------------------------------------------------------------------
@dataclass(frozen=True)
class SeedCI:
    """mean of ``n`` per-seed differences, sample sd, and the ``level`` t-interval [lo, hi]."""

    mean: float
    lo: float
    hi: float
    n: int
    sd: float
    level: float = 0.95

    @property
    def significant(self) -> bool:
        return self.lo > 0.0 or self.hi < 0.0

    @property
    def se(self) -> float:
        return self.sd / math.sqrt(self.n)


def t_interval(values, level: float = 0.95) -> SeedCI | None:
    """The t-interval of the mean of ``values`` (one per seed); None for fewer than two."""
    xs = [float(x) for x in values]
    n = len(xs)
    if n < 2:
        return None
    mean = sum(xs) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_ppf(0.5 + level / 2.0, n - 1) * sd / math.sqrt(n)
    return SeedCI(mean, mean - half, mean + half, n, sd, level)


# ---- what a run could detect, and what it would take -----------------------------------------
def mde_seeds(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest true mean difference a paired t-test over ``n`` seeds detects with ``power``."""
    if n < 2:
        return math.inf
    df = n - 1
    return (t_ppf(1.0 - alpha / 2.0, df) + t_ppf(power, df)) * sd / math.sqrt(n)


def seeds_needed(effect: float, sd: float, alpha: float = ALPHA, power: float = POWER,
                 limit: int = MAX_SEEDS) -> int | None:
    """Seeds a paired t-test needs to detect ``effect`` given the per-seed sd; None if over ``limit``
    or the effect is zero. A zero sd needs the minimum of two seeds."""
    effect = abs(effect)
    if effect == 0.0 or not math.isfinite(effect):
        return None
    if sd == 0.0:
        return 2
    if mde_seeds(sd, 2, alpha, power) <= effect:
        return 2
    lo, hi = 2, 4  # MDE falls monotonically with n: double until detected, then bisect
    while mde_seeds(sd, hi, alpha, power) > effect:
        if hi > limit:
            return None
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if mde_seeds(sd, mid, alpha, power) <= effect else (mid, hi)
    return hi if hi <= limit else None


def se_from_interval(lo: float, hi: float, level: float = 0.95) -> float:
    """The standard error a normal interval of this width implies (used for bootstrap intervals)."""
    return (hi - lo) / (2.0 * z_ppf(0.5 + level / 2.0))


def mde_bootstrap(lo: float, hi: float, level: float = 0.95, alpha: float = ALPHA, power: float = POWER) -> float:
    """Smallest difference the within-seed evaluation detects, from its bootstrap interval's width."""
    return (z_ppf(1.0 - alpha / 2.0) + z_ppf(power)) * se_from_interval(lo, hi, level)


def docs_needed(effect: float, n_docs: int, lo: float, hi: float, level: float = 0.95,
                alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Documents needed to detect ``effect``: the standard error shrinks as 1/sqrt(documents)."""
    effect = abs(effect)
    if effect == 0.0 or n_docs <= 0:
        return None
    mde = mde_bootstrap(lo, hi, level, alpha, power)
    return max(n_docs, math.ceil(n_docs * (mde / effect) ** 2))


# ---- multiplicity: Holm's step-down within a family -------------------------------------------
def holm_levels(pvalues, alpha: float = ALPHA) -> list[tuple[float, bool]]:
    """Holm–Bonferroni over one family: per input, (confidence level of its adjusted interval, rejected).

    Ordered by p-value (ties keep input order), the i-th of m (i from 1) is rejected when its p is
    at most α/(m − i + 1) and every earlier one was rejected. Rejected ones carry the level
    1 − α/(m − i + 1) of their own step; from the first that is not rejected on, every one carries
    the level of that step, 1 − α/(m − j + 1): an interval at that level contains the boundary
    for all of them (their p-values are no smaller), so each interval agrees with its decision.
    """
    ps = [1.0 if p is None or not math.isfinite(p) else float(p) for p in pvalues]
    m = len(ps)
    order = sorted(range(m), key=lambda i: (ps[i], i))
    out: list[tuple[float, bool]] = [(1.0 - alpha, False)] * m
    stopped_at = None
    for rank, i in enumerate(order, 1):
        step = alpha / (m - rank + 1)
        if stopped_at is None and ps[i] <= step:
            out[i] = (1.0 - step, True)
            continue
        if stopped_at is None:
            stopped_at = step
        out[i] = (1.0 - stopped_at, False)
    return out


def holm_adjusted_p(pvalues) -> list[float]:
    """Holm-adjusted p-values: max over earlier ranks of min(1, (m − r + 1) p_(r))."""
    ps = [1.0 if p is None or not math.isfinite(p) else float(p) for p in pvalues]
    m = len(ps)
    order = sorted(range(m), key=lambda i: (ps[i], i))
    out, running = [1.0] * m, 0.0
    for rank, i in enumerate(order, 1):
        running = max(running, min(1.0, (m - rank + 1) * ps[i]))
        out[i] = running
    return out


def two_sided_p(stat: float, df: int | None) -> float:
    """Two-sided p of a t (df) or normal (df None) statistic."""
    if math.isinf(stat):
        return 0.0
    if df is None:
        return 2.0 * (1.0 - NormalDist().cdf(abs(stat)))
    return 2.0 * (1.0 - t_cdf(abs(stat), df))


def quantile(level: float, df: int | None) -> float:
    """The two-sided ``level`` quantile: t on ``df`` degrees of freedom, or normal when df is None."""
    p = 0.5 + level / 2.0
    return z_ppf(p) if df is None else t_ppf(p, df)
