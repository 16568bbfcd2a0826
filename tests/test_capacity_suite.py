"""suites/capacity.yaml and the claims suite's capacity scale, checked by their own arithmetic: each
model's shape at each scale, the word vocabulary in every config build, dense twins at the MoE's
total, and the facts against the builds' capacity at 2 bits/param as the comments say."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from harness.suite import SuiteError, load, parse
from moe_schema import bios
from moe_schema.params import count

SUITES = Path(__file__).resolve().parent.parent / "suites"


def _params(suite):
    return {m.name: count(m.build["config"]) for m in suite.models}


@pytest.mark.parametrize("scale,hidden,persons", [("tiny", (8, 12, 16), 50), ("gpu", (48, 56, 64), 60_000)])
def test_capacity_suite_shapes(scale, hidden, persons):
    suite = load(SUITES / "capacity.yaml", scale=scale)
    assert suite.corpus["profile"] == "bios" and suite.corpus["tokenizer"] == "word"
    assert suite.corpus["entities"] == persons
    params = _params(suite)
    for m in suite.models:
        assert m.build["config"]["vocab_size"] == bios.word_vocab_size()  # the word vocabulary, everywhere
    points = sorted({n[n.index("["):] for n in params})
    assert len(points) == 2  # 100 and 1000 exposures
    for point in points:
        for size, h in zip("sml", hidden):
            moe, dense = params[f"moe-{size}{point}"], params[f"dense-{size}{point}"]
            assert next(m for m in suite.models if m.name == f"moe-{size}{point}").build["config"]["hidden_size"] == h
            assert abs(dense["total"] / moe["total"] - 1) < 0.01  # the MoE at the dense build's total
    facts = persons * bios.bits_per_person()
    largest = max(p["total"] for n, p in params.items() if n.startswith("dense"))
    if scale == "gpu":  # the paper's regime: the corpus's most above 1.5 x 2 bits/param for every build
        most = facts + persons * math.log2((bios.NAME_SPACE - persons) / persons)
        assert most > 3 * max(p["total"] for p in params.values())
        assert 1_000_000 < largest < 1_200_000
        for m in suite.models:  # tied, and the paper's MoE geometry: 32 experts as wide as the model, top-1
            c = m.build["config"]
            assert c["tie_word_embeddings"] is True
            if m.moe:
                assert (c["num_experts"], c["num_experts_per_tok"], c["intermediate_size"]) == (32, 1, c["hidden_size"])
    else:  # tiny says it sits below: facts below capacity with embeddings counted
        assert facts < 2 * min(p["total"] for p in params.values())


def test_claims_capacity_scale_puts_facts_between_the_twins_capacities():
    suite = load(SUITES / "claims.yaml", scale="capacity")
    params = _params(suite)
    facts = suite.corpus["entities"] * sum(math.log2(100) for _ in suite.corpus["attributes"])
    assert 2 * params["dense-active"]["total"] < facts < 2 * params["moe"]["total"]
    assert suite.corpus["zipf"] == 0.0 and suite.corpus["attributes"] == ["birth_year"]
    assert suite.train["tokens"] >= suite.corpus["tokens"]  # at least one epoch: ~100 exposures each


def test_scale_models_refuse_an_unknown_name_and_a_derived_model():
    data = yaml.safe_load((SUITES / "capacity.yaml").read_text())
    bad = {**data, "scales": {**data["scales"], "tiny": {**data["scales"]["tiny"], "models": {"moe-x": {"hidden_size": 8}}}}}
    with pytest.raises(SuiteError, match=r"scales.tiny.models.moe-x: unknown model 'moe-x'"):
        parse(bad, SUITES / "capacity.yaml")
    derived = {**data, "scales": {**data["scales"], "tiny": {**data["scales"]["tiny"], "models": {"dense-s": {"hidden_size": 8}}}}}
    with pytest.raises(SuiteError, match=r"scales.tiny.models.dense-s: only a model with a 'config'"):
        parse(derived, SUITES / "capacity.yaml")


def test_plan_prints_the_bits_arithmetic():
    lines = bios.plan_lines({"entities": 50_000, "tokenizer": "word"})
    assert "= 46.592" in lines[1] and "2,329,581 bits" in lines[2] and "160,000,000" in lines[0]


def test_bind_scale_runs_the_moe_and_its_two_twins_tied_at_a_fixed_step_count():
    """The bind scale: 3 builds (the MoE of the paper's shape, its equal-active and equal-total dense
    twins), tied embeddings counted once, 100 exposures per person in one fixed number of steps, and
    a corpus whose most (values + the name ceiling) binds the equal-active twin at the gated law."""
    suite = load(SUITES / "capacity.yaml", scale="bind")
    params = _params(suite)
    assert sorted(params) == ["dense-l", "dense-l-active", "moe-l"]
    moe = next(m for m in suite.models if m.name == "moe-l").build["config"]
    assert (moe["num_experts"], moe["num_experts_per_tok"], moe["intermediate_size"], moe["hidden_size"]) == (32, 1, 16, 16)
    for m in suite.models:
        assert m.build["config"]["tie_word_embeddings"] is True
    # tied: one 2,956 x 16 table = 47,296, counted once
    assert params["moe-l"]["total"] - params["moe-l"]["total_no_embed"] == 2956 * 16
    assert abs(params["dense-l-active"]["total"] / params["moe-l"]["active"] - 1) < 0.01
    assert abs(params["dense-l"]["total"] / params["moe-l"]["total"] - 1) < 0.01
    n = suite.corpus["entities"]
    per_person = suite.train["tokens"] / n / 57  # ~57 tokens a biography
    assert 95 < per_person < 105 and suite.train["tokens"] // (8 * 512) > 2000  # 100 exposures, > 2,000 steps
    most = n * bios.bits_per_person() + n * math.log2((bios.NAME_SPACE - n) / n)
    assert most / params["dense-l-active"]["total"] > 1.5 / 1.3  # binds the equal-active twin
    assert most / params["moe-l"]["total"] > 1.5 / 1.3  # and, just, the MoE and its equal-total twin


def test_scale_only_refuses_an_unknown_model():
    data = yaml.safe_load((SUITES / "capacity.yaml").read_text())
    bad = {**data, "scales": {**data["scales"], "bind": {**data["scales"]["bind"], "only": ["moe-l", "moe-x"]}}}
    with pytest.raises(SuiteError, match=r"scales.bind.only\[1\]: unknown model 'moe-x'"):
        parse(bad, SUITES / "capacity.yaml", scale="bind")
    one = {**data, "scales": {**data["scales"], "bind": {**data["scales"]["bind"], "only": "moe-l"}}}
    with pytest.raises(SuiteError, match=r"scales.bind.only: expected a list of model names"):
        parse(one, SUITES / "capacity.yaml", scale="bind")
