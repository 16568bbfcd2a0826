"""The bootstrap's contract, exactly: the percentile interval of documents resampled with numpy's
``default_rng(seed)``, the same draw for both sides (and every seed), whatever the chunking; the seed
and level a caller passes reach it; joins keep every shared document, of any doc_id type, and only
those; bad input is refused with its message. Widths on known-variance data are in
test_interval_widths.py; these pin what a report quoting an interval relies on: the same run gives the
same numbers, and a perplexity's interval is in perplexity units."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from harness.report import bootstrap
from harness.report.bootstrap import (N_BOOT, aggregate_of, join_on_doc_id, join_pairs_on_doc_id,
                                      paired_aggregate_bootstrap, paired_bootstrap, paired_diff, seeded_paired_diff)


def percentile_interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return float(lo), float(hi)


def reference_mean_interval(d: np.ndarray, seed: int, level: float, n_boot: int = N_BOOT):
    """The textbook paired percentile bootstrap, drawn in one piece."""
    idx = np.random.default_rng(seed).integers(0, d.size, size=(n_boot, d.size))
    return percentile_interval(d[idx].mean(axis=1), level)


def reference_aggregate_interval(a: np.ndarray, b: np.ndarray, aggregate, seed: int, level: float,
                                 n_boot: int = N_BOOT):
    """a, b: (seeds, n, 2). One index draw per resample, shared by both sides and every seed."""
    n = a.shape[1]
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    diffs = []
    for row in idx:
        sa, sb = a[:, row].sum(axis=1), b[:, row].sum(axis=1)
        diffs.append(np.mean(aggregate(sa[:, 0], sa[:, 1]) - aggregate(sb[:, 0], sb[:, 1])))
    return percentile_interval(np.array(diffs), level)


@pytest.fixture(params=[None, 500], ids=["one chunk", "many chunks"])
def chunk_cells(request, monkeypatch):
    """The resamples in one piece, or in chunks of a few resamples (what a big task gets)."""
    if request.param is not None:
        monkeypatch.setattr(bootstrap, "_CHUNK_CELLS", request.param)
    return request.param


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_mean_interval_is_the_percentile_interval_of_resampled_means(chunk_cells, level):
    rng = np.random.default_rng(11)
    a, b = rng.normal(0.1, 1.0, 60), rng.normal(0.0, 1.0, 60)
    d = paired_bootstrap(a, b, seed=4, level=level)
    assert (d.lo, d.hi) == pytest.approx(reference_mean_interval(a - b, 4, level), rel=1e-12)
    assert d.mean == pytest.approx((a - b).mean(), rel=1e-12) and d.n == 60 and d.level == level
    default = paired_bootstrap(a, b)  # the default seed is 0: a report made again quotes the same interval
    assert (default.lo, default.hi) == pytest.approx(reference_mean_interval(a - b, 0, 0.95), rel=1e-12)


@pytest.mark.parametrize("level", [0.95, 0.8])
def test_aggregate_interval_is_the_percentile_interval_of_recomputed_aggregates(chunk_cells, level):
    rng = np.random.default_rng(12)
    w = rng.integers(5, 40, (2, 30)).astype(float)
    a = np.stack([-w * rng.uniform(1.0, 2.0, w.shape), w], axis=-1)
    b = np.stack([-w * rng.uniform(1.0, 2.0, w.shape), w], axis=-1)
    b[:, :, 1] = a[:, :, 1]
    agg = aggregate_of("byte_perplexity")
    d = paired_aggregate_bootstrap(a, b, agg, seed=6, level=level)
    assert (d.lo, d.hi) == pytest.approx(reference_aggregate_interval(a, b, agg, 6, level), rel=1e-9)
    point = np.mean(agg(a[:, :, 0].sum(1), a[:, :, 1].sum(1)) - agg(b[:, :, 0].sum(1), b[:, :, 1].sum(1)))
    assert d.mean == pytest.approx(point) and d.n == 30 and d.level == level
    default = paired_aggregate_bootstrap(a, b, agg)
    assert (default.lo, default.hi) == pytest.approx(reference_aggregate_interval(a, b, agg, 0, 0.95), rel=1e-9)
    assert default.level == 0.95


def test_every_resample_counts():
    """Three resamples: each one moves the interval's ends, so none may be skipped or left unset."""
    rng = np.random.default_rng(15)
    a, b = rng.normal(0.1, 1.0, 40), rng.normal(0.0, 1.0, 40)
    d = paired_bootstrap(a, b, n_boot=3, seed=2)
    assert (d.lo, d.hi) == pytest.approx(reference_mean_interval(a - b, 2, 0.95, n_boot=3), rel=1e-12)
    pa = np.stack([-rng.uniform(1, 2, 40), np.ones(40)], axis=-1)[None]
    pb = np.stack([-rng.uniform(1, 2, 40), np.ones(40)], axis=-1)[None]
    agg = aggregate_of("bits_per_byte")
    d = paired_aggregate_bootstrap(pa, pb, agg, n_boot=3, seed=2)
    assert (d.lo, d.hi) == pytest.approx(reference_aggregate_interval(pa, pb, agg, 2, 0.95, n_boot=3), rel=1e-9)


