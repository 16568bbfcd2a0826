"""Paired bootstrap: known answers (identical, constant shift, normal approximation) and the doc_id join."""

from __future__ import annotations

import numpy as np
import pytest

from harness.report.bootstrap import join_on_doc_id, paired_bootstrap, paired_diff


def test_identical_samples_give_exactly_zero_interval():
    a = np.random.default_rng(0).integers(0, 2, 500).astype(float)
    d = paired_bootstrap(a, a.copy(), seed=3)
    assert (d.mean, d.lo, d.hi) == (0.0, 0.0, 0.0)
    assert not d.significant and d.n == 500


def test_constant_shift_puts_the_whole_interval_at_the_shift():
    b = np.random.default_rng(1).random(300)
    d = paired_bootstrap(b + 0.25, b, seed=0)
    assert d.mean == pytest.approx(0.25, abs=1e-12)
    assert d.lo == pytest.approx(0.25, abs=1e-12) and d.hi == pytest.approx(0.25, abs=1e-12)
    assert d.significant


def test_interval_width_matches_the_normal_approximation_of_a_paired_difference():
    rng = np.random.default_rng(42)
    n = 4000
    quality = rng.normal(0, 1, n)  # shared document difficulty: pairing must cancel it
    a = quality + rng.normal(0.05, 0.5, n)
    b = quality + rng.normal(0.0, 0.5, n)
    d = paired_bootstrap(a, b, seed=7)
    diff = a - b
    se = diff.std(ddof=1) / np.sqrt(n)
    assert d.hi - d.lo == pytest.approx(2 * 1.959964 * se, rel=0.08)
    assert d.mean == pytest.approx(diff.mean())
    assert d.lo < diff.mean() < d.hi
    # the unpaired SE is far larger: the interval must not be that wide
    unpaired = np.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
    assert d.hi - d.lo < 0.5 * 2 * 1.96 * unpaired


def test_seeded_and_deterministic_and_seed_matters():
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 2, 200).astype(float), rng.integers(0, 2, 200).astype(float)
    assert paired_bootstrap(a, b, seed=1) == paired_bootstrap(a, b, seed=1)
    assert paired_bootstrap(a, b, seed=1) != paired_bootstrap(a, b, seed=2)


def test_join_on_doc_id_aligns_shuffled_and_partial_samples():
    sa = [{"doc_id": i, "acc": float(i % 2)} for i in range(10)]
    sb = [{"doc_id": i, "acc": 1.0} for i in reversed(range(3, 12))]  # docs 3..11, reversed
    sb.append({"doc_id": 1, "acc": "n/a"})  # not a number: left out
    a, b = join_on_doc_id(sa, sb, "acc")
    assert a.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0]  # docs 3..9
    assert b.tolist() == [1.0] * 7
    assert paired_diff(sa, [{"doc_id": 99, "acc": 1.0}], "acc") is None


@pytest.mark.parametrize("a,b,msg", [([1.0, 2.0], [1.0], "same length"), ([], [], "no shared documents")])
def test_bad_input_is_named(a, b, msg):
    with pytest.raises(ValueError, match=msg):
        paired_bootstrap(a, b)
