"""Paired bootstrap confidence intervals for a metric difference over the same documents.

Two variants evaluated on one task give one value per document each (``samples``). Joining them on
``doc_id`` gives paired differences ``d_i = a_i - b_i``; resampling documents with replacement and
taking the mean of ``d`` each time gives the bootstrap distribution of the difference of means.
Pairing removes the between-document variance, so the interval is far tighter than comparing two
independent stderrs.

Corpus-level metrics (perplexities, bits per byte) keep a [loglikelihood, weight] pair per document
(lm-eval's plain ``perplexity``, as in lambada, keeps the loglikelihood alone: weight one); their
bootstrap resamples documents and recomputes the aggregate. Several training seeds of the same
two models average the per-seed differences (:func:`seeded_paired_diff`).
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


def _doc_order(ids) -> list:
    """doc_ids in order; ids of different types (ints and strings) sort by type first, not a TypeError."""
    return sorted(ids, key=lambda k: (str(type(k)), k))


def _floats(values) -> np.ndarray:
    """``values`` as float64 (bools too: numpy refuses to subtract two bool arrays)."""
    return np.asarray(values, dtype=np.float64)


def _check_level(level: float, who: str) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"{who}: level must be in (0, 1), got {level}")


def _percentile_interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """The percentile bootstrap interval: the (1 - level)/2 and (1 + level)/2 quantiles of the draws."""
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(draws, [tail, 100.0 - tail])
    return float(lo), float(hi)


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
    shared = _doc_order(set(a) & set(b))
    return _floats([a[k] for k in shared]), _floats([b[k] for k in shared])


def paired_bootstrap(a, b, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> Diff:
    """Bootstrap CI of mean(a - b) for paired arrays ``a`` and ``b`` (same length, same documents).

    Seeded and vectorised: the same inputs and seed always give the same interval.
    """
    a, b = _floats(a), _floats(b)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_bootstrap: a and b must be 1-D and the same length, got {a.shape} and {b.shape}")
    _check_level(level, "paired_bootstrap")
    n = a.size
    if n == 0:
        raise ValueError("paired_bootstrap: no shared documents to compare")
    d = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot, dtype=np.float64)
    # Chunks bound memory, not the draws: the generator hands out the same stream in any chunk size.
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = d[idx].mean(axis=1)
    lo, hi = _percentile_interval(means, level)
    return Diff(mean=float(d.mean()), lo=lo, hi=hi, n=int(n), level=level)


def paired_diff(samples_a: list[dict], samples_b: list[dict], metric: str, seed: int = 0) -> Diff | None:
    """Join two sample lists on doc_id and bootstrap ``metric`` a - b; None where no document is shared.

    Per-document numbers give the difference of means; [loglikelihood, weight] pairs (perplexities,
    bits per byte) the difference of the aggregates, recomputed per resample."""
    return seeded_paired_diff([samples_a], [samples_b], metric, seed=seed)


# ---- corpus-level metrics: perplexities and bits per byte ----------------------------------
#: lm-eval metrics whose per-document value is a [loglikelihood, weight] pair and whose task value
#: is an aggregate over all documents (not a mean), as ``f(sum ll, sum w)``
AGGREGATES = {
    "word_perplexity": lambda ll, w: np.exp(-ll / w),
    "byte_perplexity": lambda ll, w: np.exp(-ll / w),
    "bits_per_byte": lambda ll, w: -ll / w / math.log(2),
}


def aggregate_of(metric: str):
    """The aggregate ``f(sum ll, sum w)`` of a [loglikelihood, weight] metric, or None."""
    base = metric.split(",")[0]
    if base in AGGREGATES:
        return AGGREGATES[base]
    return AGGREGATES["word_perplexity"] if base.endswith("perplexity") else None


def _is_pair(value) -> bool:
    return (isinstance(value, (list, tuple)) and len(value) == 2 and all(is_number(v) for v in value)
            and not isinstance(value[0], bool))


def _is_loglikelihood(value) -> bool:
    """A plain per-document number of a perplexity metric: lm-eval's ``perplexity`` (lambada) logs
    each document's loglikelihood alone and aggregates ``exp(-mean)``, a [loglikelihood, 1] pair."""
    return is_number(value) and not isinstance(value, bool)


def _as_pair(value) -> list | None:
    """A document's [loglikelihood, weight], or None where the value is neither form."""
    if _is_pair(value):
        return list(value)
    return [value, 1] if _is_loglikelihood(value) else None


