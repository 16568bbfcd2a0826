"""The report's knowledge-capacity section (harness/report/capacity.py; its builder and figure in
harness/report/sections/capacity.py) on a constructed run: per build R = bits / P (P: one embedding
table), R_max and the paper's expectation side by side with "bounded by the corpus" where R_max < 1.5x
the law's peak, the MoE against the best dense R with the paper's factor only for the paper's
geometry, its equal-total twin apart, and the log-log figure."""

from __future__ import annotations

import math
from pathlib import Path

from harness.derive import derive_twin
from harness.report import capacity as C
from harness.report.run import Run
from harness.report.sections import build_sections
from harness.report.sections.capacity import bits_vs_params
from moe_schema import bios
from moe_schema.params import count

N = 1000
COUNTS = bios.value_counts()
FACTS = N * bios.bits_per_person()
MOST = FACTS + N * math.log2((bios.NAME_SPACE - N) / N)  # values + the name ceiling
MOE = dict(model_type="olmoe", num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2, hidden_size=16,
           intermediate_size=16, num_experts=32, num_experts_per_tok=1, vocab_size=2956, tie_word_embeddings=True)
CONFIGS = {"moe": MOE, "dense-a": derive_twin(MOE, "active"), "dense-t": derive_twin(MOE, "total"),
           "moe8": {**MOE, "num_experts": 8, "intermediate_size": 8, "tie_word_embeddings": False}}


def _capacity(fraction_known: float) -> dict:
    """Summed losses of a model that knows ``fraction_known`` of the persons (0 loss) and is uniform
    over the values for the rest; names uniform over the N persons (the name ceiling)."""
    loss = {a: (1 - fraction_known) * N * math.log(v) for a, v in COUNTS.items()}
    loss["name"] = N * math.log(N)
    return {"persons": N, "tokenizer": "word", "loss_nats": loss, "value_counts": COUNTS, "name_space": bios.NAME_SPACE}


def _record(name, point, exposures, known):
    cfg = CONFIGS[name]
    p, moe = count(cfg), cfg["model_type"] == "olmoe"
    variant = f"{name}[t={point}]"
    return {"kind": "train", "variant": variant, "status": "ok", "capacity": _capacity(known), "params": p,
            "build": {"moe": moe}, "spec": {"kind": "train", "variant": {"name": variant, "is_moe": moe,
                                                                        "build": {"config": cfg}}},
            "corpus": {"regime": {"exposures_per_fact": {"head": {"exposures_mean": exposures},
                                                         "tail": {"exposures_mean": exposures}}}}}


def _run(tmp_path: Path) -> Run:
    records = [_record("moe", 1, 100, 0.4), _record("dense-a", 1, 100, 0.3), _record("dense-t", 1, 100, 0.5),
               _record("moe", 2, 1000, 0.6), _record("dense-t", 2, 1000, 0.9), _record("moe8", 2, 1000, 0.5)]
    plan = {"variants": [{"name": r["variant"], "build": {"trained": "0" * 16}} for r in records]}  # as a run's plan
    return Run(path=tmp_path, plan=plan, suite={}, records=records, variant_order=[r["variant"] for r in records])


def _rows(table):
    return {r[0]: dict(zip(table.columns, r)) for r in table.rows}


