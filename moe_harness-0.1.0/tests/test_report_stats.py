"""Paired bootstrap of corpus-level metrics (perplexities, bits per byte) from [loglikelihood, weight]
pairs, against known cases and lm-eval's own aggregates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.report.bootstrap import aggregate_of, paired_aggregate_bootstrap, paired_diff, seeded_paired_diff

METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")


def _docs(ll, w):
    return [{"doc_id": i, **{m: [float(a), int(b)] for m in METRICS}} for i, (a, b) in enumerate(zip(ll, w))]


def test_constant_per_weight_loglikelihood_gives_an_exact_interval():
    """Every document at ln 2 nats per unit (A) and ln 4 (B): perplexity 2 vs 4, bits/byte 1 vs 2, whatever
    the resample; the interval has zero width."""
    w = np.random.default_rng(0).integers(5, 50, 30)
    a, b = _docs(-w * math.log(2), w), _docs(-w * math.log(4), w)
    for metric, want in (("word_perplexity", -2.0), ("byte_perplexity", -2.0), ("bits_per_byte", -1.0)):
        d = paired_diff(a, b, metric)
        assert d.n == 30 and d.mean == pytest.approx(want) and d.lo == pytest.approx(want) and d.hi == pytest.approx(want)


def test_point_estimate_matches_lm_eval_and_ci_is_ratio_of_sums():
    from lm_eval.api.metrics import bits_per_byte, weighted_perplexity

    rng = np.random.default_rng(1)
    w = rng.integers(10, 80, 50)
    ll_a, ll_b = -w * rng.uniform(1.0, 3.0, 50), -w * rng.uniform(1.2, 3.2, 50)
    a, b = _docs(ll_a, w), _docs(ll_b, w)
    pairs = lambda ll: list(zip(ll.tolist(), w.tolist()))  # noqa: E731
    d = paired_diff(a, b, "byte_perplexity")
    assert d.mean == pytest.approx(weighted_perplexity(pairs(ll_a)) - weighted_perplexity(pairs(ll_b)))
    assert d.lo < d.mean < d.hi
    bpb = paired_diff(a, b, "bits_per_byte")
    assert bpb.mean == pytest.approx(bits_per_byte(pairs(ll_a)) - bits_per_byte(pairs(ll_b)))
    # a ratio of sums, not the mean of per-document perplexities: one short hard document, one long easy one
    two = paired_diff(_docs([-3.0, -99.0], [1, 99]), _docs([-1.0, -99.0], [1, 99]), "word_perplexity")
    assert two.mean == pytest.approx(math.exp(1.02) - math.exp(1.0))
    # the resampling is the ordinary paired one: same documents drawn for both sides, same seed, same interval
    again = paired_aggregate_bootstrap(np.c_[ll_a, w], np.c_[ll_b, w], aggregate_of("byte_perplexity"))
    assert (again.lo, again.hi) == (d.lo, d.hi)


def test_seeds_average_the_per_seed_differences():
    rng = np.random.default_rng(2)
    w = rng.integers(10, 80, 40)
    seeds_a = [_docs(-w * rng.uniform(1.0, 2.0, 40), w) for _ in range(2)]
    seeds_b = [_docs(-w * rng.uniform(1.0, 2.0, 40), w) for _ in range(2)]
    d = seeded_paired_diff(seeds_a, seeds_b, "bits_per_byte")
    one = [paired_diff(sa, sb, "bits_per_byte").mean for sa, sb in zip(seeds_a, seeds_b)]
    assert d.mean == pytest.approx(sum(one) / 2)
    acc_a = [[{"doc_id": i, "acc": float(i % 2)} for i in range(10)], [{"doc_id": i, "acc": 1.0} for i in range(10)]]
    acc_b = [[{"doc_id": i, "acc": 0.0} for i in range(10)]] * 2
    assert seeded_paired_diff(acc_a, acc_b, "acc").mean == pytest.approx(0.75)


def test_unusable_inputs():
    assert aggregate_of("acc") is None and aggregate_of("perplexity,none") is not None
    assert paired_diff([{"doc_id": 0, "bits_per_byte": [-1.0, 2]}], [{"doc_id": 1, "bits_per_byte": [-1.0, 2]}],
                       "bits_per_byte") is None
    assert seeded_paired_diff([[{"doc_id": 0, "acc": 1.0}]], [], "acc") is None
    with pytest.raises(ValueError, match=r"must both be \(seeds, n, 2\)"):
        paired_aggregate_bootstrap(np.zeros((3, 2)), np.zeros((4, 2)), aggregate_of("bits_per_byte"))