def _pairs_array(rows: list) -> np.ndarray:
    """(n, 2) float64, also for no rows."""
    out = _floats(rows)
    return out.reshape(-1, 2)


def join_pairs_on_doc_id(samples_a: list[dict], samples_b: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`join_on_doc_id` for [loglikelihood, weight] values: two float (n, 2) arrays. A plain
    number is a loglikelihood of weight one (lm-eval's ``perplexity`` metric)."""
    def table(samples):
        rows = {s["doc_id"]: _as_pair(s.get(metric)) for s in samples if "doc_id" in s}
        return {k: v for k, v in rows.items() if v is not None}

    a, b = table(samples_a), table(samples_b)
    shared = _doc_order(set(a) & set(b))
    return _pairs_array([a[k] for k in shared]), _pairs_array([b[k] for k in shared])


def paired_aggregate_bootstrap(a, b, aggregate, n_boot: int = N_BOOT, seed: int = 0, level: float = 0.95) -> Diff:
    """Bootstrap CI of ``aggregate(A) - aggregate(B)`` over documents, paired.

    ``a`` and ``b``: arrays of shape (seeds, n, 2) or (n, 2) holding each document's
    [loglikelihood, weight]; seeds are the same model trained with different seeds, evaluated on
    the same documents. Each resample draws documents with replacement (the same draw for both
    sides and every seed), recomputes ``aggregate(sum ll, sum w)`` per seed and side, and takes the
    mean over seeds of the difference.
    """
    a, b = _floats(a), _floats(b)
    a, b = (a[None] if a.ndim == 2 else a), (b[None] if b.ndim == 2 else b)
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 2:
        raise ValueError(f"paired_aggregate_bootstrap: a and b must both be (seeds, n, 2), got {a.shape} and {b.shape}")
    _check_level(level, "paired_aggregate_bootstrap")
    n = a.shape[1]
    if n == 0:
        raise ValueError("paired_aggregate_bootstrap: no shared documents to compare")

    def stat(sa, sb):  # sums (..., 2) -> mean over seeds of aggregate difference
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return (aggregate(sa[..., 0], sa[..., 1]) - aggregate(sb[..., 0], sb[..., 1])).mean(axis=0)

    point = float(stat(a.sum(axis=1), b.sum(axis=1)))
    rng = np.random.default_rng(seed)
    diffs = np.empty(n_boot, dtype=np.float64)
    step = max(1, _CHUNK_CELLS // (n * a.shape[0]))
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        diffs[start:stop] = stat(a[:, idx].sum(axis=2), b[:, idx].sum(axis=2))
    lo, hi = _percentile_interval(diffs, level)
    return Diff(mean=point, lo=lo, hi=hi, n=int(n), level=level)


def seeded_paired_diff(samples_a: list[list[dict]], samples_b: list[list[dict]], metric: str,
                       seed: int = 0) -> Diff | None:
    """Paired bootstrap of ``metric`` A - B over the documents every seed of both sides answered.

    ``samples_a[s]`` and ``samples_b[s]``: the per-document samples of seed ``s`` (one entry per
    seed, matched by position; a run without seeds passes one list each). Mean-type metrics use
    the per-document difference averaged over seeds; [loglikelihood, weight] metrics (and a
    perplexity logged as a plain loglikelihood) recompute their aggregate per resample. None where no document is shared or the values are not usable.
    """
    if not samples_a or len(samples_a) != len(samples_b):
        return None
    aggregate = aggregate_of(metric)
    first = next((s.get(metric) for s in samples_a[0] if metric in s), None)
    pair_values = aggregate is not None and _as_pair(first) is not None
    join = join_pairs_on_doc_id if pair_values else join_on_doc_id
    by_doc = lambda rows: {r["doc_id"]: r for r in rows if "doc_id" in r}  # noqa: E731
    tables = [(by_doc(sa), by_doc(sb)) for sa, sb in zip(samples_a, samples_b)]
    ids = set.intersection(*(set(ta) & set(tb) for ta, tb in tables))
    if not ids:
        return None
    order = _doc_order(ids)
    arrays = [join([ta[k] for k in order], [tb[k] for k in order], metric) for ta, tb in tables]
    if any(a.shape[0] != len(order) for a, _ in arrays):
        return None  # some document lacks a usable value in some seed
    a, b = np.stack([x for x, _ in arrays]), np.stack([y for _, y in arrays])
    if pair_values:
        return paired_aggregate_bootstrap(a, b, aggregate, seed=seed)
    return paired_bootstrap(a.mean(axis=0), b.mean(axis=0), seed=seed)
