"""Paired bootstrap confidence intervals for a metric difference over the same documents.

Two variants evaluated on one task give one value per document each (``samples``). Joining them on
``doc_id`` gives paired differences ``d_i = a_i - b_i``; resampling documents with replacement and
taking the mean of ``d`` each time gives the bootstrap distribution of the difference of means.
Pairing removes the between-document variance, so the interval is far tighter than comparing two
independent stderrs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: bootstrap resamples per interval; the Monte-Carlo error on a 95% bound is well under 1% of its width
N_BOOT = 2000
#: resampled values held in memory at once (chunks of resamples keep memory flat for big tasks)
_CHUNK_CELLS = 2_000_000


@dataclass(frozen=True)
class Diff:
    """mean(a - b) over ``n`` shared documents, with its ``level`` bootstrap interval [lo, hi]."""

    mean: float
    lo: float
    hi: float
    n: int
    level: float = 0.95

    @property
    def significant(self) -> bool:
        """True where the interval excludes zero."""
        return self.lo > 0.0 or self.hi < 0.0


def is_number(value) -> bool:
    """A finite real number (bools count: lm-eval's per-document ``acc`` is often 0/1 or True/False)."""
    return isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value))


def join_on_doc_id(samples_a: list[dict], samples_b: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-document ``metric`` values of the documents both sample lists hold, in doc_id order.

    Documents without the metric, or with a non-numeric value, are left out of the join.
    """
    def table(samples):
        out = {}
        for s in samples:
            value = s.get(metric)
            if "doc_id" in s and is_number(value):
                out[s["doc_id"]] = float(value)
        return out

    a, b = table(samples_a), table(samples_b)
    shared = sorted(set(a) & set(b), key=lambda k: (str(type(k)), k))
    return (np.array([a[k] for k in shared], dtype=np.float64),
            np.array([b[k] for k in shared], dtype=np.float64))


def paired_bootstrap(a, b, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> Diff:
    """Bootstrap CI of mean(a - b) for paired arrays ``a`` and ``b`` (same length, same documents).

    Seeded and vectorised: the same inputs and seed always give the same interval.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_bootstrap: a and b must be 1-D and the same length, got {a.shape} and {b.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"paired_bootstrap: level must be in (0, 1), got {level}")
    n = a.size
    if n == 0:
        raise ValueError("paired_bootstrap: no shared documents to compare")
    d = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = d[idx].mean(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return Diff(mean=float(d.mean()), lo=float(lo), hi=float(hi), n=int(n), level=level)


def paired_diff(samples_a: list[dict], samples_b: list[dict], metric: str, seed: int = 0) -> Diff | None:
    """Join two sample lists on doc_id and bootstrap ``metric`` a - b; None where no document is shared."""
    a, b = join_on_doc_id(samples_a, samples_b, metric)
    if a.size == 0:
        return None
    return paired_bootstrap(a, b, seed=seed)
