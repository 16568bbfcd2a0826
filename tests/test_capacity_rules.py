"""What the report states about a knowledge run (moe_schema/capacity.py), by hand arithmetic: the
regime (epochs, tokens per parameter, exposures per fact, "facts exceed capacity" either side of 2
bits per parameter), the guess-corrected fraction known, bits stored per bucket and attribute, and
which exposure counts are the paper's (tests/test_capacity_book.py: the expectation and MoE factor)."""

from __future__ import annotations

import math

import pytest

from moe_schema.capacity import (accuracy_by_attribute, bits_stored, expectation, fact_bits, knowledge_bits,
                                 known_fraction, moe_factor, paper_exposures, regime)

META = {"kind": "knowledge", "entities": 10, "tokens": 1000, "tokenizer": "word",
        "value_counts": {"city": 16, "year": 4},  # 4 + 2 = 6 bits per entity, 60 in all
        "buckets": {"head": {"entities": 6, "exposures_per_fact": 50, "exposures_min": 40, "people": 6},
                    "tail": {"entities": 4, "exposures_per_fact": 5, "exposures_min": 2, "people": 4}}}


@pytest.mark.parametrize("accuracy,known", [(0.25, 0.0), (0.1, 0.0), (1.0, 1.0), (1.2, 1.0), (0.625, 0.5),
                                            (0.4, 0.2)])
def test_the_fraction_known_is_guess_corrected_and_kept_between_0_and_1(accuracy, known):
    """A model knowing q of the facts and guessing the rest among 4 scores q + (1 - q) / 4."""
    assert known_fraction(accuracy) == pytest.approx(known)


def test_the_corpus_holds_entities_times_the_bits_of_each_attribute():
    assert fact_bits(META) == pytest.approx(10 * (4 + 2))


def test_the_regime_counts_epochs_tokens_per_parameter_and_exposures_per_bucket():
    out = regime(META, tokens_trained=3000, params={"total": 30, "active": 10})
    assert out["epochs"] == 3.0 and out["corpus_tokens"] == 1000 and out["tokens_trained"] == 3000
    assert out["tokens_per_param"] == 100.0 and out["tokens_per_active_param"] == 300.0
    assert out["tokenizer"] == "word"
    # only the exposures_* figures, each times the epochs
    assert out["exposures_per_fact"] == {"head": {"exposures_per_fact": 150, "exposures_min": 120},
                                         "tail": {"exposures_per_fact": 15, "exposures_min": 6}}
    assert out["fact_bits"] == 60.0 and out["capacity_bits_at_2_per_param"] == 60.0
    assert out["facts_exceed_capacity"] is False  # 60 bits of facts, 2 x 30 parameters: exactly at capacity


def test_facts_exceed_capacity_one_parameter_below_it():
    assert regime(META, 1000, {"total": 29, "active": 29})["facts_exceed_capacity"] is True
    assert regime(META, 1000, {"total": 31, "active": 29})["facts_exceed_capacity"] is False


def test_a_corpus_that_is_not_knowledge_gets_the_token_figures_only():
    meta = {k: v for k, v in META.items() if k not in ("kind", "tokenizer")}
    out = regime(meta, 500, {"total": 5, "active": 5})
    assert out == {"tokens_trained": 500, "corpus_tokens": 1000, "epochs": 0.5, "tokens_per_param": 100.0,
                   "tokens_per_active_param": 100.0, "tokenizer": "byte"}


def test_bits_stored_per_bucket_from_one_accuracy_or_one_per_attribute():
    got = knowledge_bits(META, {"head": 1.0, "tail": {"city": 0.625, "year": 0.25}}, total_params=20)
    # head: 6 entities know all 6 bits = 36; tail: 4 entities know half the city's 4 bits = 8
    assert got["by_bucket"] == {"head": pytest.approx(36.0), "tail": pytest.approx(8.0)}
    assert got["bits"] == pytest.approx(44.0) and got["fact_bits"] == pytest.approx(60.0)
    assert got["bits_per_param"] == pytest.approx(44.0 / 20)
    assert knowledge_bits(META, {"head": 0.25})["bits_per_param"] is None  # no parameter count given
    assert knowledge_bits(META, {"head": 0.25}, total_params=0)["bits_per_param"] is None


def test_accuracy_per_attribute_joins_samples_to_their_rows_by_doc_id():
    rows = [{"attribute": "city"}, {"attribute": "year"}, {"attribute": "city"}]
    samples = [{"doc_id": 2, "acc": 1.0, "other": 0.0}, {"doc_id": 0, "acc": 0.0, "other": 1.0},
               {"doc_id": 1, "acc": 1.0, "other": 1.0}]
    assert accuracy_by_attribute(rows, samples) == {"city": 0.5, "year": 1.0}
    assert accuracy_by_attribute(rows, samples, metric="other") == {"city": 0.5, "year": 1.0}
    assert accuracy_by_attribute(rows, samples[:1], metric="other") == {"city": 0.0}