def test_every_document_can_be_drawn():
    """Only document 0 differs: a resampling that never drew it would give a zero-width interval."""
    d = paired_bootstrap([1.0] + [0.0] * 9, [0.0] * 10, seed=0)
    assert d.lo == 0.0 and d.hi > 0.0 and d.mean == pytest.approx(0.1)
    pairs = lambda first: np.array([[first, 1.0]] + [[-1.0, 1.0]] * 9)  # noqa: E731
    agg = paired_aggregate_bootstrap(pairs(-3.0), pairs(-1.0), aggregate_of("bits_per_byte"), seed=0)
    assert agg.lo == 0.0 and agg.hi > 0.0


def test_the_seed_a_caller_passes_reaches_the_resampling():
    rng = np.random.default_rng(13)
    va, vb = rng.normal(0.0, 1.0, 80), rng.normal(0.0, 1.0, 80)
    docs = lambda vals: [{"doc_id": i, "score": float(x)} for i, x in enumerate(vals)]  # noqa: E731
    for seed in (0, 5):
        want = paired_bootstrap(va, vb, seed=seed)
        assert paired_diff(docs(va), docs(vb), "score", seed=seed) == want
        assert seeded_paired_diff([docs(va)], [docs(vb)], "score", seed=seed) == want
    assert paired_diff(docs(va), docs(vb), "score") == paired_bootstrap(va, vb, seed=0)
    assert seeded_paired_diff([docs(va)], [docs(vb)], "score") == paired_bootstrap(va, vb, seed=0)
    pair_docs = lambda vals: [{"doc_id": i, "bits_per_byte": [float(-x - 2), 2]} for i, x in enumerate(vals)]  # noqa: E731
    arrays = [np.array([[-x - 2, 2.0] for x in v]) for v in (va, vb)]
    for seed in (0, 5):
        want = paired_aggregate_bootstrap(*arrays, aggregate_of("bits_per_byte"), seed=seed)
        assert seeded_paired_diff([pair_docs(va)], [pair_docs(vb)], "bits_per_byte", seed=seed) == want
    assert seeded_paired_diff([pair_docs(va)], [pair_docs(vb)], "bits_per_byte") == \
        paired_aggregate_bootstrap(*arrays, aggregate_of("bits_per_byte"), seed=0)


def test_true_false_values_bootstrap_as_one_and_zero():
    """lm-eval logs ``acc`` as True/False in places; numpy cannot subtract two bool arrays."""
    d = paired_bootstrap([True, False, True, True], [False, False, True, False], seed=0)
    assert d.mean == pytest.approx(0.5)
    want = paired_bootstrap([1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0], seed=0)
    assert (d.lo, d.hi) == (want.lo, want.hi)


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5, -0.5])
def test_a_level_outside_zero_one_is_refused(level):
    with pytest.raises(ValueError, match=rf"^paired_bootstrap: level must be in \(0, 1\), got {level}$"):
        paired_bootstrap([1.0, 2.0], [0.0, 0.0], level=level)
    with pytest.raises(ValueError, match=rf"^paired_aggregate_bootstrap: level must be in \(0, 1\), got {level}$"):
        paired_aggregate_bootstrap(np.ones((2, 2)), np.ones((2, 2)), aggregate_of("bits_per_byte"), level=level)


def test_no_documents_and_bad_shapes_are_refused_with_their_message():
    with pytest.raises(ValueError, match=r"^paired_bootstrap: no shared documents to compare$"):
        paired_bootstrap([], [])
    with pytest.raises(ValueError, match=r"^paired_bootstrap: a and b must be 1-D and the same length, "
                                         r"got \(2, 1\) and \(2, 1\)$"):
        paired_bootstrap([[1.0], [2.0]], [[1.0], [2.0]])
    bpb = aggregate_of("bits_per_byte")
    with pytest.raises(ValueError, match=r"^paired_aggregate_bootstrap: no shared documents to compare$"):
        paired_aggregate_bootstrap(np.zeros((0, 2)), np.zeros((0, 2)), bpb)
    with pytest.raises(ValueError, match=r"^paired_aggregate_bootstrap: a and b must both be \(seeds, n, 2\), "
                                         r"got \(1, 4, 3\) and \(1, 4, 3\)$"):
        paired_aggregate_bootstrap(np.ones((4, 3)), np.ones((4, 3)), bpb)
    with pytest.raises(ValueError, match=r"got \(1, 4, 2\) and \(1, 5, 2\)$"):
        paired_aggregate_bootstrap(np.ones((4, 2)), np.ones((5, 2)), bpb)


def test_one_document_gives_its_own_difference():
    d = paired_aggregate_bootstrap(np.array([[-2.0, 1.0]]), np.array([[-1.0, 1.0]]), aggregate_of("bits_per_byte"))
    want = 1 / math.log(2)
    assert d.n == 1 and d.mean == pytest.approx(want) and (d.lo, d.hi) == pytest.approx((want, want))


