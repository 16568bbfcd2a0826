"""The capacity bookkeeping (moe_schema.capacity), pinned by hand arithmetic: the name ceiling, the
tied-equivalent parameter count, what the paper predicts per build (peak by exposures and MLP kind,
the min with R_max, "bounded by the corpus" at exactly 1.5x and either side), and where the
paper's MoE factor applies."""

from __future__ import annotations

import math

import pytest

from moe_schema.capacity import (bits_stored, expectation, moe_factor, name_ceiling, paper_exposures,
                                 tied_equivalent)

N0 = 160_000_000


def test_name_ceiling_is_the_name_term_at_loss_n_ln_n():
    # N = 50: 50 log2((160,000,000 - 50) / 50) = 50 x 21.6096 = 1,080.48 bits
    assert name_ceiling(50, N0) == pytest.approx(50 * math.log2(159_999_950 / 50))
    assert name_ceiling(50, N0) == pytest.approx(1080.48, abs=0.01)
    # the old ceiling N log2(N0 - N) was N log2 N higher: 50 x 5.6439 = 282.2 bits
    assert 50 * math.log2(N0 - 50) - name_ceiling(50, N0) == pytest.approx(50 * math.log2(50))
    # a model uniform over the N names it saw (loss N ln N) measures exactly the ceiling
    n = 2000
    measured = bits_stored({"persons": n, "loss_nats": {"a": 0.0, "name": n * math.log(n)},
                            "value_counts": {"a": 4}, "name_space": N0})
    assert measured["name_bits"] == pytest.approx(name_ceiling(n, N0))
    assert measured["max_bits"] == pytest.approx(n * 2 + name_ceiling(n, N0))
    assert measured["bits"] == pytest.approx(measured["max_bits"])
    # and N log2(N0 / N) differs from it by N log2(N0 / (N0 - N)): 0.036 bits at N = 2,000
    assert n * math.log2(N0 / n) - name_ceiling(n, N0) == pytest.approx(0.0361, abs=1e-3)


def test_tied_equivalent_drops_one_table_from_an_untied_build():
    # tiny moe-s: hidden 8, vocab 2,956: 49,xxx untied less 2,956 x 8 = 23,648
    assert tied_equivalent(49_000, 2956, 8, tied=False) == 49_000 - 23_648 == 25_352
    assert tied_equivalent(99_664, 2956, 16, tied=True) == 99_664


@pytest.mark.parametrize("exposures,gated,peak", [(100, True, 1 / 1.3), (100, False, 1.0), (1000, True, 2.0),
                                                 (1000, False, 2.0), (110, True, 1 / 1.3), (900, True, 2.0)])
def test_expectation_peak_by_exposures_and_mlp(exposures, gated, peak):
    e = expectation(exposures, r_max=10.0, gated=gated)
    assert e["peak"] == pytest.approx(peak) and e["expected"] == pytest.approx(peak) and not e["bounded"]


def test_expectation_is_r_max_when_the_corpus_holds_less_than_the_peak():
    e = expectation(1000, r_max=1.2)
    assert e["expected"] == 1.2 and e["bounded"]


@pytest.mark.parametrize("r_max,bounded", [(3.0, False), (2.999, True), (3.001, False)])
def test_bounded_by_the_corpus_flips_at_one_and_a_half_times_the_peak(r_max, bounded):
    # at 1000 exposures the peak is 2: bounded below 3.0, not at 3.0 or above
    assert expectation(1000, r_max=r_max)["bounded"] is bounded


def test_bounded_at_100_exposures_gated():
    limit = 1.5 / 1.3  # 1.1538...
    assert expectation(100, r_max=limit * 1.001)["bounded"] is False
    assert expectation(100, r_max=limit * 0.999)["bounded"] is True


def test_no_expectation_away_from_100_and_1000_exposures():
    assert paper_exposures(300) is None and expectation(300, r_max=5.0) is None
    assert paper_exposures(None) is None and paper_exposures(149) == 100 and paper_exposures(151) is None


def test_moe_factor_only_for_the_papers_geometry():
    assert moe_factor(100, 32, 1, 16, 16) == (1.5, "1.5x below the dense law at 100 exposures "
                                                   "(32 experts, width = hidden, top-1)")
    assert moe_factor(1000, 32, 1, 16, 16)[0] == 1.3 and "at 1000 exposures" in moe_factor(1000, 32, 1, 16, 16)[1]
    assert moe_factor(1000, 16, 1, 16, 16) == (None, "16 experts: not the paper's geometry (32)")
    factor, words = moe_factor(1000, 8, 1, 8, 16)  # the tiny scale: 8 experts of width 8
    assert factor is None and words.startswith("not the paper's geometry (8 experts of width 8, hidden 16, top-1")
    assert moe_factor(1000, 32, 2, 16, 16)[0] is None  # top-2
    assert moe_factor(1000, 32, 1, 8, 16)[0] is None  # experts narrower than the model
    assert moe_factor(300, 32, 1, 16, 16) == (None, "no paper figure at this exposure count (100 or 1000)")


def test_tied_build_counts_one_embedding_table_by_hand():
    """The bind scale's MoE, counted by hand: olmoe, hidden 16, 2 layers, 2 heads of 8, 32 experts of
    width 16, top-1, vocabulary 2,956. Embedding 2,956 x 16 = 47,296, once when tied. Per layer:
    q, k, v, o 4 x 16 x 16 = 1,024, qk-norm (2 + 2) x 8 = 32, two norms 32, router 16 x 32 = 512: 1,600;
    two layers and the final norm: 3,216. Experts: 3 x 16 x 16 = 768 each, 32 x 2 layers = 49,152."""
    from moe_schema.params import count

    cfg = dict(model_type="olmoe", num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
               hidden_size=16, intermediate_size=16, num_experts=32, num_experts_per_tok=1, vocab_size=2956)
    tied = count({**cfg, "tie_word_embeddings": True})
    assert tied["total"] == 47_296 + 3_216 + 49_152 == 99_664
    assert tied["active"] == 47_296 + 3_216 + 2 * 768 == 52_048
    assert tied["total_no_embed"] == 99_664 - 47_296 and tied["active_no_embed"] == 52_048 - 47_296
    untied = count({**cfg, "tie_word_embeddings": False})
    assert untied["total"] == 99_664 + 47_296 and untied["total_no_embed"] == tied["total_no_embed"]
    assert tied_equivalent(untied["total"], 2956, 16, tied=False) == tied["total"]
