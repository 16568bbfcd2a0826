"""The report's knowledge-capacity section (harness/report/capacity.py) on a constructed run: bits and
bits/param per build and exposure count, the MoE's factor against the dense build of equal total, and
the log-log figure."""

from __future__ import annotations

import math
from pathlib import Path

from harness.report import capacity as C
from harness.report.run import Run
from moe_schema import bios

N = 1000
COUNTS = bios.value_counts()
FACTS = N * bios.bits_per_person()


def _capacity(fraction_known: float) -> dict:
    """Summed losses of a model that knows ``fraction_known`` of the persons (0 loss) and is uniform
    over the values for the rest; names uniform."""
    loss = {a: (1 - fraction_known) * N * math.log(v) for a, v in COUNTS.items()}
    loss["name"] = N * math.log(bios.NAME_SPACE)
    return {"persons": N, "tokenizer": "word", "loss_nats": loss, "value_counts": COUNTS, "name_space": bios.NAME_SPACE}


def _record(variant, moe, total, no_embed, exposures, known):
    return {"kind": "train", "variant": variant, "status": "ok", "capacity": _capacity(known),
            "params": {"total": total, "active": total, "total_no_embed": no_embed, "active_no_embed": no_embed},
            "build": {"moe": moe}, "spec": {"variant": {"name": variant, "is_moe": moe}},
            "corpus": {"regime": {"exposures_per_fact": {"head": {"exposures_mean": exposures},
                                                         "tail": {"exposures_mean": exposures}}}}}


def _run(tmp_path: Path) -> Run:
    records = [_record("moe-s[t=1]", True, 20_000, 5_000, 100, 0.4), _record("dense-s[t=1]", False, 20_100, 5_100, 100, 0.5),
               _record("moe-s[t=2]", True, 20_000, 5_000, 1000, 0.6), _record("dense-s[t=2]", False, 20_100, 5_100, 1000, 0.9)]
    return Run(path=tmp_path, plan={}, suite={}, records=records, variant_order=[r["variant"] for r in records])


def test_capacity_table_gives_bits_per_param_with_and_without_embeddings(tmp_path):
    table = C.capacity_table(_run(tmp_path))
    rows = {r[0]: dict(zip(table.columns, r)) for r in table.rows}
    d = rows["dense-s[t=2]"]
    assert d["exposures / person"] == "1000" and d["tokenizer"] == "word"
    name_bits = N * math.log2((bios.NAME_SPACE - N) / bios.NAME_SPACE)  # uniform names: a hair below 0
    bits = 0.9 * FACTS + name_bits
    assert d["bits stored"] == f"{bits:,.0f}" and d["value bits"] == f"{0.9 * FACTS:,.0f}"
    assert d["most the bound gives"] == f"{FACTS + N * math.log2(bios.NAME_SPACE - N):,.0f}"
    assert float(d["bits / param"]) == float(f"{bits / 20_100:.3g}")
    assert float(d["bits / param (no emb.)"]) == float(f"{bits / 5_100:.3g}")
    assert d["paper (bits / param)"] == ">= 2 at 1000" and rows["moe-s[t=1]"]["paper (bits / param)"] == ">= 1 at 100"
    assert [r[0] for r in table.rows][:2] == ["moe-s[t=1]", "dense-s[t=1]"]  # by exposures, then size


def test_moe_factor_pairs_equal_totals_at_the_same_point(tmp_path):
    table = C.moe_factor_table(_run(tmp_path))
    assert [(r[0], r[1]) for r in table.rows] == [("moe-s[t=1]", "dense-s[t=1]"), ("moe-s[t=2]", "dense-s[t=2]")]
    name_bits = N * math.log2((bios.NAME_SPACE - N) / bios.NAME_SPACE)
    ratio = (0.9 * FACTS + name_bits) / (0.6 * FACTS + name_bits)
    assert float(table.rows[1][6]) == float(f"{ratio:.3g}")


def test_figure_and_section(tmp_path):
    run = _run(tmp_path)
    figures = C.bits_vs_params(run)
    assert len(figures) == 1 and len(figures[0].png_base64) > 1000
    from harness.report.sections import build_sections

    section = next(s for s in build_sections(run, with_figures=False) if s.id == "capacity")
    assert section.has_data and [t.title for t in section.tables][0].startswith("Knowledge capacity")


def test_no_capacity_scoring_says_so(tmp_path):
    run = Run(path=tmp_path, plan={}, suite={}, records=[{"kind": "train", "variant": "x", "status": "ok",
                                                          "params": {"total": 10}}], variant_order=["x"])
    assert C.capacity_table(run).rows == [] and C.bits_vs_params(run) == []
    assert "No train result carries a capacity scoring" in C.capacity_table(run).empty
