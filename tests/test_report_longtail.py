"""The report on a seeded knowledge-corpus run (tests/data/longtail_fixture): per-bucket tables, seeds,
regime and knowledge stored, training; and the probe / routing / provenance pieces on run_fixture."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.report import write_report
from harness.report.run import Run

DATA = Path(__file__).resolve().parent / "data"
LONGTAIL = DATA / "longtail_fixture"
FIXTURE = DATA / "run_fixture"


@pytest.fixture(scope="module")
def longtail_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("report_longtail") / "fixture-longtail"
    shutil.copytree(LONGTAIL, run)
    write_report(run)
    return run


def _table(md: str, heading: str) -> list[list[str]]:
    part = md.split(f"{heading}\n", 1)[1].split("\n#", 1)[0]
    lines = [l for l in part.splitlines() if l.startswith("| ")]
    return [[c.strip() for c in l.strip("|").split(" | ")] for l in lines[1:]]


def test_buckets_seeds_and_pairs(longtail_run):
    md = (longtail_run / "report.md").read_text()
    variants = {r[0] for r in _table(md, "## Variants")}
    assert variants == {f"{m}#s{s}" for m in ("moe", "dense-active", "dense-total") for s in (1, 2)}
    assert "longtail_head" not in md.split("## Variants", 1)[1].split("\n|", 1)[0] + _table(md, "## Variants")[0][0]
    per_bucket = {(r[0], r[2]): r for r in _table(md, "### Accuracy per bucket")}
    assert set(per_bucket) == {(m, k) for m in ("moe", "dense-active", "dense-total") for k in ("acc", "acc_norm")}
    assert re.fullmatch(r"0\.\d{4} ± 0\.\d{4,5} \(2 seeds\)", per_bucket[("moe", "acc")][5])  # tail
    pairs = {(r[0], r[1], r[5]): r for r in _table(md, "### Pairs per bucket")}
    assert len(pairs) == 8  # 2 twins × (head, torso, tail, all)
    tail = pairs[("moe", "dense-active", "tail")]
    assert tail[10] == "60" and tail[11] == "2" and tail[-1] == "* MoE better"
    assert pairs[("moe", "dense-active", "head")][-1] == ""
    # the group row pools the bucket tasks' documents for its CI
    assert pairs[("moe", "dense-active", "all")][10] == "180"
    active = _table(md, "## Equal-active pairs")
    assert [(r[0], r[1], r[3]) for r in active] == [("moe", "dense-active", "longtail")]
    assert "|Δ| exceeds the seed spread" in md


def test_regime_knowledge_and_training(longtail_run):
    md = (longtail_run / "report.md").read_text()
    regime = {r[0]: r for r in _table(md, "### Training regime")}
    assert regime["moe#s1"][4] == "0.457" and regime["moe#s1"][6:9] == ["15.8", "2.64", "0.768"]
    assert regime["dense-active#s1"][-1] == "no"
    assert "the smallest build, dense-active#s1 (117k parameters)" in md and "do not exceed its capacity" in md
    knowledge = {r[0]: r for r in _table(md, "### Knowledge stored")}
    assert set(knowledge) == set(regime) and knowledge["moe#s1"][-1] == "bucket accuracy"
    from moe_schema.capacity import knowledge_bits

    run = Run.load(longtail_run)
    corpus = next(r["corpus"] for r in run.ok("train", "moe#s1"))
    acc = {b: run.metrics("moe#s1")[f"longtail_{b}"]["acc"] for b in ("head", "torso", "tail")}
    assert knowledge["moe#s1"][5] == f"{knowledge_bits(corpus, acc)['bits']:,.0f}"
    training = {r[0]: r for r in _table(md, "## Training")}
    assert training["moe#s1"][-1] == "- (see note)" and "MFU (all): no known peak FLOP/s" in md
    html = (longtail_run / "report.html").read_text()
    alts = re.findall(r'<img alt="([^"]*)"', html)
    assert "longtail: acc per long-tail bucket" in alts and "Training loss curves" in alts


def test_knowledge_per_attribute_when_the_corpus_tasks_are_readable(tmp_path):
    run_dir = tmp_path / "lt"
    shutil.copytree(LONGTAIL, run_dir)
    tasks = tmp_path / "corpus" / "tasks"
    tasks.mkdir(parents=True)
    attrs = ["birth_year", "city", "employer", "university", "field"]
    for b in ("head", "torso", "tail"):
        (tasks / f"longtail_{b}.yaml").write_text("task: x\n")
        (tasks / f"longtail_{b}.jsonl").write_text(
            "".join(json.dumps({"bucket": b, "attribute": attrs[d % 5], "label": 0}) + "\n" for d in range(60)))
    recs = [json.loads(l) for l in (run_dir / "results.jsonl").read_text().splitlines()]
    for r in recs:
        if r["kind"] == "train":
            r["corpus"]["tasks"] = {t: str(tasks / f"{t}.yaml") for t in r["corpus"]["tasks"]}
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    from harness.report.longtail import knowledge_table
    from moe_schema.capacity import accuracy_by_attribute, knowledge_bits

    run = Run.load(run_dir)
    table = knowledge_table(run)
    row = next(r for r in table.rows if r[0] == "dense-total#s2")
    assert row[-1] == "accuracy per attribute"
    rows = [json.loads(l) for l in (tasks / "longtail_head.jsonl").read_text().splitlines()]
    by_attr = accuracy_by_attribute(rows, run.samples("dense-total#s2")["longtail_head"])
    assert set(by_attr) == set(attrs)
    corpus = next(r["corpus"] for r in run.ok("train", "dense-total#s2"))
    assert row[2] == f"{knowledge_bits(corpus, {'head': by_attr})['by_bucket']['head']:.4g}"


def test_within_seed_spread_is_not_marked_real():
    """A CI that excludes zero is not enough when the models' seeds disagree by more than the gap."""
    from harness.report.pairdiff import compare_pair
    from harness.report.seeds import ModelPair, split_seed

    n = 200
    docs = lambda p: [{"doc_id": d, "acc": float(d % 100 < p)} for d in range(n)]  # noqa: E731
    values = {"m#s1": 60, "m#s2": 40, "d#s1": 45, "d#s2": 45}  # Δ = +5 points, MoE seeds differ by 20
    cell = lambda v: (values[v] / 100, docs(values[v]))  # noqa: E731
    pair = ModelPair("active", "m", "d", 1.0, [("m#s1", "d#s1"), ("m#s2", "d#s2")])
    row = compare_pair(pair, "t", "acc", cell)
    assert row.n_seeds == 2 and row.moe == pytest.approx(0.5) and row.dense == pytest.approx(0.45)
    assert row.diff.significant and row.spread == pytest.approx(0.1414, abs=1e-4) and not row.real
    single = compare_pair(ModelPair("active", "m", "d", 1.0, [("m#s1", "d#s1")]), "t", "acc", cell)
    assert single.spread is None and single.real
    assert split_seed("moe-a@topk(k=1)#s12") == ("moe-a@topk(k=1)", 12) and split_seed("x#s") == ("x#s", None)


