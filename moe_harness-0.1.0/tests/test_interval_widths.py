"""Interval widths on data of known variance, for every bootstrap the report uses.

A zero-width case (identical samples, constant shift) passes whatever the resampling does; these
pin the width itself. The data share a large per-document difficulty between the two sides, so a
bootstrap that lost its pairing (resampled the sides independently) would be several times too
wide, and one that resampled nothing would be zero wide.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.report.bootstrap import Diff, paired_bootstrap, paired_diff, seeded_paired_diff
from harness.report.pairdiff import compare_pair
from harness.report.seeds import ModelPair

Z95 = 1.959964
N = 3000


def normal_width(per_doc: np.ndarray, z: float = Z95) -> float:
    """Width of the normal-approximation interval of the mean of ``per_doc``."""
    return 2 * z * per_doc.std(ddof=1) / math.sqrt(per_doc.size)


def shared_difficulty(rng, n=N, scale=2.0):
    return rng.normal(0.0, scale, n)


def test_mean_metric_width_and_level():
    rng = np.random.default_rng(0)
    q = shared_difficulty(rng)
    a, b = q + rng.normal(0.03, 0.3, N), q + rng.normal(0.0, 0.3, N)
    d95, d90 = paired_bootstrap(a, b, seed=1), paired_bootstrap(a, b, seed=1, level=0.90)
    assert d95.hi - d95.lo == pytest.approx(normal_width(a - b), rel=0.08)
    assert d90.hi - d90.lo == pytest.approx(normal_width(a - b, z=1.644854), rel=0.08)
    assert d90.level == 0.90 and d90.lo > d95.lo and d90.hi < d95.hi
    centre = (d95.lo + d95.hi) / 2
    assert centre == pytest.approx((a - b).mean(), abs=0.15 * (d95.hi - d95.lo))


@pytest.mark.parametrize("metric", ["bits_per_byte", "word_perplexity", "byte_perplexity"])
def test_corpus_metric_width_one_seed(metric):
    """Equal weights make bits per byte a mean of per-document values; the perplexities follow by
    the delta method (small per-document noise keeps it accurate)."""
    rng = np.random.default_rng(1)
    w, n = 50, 1000
    q = rng.normal(1.5, 0.3, n)  # nats per byte, shared by both sides
    nats_a, nats_b = q + rng.normal(0.01, 0.05, n), q + rng.normal(0.0, 0.05, n)
    docs = lambda nats: [{"doc_id": i, metric: [float(-x * w), w]} for i, x in enumerate(nats)]  # noqa: E731
    d = paired_diff(docs(nats_a), docs(nats_b), metric)
    if metric == "bits_per_byte":
        per_doc = (nats_a - nats_b) / math.log(2)
        assert d.mean == pytest.approx(per_doc.mean())
    else:  # d exp(mean nats) = exp(mean nats) d(mean nats)
        per_doc = math.exp(nats_a.mean()) * nats_a - math.exp(nats_b.mean()) * nats_b
        assert d.mean == pytest.approx(math.exp(nats_a.mean()) - math.exp(nats_b.mean()))
    assert d.hi - d.lo == pytest.approx(normal_width(per_doc), rel=0.1)
    assert d.lo < d.mean < d.hi and d.n == n


def test_corpus_metric_width_over_seeds_uses_one_draw_for_every_seed_and_side():
    rng = np.random.default_rng(2)
    w, seeds, n = 40, 3, 1000
    q = rng.normal(1.5, 0.3, n)
    nats_a = [q + rng.normal(0.01, 0.05, n) for _ in range(seeds)]
    nats_b = [q + rng.normal(0.0, 0.05, n) for _ in range(seeds)]
    docs = lambda nats: [{"doc_id": i, "bits_per_byte": [float(-x * w), w]} for i, x in enumerate(nats)]  # noqa: E731
    d = seeded_paired_diff([docs(x) for x in nats_a], [docs(x) for x in nats_b], "bits_per_byte")
    per_doc = (np.mean(nats_a, axis=0) - np.mean(nats_b, axis=0)) / math.log(2)
    assert d.mean == pytest.approx(per_doc.mean())
    assert d.hi - d.lo == pytest.approx(normal_width(per_doc), rel=0.1)


def test_mean_metric_width_over_seeds():
    rng = np.random.default_rng(3)
    q = shared_difficulty(rng)
    seeds_a = [q + rng.normal(0.02, 0.3, N) for _ in range(2)]
    seeds_b = [q + rng.normal(0.0, 0.3, N) for _ in range(2)]
    docs = lambda v: [{"doc_id": i, "score": float(x)} for i, x in enumerate(v)]  # noqa: E731
    d = seeded_paired_diff([docs(x) for x in seeds_a], [docs(x) for x in seeds_b], "score")
    per_doc = np.mean(seeds_a, axis=0) - np.mean(seeds_b, axis=0)
    assert d.mean == pytest.approx(per_doc.mean())
    assert d.hi - d.lo == pytest.approx(normal_width(per_doc), rel=0.08)


def test_seeds_are_matched_by_position_and_only_shared_documents_count():
    a = [[{"doc_id": i, "acc": 1.0} for i in range(5)], [{"doc_id": i, "acc": 0.0} for i in range(1, 6)]]
    b = [[{"doc_id": i, "acc": 0.0} for i in range(6)], [{"doc_id": i, "acc": 0.0} for i in range(6)]]
    d = seeded_paired_diff(a, b, "acc")
    assert d.n == 4 and d.mean == pytest.approx(0.5)  # docs 1..4, mean over seeds of (1, 0)
    assert seeded_paired_diff(a, b[:1], "acc") is None  # seed counts differ: nothing to pair


def cells(values: dict):
    """``cell(variant)`` over {variant: (value, samples)}."""
    return lambda v: values[v]


def test_a_significant_gap_inside_the_seed_spread_is_not_real():
    rng = np.random.default_rng(4)
    q = shared_difficulty(rng, n=400, scale=0.1)
    samples = {}
    values = {"moe#s0": 0.60, "moe#s1": 0.40, "dense#s0": 0.50, "dense#s1": 0.49}  # sd(moe) = 0.14
    for v in values:
        shift = 0.01 if v.startswith("moe") else 0.0
        samples[v] = [{"doc_id": i, "acc": float(x)} for i, x in enumerate(q + shift + rng.normal(0, 0.01, 400))]
    pair = ModelPair("active", "moe", "dense", 1.0, seeds=[("moe#s0", "dense#s0"), ("moe#s1", "dense#s1")])
    row = compare_pair(pair, "t", "acc", cells({v: (values[v], samples[v]) for v in values}))
    assert isinstance(row.diff, Diff) and row.diff.significant
    assert row.n_seeds == 2 and row.moe == pytest.approx(0.5) and row.dense == pytest.approx(0.495)
    assert row.spread == pytest.approx(math.sqrt(0.02)) and not row.real
    one_seed = ModelPair("active", "moe", "dense", 1.0, seeds=[("moe#s0", "dense#s0")])
    row = compare_pair(one_seed, "t", "acc", cells({v: (values[v], samples[v]) for v in values}))
    assert row.spread is None and row.real  # one seed: the interval alone decides


def test_pair_rows_say_why_there_is_no_interval():
    pair = ModelPair("total", "m", "d", 1.0, seeds=[("m", "d")])
    row = compare_pair(pair, "t", "acc", cells({"m": (0.5, []), "d": (0.4, [])}))
    assert row.diff == "no per-document samples" and not row.real
    row = compare_pair(pair, "t", "f1", cells({"m": (0.5, [{"doc_id": 0, "f1": "x"}]),
                                               "d": (0.4, [{"doc_id": 0, "f1": "y"}])}))
    assert row.diff == "corpus-level metric: no per-document value"
    row = compare_pair(pair, "t", "acc", cells({"m": (0.5, [{"doc_id": 0, "acc": 1}]),
                                                "d": (0.4, [{"doc_id": 1, "acc": 0}])}))
    assert row.diff == "no shared documents"
    assert compare_pair(pair, "t", "acc", cells({"m": (None, []), "d": (0.4, [])})) is None