def test_capacity_table_gives_r_r_max_and_the_papers_expectation_side_by_side(tmp_path):
    rows = _rows(C.capacity_table(_run(tmp_path)))
    d = rows["dense-t[t=2]"]
    p = count(CONFIGS["dense-t"])["total"]  # tied: P is the total (99,648)
    bits = 0.9 * FACTS + N * math.log2((bios.NAME_SPACE - N) / N)
    assert d["exposures / person"] == "1000" and d["tokenizer"] == "word"
    assert d["bits stored"] == f"{bits:,.0f}" and d["value bits"] == f"{0.9 * FACTS:,.0f}"
    assert d["most the bound gives"] == f"{MOST:,.0f}" == "63,879"  # 46,592 + 1,000 x log2(159,999) = 46,592 + 17,288
    assert float(d["R = bits / P"]) == float(f"{bits / p:.3g}")
    assert float(d["R_max"]) == float(f"{MOST / p:.3g}") == 0.641
    # 1000 exposures: peak 2; R_max 0.641 < 3: the corpus bounds it, and the expectation is R_max
    assert d["paper expects"] == "0.641 = min(R_max, 2: 1000 exposures)" and d["reading"] == "bounded by the corpus"
    # 100 exposures, gated: peak 1/1.3 = 0.769; the equal-active twin (P 52,032) has R_max 1.227 >= 1.154
    a = rows["dense-a[t=1]"]
    assert a["R_max"] == "1.23" and a["paper expects"] == "0.769 = min(R_max, 0.769: gated MLP, 100 exposures)"
    assert a["reading"] == "capacity" and rows["dense-t[t=1]"]["reading"] == "bounded by the corpus"
    assert [r[0] for r in C.capacity_table(_run(tmp_path)).rows][:3] == ["dense-a[t=1]", "dense-t[t=1]", "moe[t=1]"]


def test_an_untied_build_is_counted_with_one_embedding_table(tmp_path):
    rows = _rows(C.capacity_table(_run(tmp_path)))
    untied = count(CONFIGS["moe8"])["total"]
    assert rows["moe8[t=2]"]["P (one embedding table)"] == f"{(untied - 2956 * 16) / 1000:.3g}k (tied-equivalent)"
    assert rows["moe8[t=2]"]["params as built"].endswith("(untied)")
    assert rows["moe[t=2]"]["P (one embedding table)"] == "99.7k" and rows["moe[t=2]"]["params as built"] == "99.7k (tied)"


def test_moe_factor_only_for_the_papers_geometry_against_the_best_dense(tmp_path):
    rows = _rows(C.moe_factor_table(_run(tmp_path)))
    m1, m2, m8 = rows["moe[t=1]"], rows["moe[t=2]"], rows["moe8[t=2]"]
    assert m1["paper"] == "1.5x below the dense law at 100 exposures (32 experts, width = hidden, top-1)"
    assert m2["paper"].startswith("1.3x below the dense law at 1000 exposures")
    assert m8["paper"].startswith("not the paper's geometry (8 experts of width 8, hidden 16, top-1")
    # at 100 exposures the best dense R is the equal-active twin's (fewer parameters), not the equal-total one
    assert m1["best dense R (build)"].startswith(f"{C._f((0.3 * FACTS + MOST - FACTS) / count(CONFIGS['dense-a'])['total'])} "
                                                 f"(dense-a[t=1]")
    assert m1["equal-total twin"] == "dense-t[t=1]"
    name = MOST - FACTS
    assert float(m1["vs its equal-total twin (dense / MoE bits)"]) == float(f"{(0.5 * FACTS + name) / (0.4 * FACTS + name):.3g}")
    assert "bounded by the corpus" in m2["best dense R (build)"]  # dense-t at 1000: R_max 0.64 < 3


def test_figure_and_section(tmp_path):
    run = _run(tmp_path)
    figures = bits_vs_params(run)
    assert len(figures) == 1 and len(figures[0].png_base64) > 1000

    section = next(s for s in build_sections(run, with_figures=False) if s.id == "capacity")
    assert section.has_data and [t.title for t in section.tables][0].startswith("Knowledge capacity")


def test_no_capacity_scoring_says_so(tmp_path):
    run = Run(path=tmp_path, plan={}, suite={}, records=[{"kind": "train", "variant": "x", "status": "ok",
                                                          "params": {"total": 10}}], variant_order=["x"])
    assert C.capacity_table(run).rows == [] and bits_vs_params(run) == []
    assert "No train result carries a capacity scoring" in C.capacity_table(run).empty
