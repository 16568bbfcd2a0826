"""Cost per answer against hand arithmetic: device prices (defaults, suite `prices:`, `--price`), seconds and
USD per correct answer per MC task and variant, USD per 1M tokens per throughput row, and `harness plan`'s
estimated cost from the same table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.report.costs import answer_costs, cost_per_answer_table, prices_table
from harness.report.probes import throughput_table
from harness.report.run import Run
from moe_schema import devices
from moe_schema.check import SchemaError

REPO = Path(__file__).resolve().parent.parent
H100 = "NVIDIA H100 80GB HBM3"


def _run(prices=None, suite_prices=None) -> Run:
    env = {"device": "cuda", "device_name": H100}
    docs = lambda n, right: [{"doc_id": i, "acc": 1.0 if i < right else 0.0} for i in range(n)]  # noqa: E731
    recs = [
        # one job, two MC tasks: 120 s shared by documents, 10 and 30
        {"key": "e1", "kind": "evaluate", "variant": "moe", "status": "ok", "env": env, "eval_s": 120.0,
         "metrics": {"mc": {"acc": 0.4}, "mc2": {"acc": 0.5}}, "samples": {"mc": docs(10, 4), "mc2": docs(30, 15)}},
        # a CPU job timed by timings.run_s (no eval_s); no correct answer at all
        {"key": "e2", "kind": "evaluate", "variant": "dense", "status": "ok", "timings": {"run_s": 50.0},
         "env": {"device": "cpu", "device_name": "AMD EPYC"}, "metrics": {"mc": {"acc": 0.0}}, "samples": {"mc": docs(5, 0)}},
        # not multiple choice: no acc, no row
        {"key": "e3", "kind": "evaluate", "variant": "dense", "status": "ok", "eval_s": 9.0, "env": env,
         "metrics": {"ppl": {"word_perplexity": 3e12}}, "samples": {"ppl": [{"doc_id": 0}]}},
        {"key": "p1", "kind": "probe", "variant": "moe", "status": "ok", "env": env,
         "probe": {"name": "throughput", "device": {"name": H100},
                   "rows": [{"phase": "decode", "batch_size": 8, "context": 64, "tokens_per_s": 500.0}]}},
    ]
    suite = {"prices": suite_prices} if suite_prices else {}
    run = Run(Path("."), {"variants": [{"name": "moe"}, {"name": "dense"}]}, suite, recs, ["moe", "dense"])
    run.price_overrides = prices or {}
    return run


def test_seconds_and_usd_per_correct_answer_by_hand():
    costs = {(c.variant, c.task): c for c in answer_costs(_run())}
    mc, mc2 = costs[("moe", "mc")], costs[("moe", "mc2")]
    assert (mc.docs, mc.correct, mc.seconds) == (10, 4.0, 30.0)      # 120 s × 10/40 documents
    assert (mc2.docs, mc2.correct, mc2.seconds) == (30, 15.0, 90.0)  # 120 s × 30/40
    assert mc.seconds_per_correct == 7.5 and mc2.seconds_per_correct == 6.0
    assert mc.key == "h100" and mc.usd_per_hour == 3.0
    assert mc.usd_per_correct == pytest.approx(7.5 * 3.0 / 3600)     # $0.00625
    dense = costs[("dense", "mc")]
    assert dense.key == "cpu" and dense.seconds == 50.0 and dense.seconds_per_correct is None
    assert ("dense", "ppl") not in costs
    table = cost_per_answer_table(_run())
    row = next(r for r in table.rows if r[:2] == ["moe", "mc"])
    assert row[5:] == ["30.00", "7.500", f"{H100} (h100)", "3.000", "$0.006250", "$6.250"]
    assert next(r for r in table.rows if r[0] == "dense")[6] == "no correct answer"


def test_prices_from_the_suite_then_the_command_line():
    assert answer_costs(_run(suite_prices={"h100": 2.0}))[0].usd_per_correct == pytest.approx(7.5 * 2.0 / 3600)
    run = _run(prices={"h100": 2.5}, suite_prices={"h100": 2.0})
    assert answer_costs(run)[0].usd_per_correct == pytest.approx(7.5 * 2.5 / 3600)
    assert ["h100", "2.500", "command line (--price)"] in prices_table(run).rows
    assert ["cpu", "0.1000", "default (moe_schema/devices.py)"] in prices_table(run).rows


def test_usd_per_million_tokens_beside_every_throughput_row():
    assert devices.usd_per_million_tokens(500.0, 3.0) == pytest.approx(3.0 / 3600 / 500 * 1e6)  # $1.667
    table = throughput_table(_run(prices={"h100": 2.5}))
    col = table.columns.index("cost per 1M tokens (USD)")
    assert [r[col] for r in table.rows] == ["$1.389"]                 # 2.5 / 3600 / 500 × 10^6
    assert any("h100 $2.500/h" in n for n in table.notes)


def test_bad_prices_are_one_line_errors_naming_the_place():
    with pytest.raises(SchemaError, match=r"^prices\.h10: unknown device 'h10' \(did you mean 'h100'\?\)"):
        devices.check_prices("prices", {"h10": 1.0})
    with pytest.raises(SchemaError, match=r"^--price h100: expected a price in USD per hour > 0, got -1\.0"):
        devices.parse_price_args(["h100=-1"])
    with pytest.raises(SchemaError, match=r"^--price: expected DEVICE=USD_PER_HOUR"):
        devices.parse_price_args(["h100"])
    assert devices.parse_price_args(["H100=2.5", "cpu=0.2"]) == {"h100": 2.5, "cpu": 0.2}
    assert devices.price_key(H100) == "h100" and devices.price_key("NVIDIA H100 PCIe") == "h100-pcie"
    assert devices.price_key("AMD EPYC", "cpu") == "cpu" and devices.price_key("Mystery TPU") is None


def test_plan_prints_the_same_estimated_cost(tmp_path):
    suite = {"name": "p", "prices": {"h200": 4.0},
             "models": [{"name": "d", "config": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                                                 "num_hidden_layers": 2, "num_attention_heads": 4}}],
             "tasks": [{"path": str(REPO / "suites" / "tasks" / "smoke_mc.yaml")}]}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(suite))
    run = lambda *a: subprocess.run([sys.executable, "-m", "harness.cli", "plan", str(path), *a], cwd=REPO,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    import json

    for args, price, source in ((("--device", "h100"), 3.0, "default"), (("--device", "h200"), 4.0, "suite prices:"),
                                (("--device", "h200", "--price", "h200=5", "--devices", "2"), 5.0, "--price")):
        doc = json.loads(run(*args, "--json").stdout)
        p = doc["price"]
        assert (p["usd_per_hour"], p["from"]) == (price, source)
        assert p["total_usd"] == pytest.approx(doc["total_seconds"] * price / 3600 * doc["device"]["devices"])
    text = run("--device", "h100").stdout
    assert "estimated cost: $" in text and "at $3/hour x 1 device(s) (h100, default price" in text
    bad = run("--device", "h100", "--price", "h10=1")
    assert bad.returncode == 2 and bad.stderr.strip().startswith("harness: --price h10: unknown device 'h10'")


def test_the_suite_checks_its_prices_key(tmp_path):
    from harness.suite import load

    base = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text())
    base["tasks"] = []
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**base, "prices": {"h100": 2.5, "cpu": 0.2}}))
    assert load(path).prices == {"h100": 2.5, "cpu": 0.2}
    path.write_text(yaml.safe_dump({**base, "prices": {"h100": "cheap"}}))
    with pytest.raises(SchemaError, match=r"^prices\.h100: expected a price in USD per hour > 0, got 'cheap'"):
        load(path)
