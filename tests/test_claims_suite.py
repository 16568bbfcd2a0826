"""Issue 19 end to end: `harness run suites/claims.yaml --scale ci` through real local daemons
trains an MoE and both derived twins (two seeds, two token budgets), evaluates held-out loss and
exact knowledge on every trained build, and the trained MoE again under other routers.

The ci scale is far too small to learn anything; it checks that every piece the answers need
reaches results.jsonl and plan.json (the report's verdicts are tested in their own unit tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.heavy]  # tox -e heavy: a whole suite trained end to end

MODELS = ("moe", "dense-active", "dense-total")
POINTS = (4096, 8192)
SEEDS = (1, 2)
ROUTERS = ("topk(k=1)", "random", "prune(fraction=0.25)")


@pytest.fixture(scope="module")
def claims_run(tmp_path_factory, _isolated_home) -> Path:
    out = tmp_path_factory.mktemp("claims") / "run"
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(REPO / "suites" / "claims.yaml"),
                           "--scale", "ci", "--out", str(out)], capture_output=True, text=True, timeout=600,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def _name(model: str, tokens: int, seed: int, router: str | None = None) -> str:
    return f"{model}[train.tokens={tokens}]" + (f"@{router}" if router else "") + f"#s{seed}"


def test_every_build_trains_at_every_point_and_seed_with_a_heldout_curve(claims_run):
    trains = {r["variant"]: r for r in _records(claims_run) if r["kind"] == "train"}
    assert set(trains) == {_name(m, t, s) for m in MODELS for t in POINTS for s in SEEDS}
    for name, r in trains.items():
        assert r["status"] == "ok", (name, r["error"])
        t = r["train"]
        assert t["tokens"] == r["spec"]["variant"]["sweep"]["train.tokens"]
        curve = t["heldout_curve"]
        tokens = [p["tokens"] for p in curve]
        assert tokens == sorted(set(tokens)) and tokens[-1] == t["tokens"] and len(tokens) >= 3
        gaps = np.diff(np.log(tokens))
        assert gaps.max() < 3 * gaps.min() + 1e-9  # log-spaced
        assert all(set(p["loss"]) == {"seen", "unseen"} for p in curve)
        corpus = r["corpus"]
        for key in ("tokens_per_param", "exposures_per_fact", "fact_bits", "capacity_bits"):
            assert corpus[key] is not None, key
    # the twins were derived from the same point's MoE, and trained on the same data and schedule
    for tokens in POINTS:
        for seed in SEEDS:
            runs = [trains[_name(m, tokens, seed)] for m in MODELS]
            same = {json.dumps({k: v for k, v in r["spec"].items() if k != "variant"}, sort_keys=True)
                    for r in runs}
            assert len(same) == 1
            moe, active, total = (r["params"] for r in runs)
            assert abs(active["total"] / moe["active"] - 1) < 0.05
            assert abs(total["total"] / moe["total"] - 1) < 0.05


def test_every_variant_answers_heldout_and_knowledge_per_document(claims_run):
    recs = _records(claims_run)
    evals = {(r["variant"], r["task"]): r for r in recs if r["kind"] == "evaluate"}
    variants = ({_name(m, t, s) for m in MODELS for t in POINTS for s in SEEDS}
                | {_name("moe", t, s, x) for t in POINTS for s in SEEDS for x in ROUTERS})
    assert {v for v, _ in evals} == variants
    for v in variants:
        heldout, values = evals[(v, "longtail_heldout")], evals[(v, "longtail_values")]
        assert heldout["status"] == values["status"] == "ok", v
        for kind in ("seen", "unseen"):
            task = f"longtail_heldout_{kind}"
            assert 0 < heldout["metrics"][task]["bits_per_byte"] < 10
            assert len(heldout["samples"][task]) == 6  # per-document values for the paired bootstrap
        for bucket in ("head", "torso", "tail"):
            task = f"longtail_values_{bucket}"
            m = values["metrics"][task]
            assert 0 <= m["acc"] <= 1 and m["bits"] >= 0
            assert all("bits" in s and "acc" in s for s in values["samples"][task])
            regime = values["task_regime"][task]
            assert regime["value_counts"] == {"city": 36, "field": 16} and regime["fact_bits"] > 0


def test_other_routers_run_on_the_trained_moe_checkpoint(claims_run):
    recs = [r for r in _records(claims_run) if r["kind"] == "evaluate" and r["task"] == "longtail_values"]
    by = {r["variant"]: r for r in recs}
    for tokens in POINTS:
        for seed in SEEDS:
            native = by[_name("moe", tokens, seed)]["spec"]["variant"]
            assert "trained" in native["build"]
            for router in ROUTERS:
                v = by[_name("moe", tokens, seed, router)]
                assert v["spec"]["variant"]["build"] == native["build"], router  # the same trained weights
                assert v["spec"]["variant"]["routing"]["name"] == router.split("(")[0]
                assert v["routing"] is not None  # the strategy's telemetry: it was applied


def test_pairs_form_within_one_point_and_seed(claims_run):
    plan = json.loads((claims_run / "plan.json").read_text())
    assert plan["sweep"]["points"] == [{"train.tokens": t} for t in POINTS]
    pairs = {(p["kind"], p["moe"], p["dense"]) for p in plan["pairs"]}
    for tokens in POINTS:
        for seed in SEEDS:
            assert ("active", _name("moe", tokens, seed), _name("dense-active", tokens, seed)) in pairs
            assert ("total", _name("moe", tokens, seed), _name("dense-total", tokens, seed)) in pairs
    for _, moe, dense in pairs:
        assert moe[moe.index("["):moe.index("]")] == dense[dense.index("["):dense.index("]")]
        assert moe.rsplit("#", 1)[1] == dense.rsplit("#", 1)[1]
    assert (claims_run / "report.md").is_file()