def test_bucket_forms_tagged_samples_and_metrics(tmp_path):
    """facts carries acc_<bucket> metrics and bucket-tagged samples; with the metrics gone the tags still work."""
    from harness.report.buckets import bucket_cell, bucket_groups

    run = Run.load(FIXTURE)
    (group,) = bucket_groups(run)
    assert (group.name, group.form) == ("facts", "metrics")
    value, rows = bucket_cell(run, "dense-l", group, "tail", "acc")
    assert value == run.metrics("dense-l")["facts"]["acc_tail"] and len(rows) == 60
    run_dir = tmp_path / "r"
    shutil.copytree(FIXTURE, run_dir)
    recs = [json.loads(l) for l in (run_dir / "results.jsonl").read_text().splitlines()]
    for r in recs:
        for m in (r.get("metrics") or {}).values():
            for b in ("head", "torso", "tail"):
                m.pop(f"acc_{b}", None)
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    run2 = Run.load(run_dir)
    (group2,) = bucket_groups(run2)
    assert group2.form == "samples"
    assert bucket_cell(run2, "dense-l", group2, "tail", "acc")[0] == pytest.approx(value)


def test_routing_entropy_is_not_normalised_twice_and_shards_merge():
    from harness.report.tables import load_balance, routing_table

    run = Run.load(FIXTURE)
    routing, source = run.routing_with_source("moe-a@topk(k=2)")
    assert source == "evaluate" and routing.get("merged_from") == 2  # arith was merged from two shards
    raw = next(r for r in run.ok("evaluate", "moe-a@topk(k=2)") if "facts" in r["metrics"])["routing"]
    assert [sum(l["tokens_per_expert"]) for l in routing["layers"]] == \
        [2 * sum(c // 2 for c in l["tokens_per_expert"]) for l in raw["layers"]]
    bal = load_balance(raw)
    assert bal["entropy"] == pytest.approx(sum(l["entropy"] for l in raw["layers"]) / 2)
    assert 0.5 < bal["entropy"] <= 1.0
    row = next(r for r in routing_table(run).rows if r[0] == "moe-a@topp(p=0.6)")
    assert row[6] == "373k (measured)" and row[7] == "0"


def test_decode_twins_and_provenance_git_sha(tmp_path):
    from harness.report.probes import decode_twins_table, position
    from harness.report.provenance import REPO, git_sha

    assert position(2.0, 1.0, 3.0) == 0.5 and position(1.0, 2.0, 2.0) is None
    table = decode_twins_table(Run.load(FIXTURE))
    assert {r[0] for r in table.rows} == {"moe-a@topk(k=2)", "moe-a@topp(p=0.6)"}
    # the fixture's MoE roofline grows 0.5 ms per batch row against the dense 0.08: it crosses over at batch 4
    assert any("decode costs more like the equal-total twin from batch 4 by the roofline" in n for n in table.notes)
    assert git_sha(tmp_path) == "unknown"
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert git_sha().startswith(head.stdout.strip())