@pytest.mark.parametrize("ll, w", [(-1000.0, 1.0), (-1.0, 0.0), (0.0, 0.0)],
                         ids=["exp overflows", "divide by zero", "zero over zero"])
def test_a_degenerate_corpus_metric_warns_nothing(ll, w):
    """A perplexity too large for a float, or a document of no weight, gives inf/nan, not numpy
    RuntimeWarnings in the middle of the report's output."""
    a = np.array([[ll, w], [ll, w]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = paired_aggregate_bootstrap(a, a.copy(), aggregate_of("word_perplexity"))
    assert d.n == 2


def test_doc_ids_of_mixed_types_join_in_one_order():
    """Ints before strings (by type name), each in its own order; never a TypeError."""
    sa = [{"doc_id": "b", "acc": 1.0}, {"doc_id": 2, "acc": 0.0}, {"doc_id": "a", "acc": 1.0}, {"doc_id": 1, "acc": 1.0}]
    sb = [{"doc_id": i, "acc": 0.5} for i in (1, 2, "a", "b")]
    a, b = join_on_doc_id(sa, sb, "acc")
    assert a.tolist() == [1.0, 0.0, 1.0, 1.0] and b.tolist() == [0.5] * 4
    d = paired_diff(sa, sb, "acc")
    assert d.n == 4 and d.mean == pytest.approx(0.25)
    pa = [{**s, "bits_per_byte": [-float(i + 1), 1]} for i, s in enumerate(sa)]
    pb = [{**s, "bits_per_byte": [-1.0, 1]} for s in sb]
    a2, b2 = join_pairs_on_doc_id(pa, pb, "bits_per_byte")
    assert a2.tolist() == [[-4.0, 1.0], [-2.0, 1.0], [-3.0, 1.0], [-1.0, 1.0]]
    assert paired_diff(pa, pb, "bits_per_byte").n == 4


def test_the_pair_join_keeps_shared_usable_documents_only():
    m = "bits_per_byte"
    sa = [{"doc_id": 0, m: [-3, 2]}, {"doc_id": 1, m: [-1, 1]}, {"doc_id": 2}, {"doc_id": 3, m: [True, 1]},
          {"doc_id": 4, m: [-1, 2, 3]}, {m: [-1, 1]}]
    sb = [{"doc_id": i, m: [-2, 2]} for i in (0, 2, 3, 4, 5)]
    a, b = join_pairs_on_doc_id(sa, sb, m)
    assert a.tolist() == [[-3.0, 2.0]] and b.tolist() == [[-2.0, 2.0]]
    assert a.dtype == np.float64 and b.dtype == np.float64  # int pairs in, float arrays out
    none_a, none_b = join_pairs_on_doc_id(sa, [], m)
    assert none_a.shape == (0, 2) and none_b.shape == (0, 2)


def test_values_that_are_neither_numbers_nor_pairs_give_no_interval():
    three = [{"doc_id": i, "bits_per_byte": [-1.0, 2.0, 3.0]} for i in range(3)]
    assert paired_diff(three, three, "bits_per_byte") is None
    bool_first = [{"doc_id": i, "bits_per_byte": [True, 2]} for i in range(3)]
    assert paired_diff(bool_first, bool_first, "bits_per_byte") is None
    # a mean-type metric whose values are pairs has no aggregate to recompute
    pairs = [{"doc_id": i, "f1": [1.0, 2.0]} for i in range(3)]
    assert paired_diff(pairs, pairs, "f1") is None
    # the first seed's documents lack the metric altogether
    assert seeded_paired_diff([[{"doc_id": 0}]], [[{"doc_id": 0, "acc": 1.0}]], "acc") is None
    assert seeded_paired_diff([[{"doc_id": 0}]], [[{"doc_id": 0, "word_perplexity": [-1.0, 1]}]],
                              "word_perplexity") is None


def test_lambada_style_perplexity_is_bootstrapped_in_perplexity_units():
    """lm-eval's ``perplexity`` metric logs each document's loglikelihood (a plain number) and reports
    exp(-mean); the interval is of that perplexity's difference, not of the mean loglikelihoods."""
    from lm_eval.api.metrics import perplexity

    rng = np.random.default_rng(14)
    ll_a, ll_b = -rng.uniform(0.5, 3.0, 200), -rng.uniform(0.7, 3.2, 200)
    docs = lambda ll: [{"doc_id": i, "perplexity": float(x), "acc": 1} for i, x in enumerate(ll)]  # noqa: E731
    d = paired_diff(docs(ll_a), docs(ll_b), "perplexity")
    assert d.mean == pytest.approx(perplexity(ll_a.tolist()) - perplexity(ll_b.tolist()))
    ones = np.ones(200)
    want = paired_aggregate_bootstrap(np.c_[ll_a, ones], np.c_[ll_b, ones], aggregate_of("perplexity"))
    assert d == want and d.lo < d.mean < d.hi
    a, _ = join_pairs_on_doc_id(docs(ll_a), docs(ll_b), "perplexity")
    assert a[:, 1].tolist() == [1.0] * 200 and a[:, 0].tolist() == ll_a.tolist()