def _measured(**over):
    m = {"persons": 8, "loss_nats": {"a": 8 * math.log(2), "b": 0.0, "name": 8 * math.log(8)},
         "value_counts": {"a": 4, "b": 2}, "name_space": 1032, "tokenizer": "word"}
    return {**m, **over}


def test_bits_stored_subtracts_each_attributes_loss_in_bits_from_its_value_bits():
    got = bits_stored(_measured())
    # a: 8 x 2 bits - 8 ln 2 nats (8 bits) = 8; b: 8 x 1 bit - 0 = 8
    assert got["by_attribute"] == {"a": pytest.approx(8.0), "b": pytest.approx(8.0)}
    assert got["value_bits"] == pytest.approx(16.0) and got["fact_bits"] == pytest.approx(24.0)
    # name: 8 log2(1032 - 8) - 8 log2 8 = 8 x 10 - 24 = 56, exactly the ceiling 8 log2(1024 / 8)
    assert got["name_bits"] == pytest.approx(56.0) and got["bits"] == pytest.approx(72.0)
    assert got["max_bits"] == pytest.approx(24.0 + 56.0)
    assert got["persons"] == 8 and got["tokenizer"] == "word"
    assert "bits_per_param_total" not in got


def test_without_a_name_loss_or_name_space_the_name_term_is_left_out_of_bits_and_max_bits():
    for measured in (_measured(loss_nats={"a": 0.0, "b": 0.0}), _measured(name_space=None)):
        got = bits_stored(measured)
        assert got["name_bits"] is None
        assert got["bits"] == pytest.approx(got["value_bits"]) and got["max_bits"] == pytest.approx(24.0)
    assert bits_stored({k: v for k, v in _measured().items() if k != "tokenizer"})["tokenizer"] is None


def test_bits_per_parameter_with_and_without_embeddings_and_none_for_a_missing_count():
    got = bits_stored(_measured(), {"total": 36, "total_no_embed": 8})
    assert got["bits_per_param_total"] == pytest.approx(2.0) and got["value_bits_per_param_total"] == pytest.approx(16 / 36)
    assert got["bits_per_param_total_no_embed"] == pytest.approx(9.0)
    assert got["value_bits_per_param_total_no_embed"] == pytest.approx(2.0)
    got = bits_stored(_measured(), {"total": 36, "total_no_embed": 0})
    assert got["bits_per_param_total_no_embed"] is None and got["value_bits_per_param_total_no_embed"] is None
    got = bits_stored(_measured(), {"total": 36})
    assert got["bits_per_param_total_no_embed"] is None and got["bits_per_param_total"] == pytest.approx(2.0)


@pytest.mark.parametrize("exposures,paper", [
    (100, 100), (1000, 1000), (100 * 1.49, 100), (100 / 1.49, 100), (100 * 1.5, None), (100 / 1.501, None),
    (1000 * 1.49, 1000), (1000 / 1.49, 1000), (1000 / 1.501, None), (1000 * 1.5, None), (0, None), (-5, None),
    (None, None), (10, None), (5000, None),
])
def test_an_exposure_count_is_the_papers_within_a_factor_of_1_5_either_way(exposures, paper):
    assert paper_exposures(exposures) == paper


def test_an_ungated_mlp_at_1000_exposures_expects_the_law_and_r_max_caps_it():
    assert expectation(1000, r_max=1.0, gated=False) == {"exposures": 1000, "peak": 2.0, "r_max": 1.0,
                                                          "expected": 1.0, "bounded": True}
    assert expectation(1000 * 1.2, r_max=4.0)["exposures"] == 1000


def test_the_moe_factor_names_the_geometry_it_refuses():
    assert moe_factor(1000, 32, None, None, 16) == (
        None, "not the paper's geometry (32 experts; the paper: 32 experts as wide as the model, top-1)")
    assert moe_factor(1000, 32, 1, 0, 0)[0] is None  # no width known
    assert moe_factor(1000, 32, 1.0, 16, 16)[0] == 1.3
    assert moe_factor(120, 32, 1, 16, 16)[0] == 1.5
    assert moe_factor(1000, 31, 1, 16, 16) == (None, "31 experts: not the paper's geometry (32)")
    assert moe_factor(1000, 32, 2, 16, 16)[1] == (
        "not the paper's geometry (32 experts of width 16, hidden 16, top-2; the paper: 32 experts as wide as the "
        "model, top-1)")
    assert moe_factor(1000, 32, 1, 16, 16)[1] == "1.3x below the dense law at 1000 exposures (32 experts, width = " \
                                                "hidden, top-1)"
