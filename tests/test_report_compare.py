"""`harness compare RUN_A RUN_B`: metric, pair and latency differences across two runs."""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from harness.report import compare

FIXTURE = Path(__file__).resolve().parent / "data" / "run_fixture"


def _changed_copy(dst: Path) -> Path:
    """dense-s answers every arith doc right, latencies double, and a new variant appears."""
    shutil.copytree(FIXTURE, dst)
    recs = [json.loads(l) for l in (dst / "results.jsonl").read_text().splitlines()]
    for r in recs:
        if r["variant"] == "dense-s" and r["kind"] == "evaluate" and "arith" in r["metrics"]:
            r["metrics"]["arith"]["acc"] = 1.0
            for s in r["samples"]["arith"]:
                s["acc"] = 1.0
        if r["kind"] == "probe" and r["status"] == "ok":
            for row in r["probe"]["rows"]:
                if "ms_p50" in row:
                    row["ms_p50"] *= 2
    extra = dict(next(r for r in recs if r["variant"] == "dense-l" and r["kind"] == "evaluate"))
    extra.update(key="new", variant="dense-xl")
    (dst / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs + [extra]))
    return dst


def test_compare_shows_differences_with_paired_ci(tmp_path, capsys):
    b = _changed_copy(tmp_path / "b")
    p = argparse.ArgumentParser()
    compare.add_arguments(p)
    assert compare.main(p.parse_args([str(FIXTURE), str(b), "--out", str(tmp_path / "cmp.md")])) == 0
    out = capsys.readouterr().out
    assert out == (tmp_path / "cmp.md").read_text() + "\n"
    # dense-s arith went 0.4667 -> 1.0: +0.5333, CI excludes zero
    assert re.search(r"\| dense-s \| arith \| acc \| 0\.4667 \| 1\.000 \| \+0\.5333 \| \[\+0\.\d+, \+0\.\d+\] \| \* \|", out)
    # unchanged rows: CI exactly zero, no mark
    assert "| dense-l | arith | acc | 0.6208 | 0.6208 | +0 | [+0, +0] |  |" in out
    # a variant only in B: A is '-'
    assert "| dense-xl | arith | acc | - | 0.6208 | - | - |  |" in out
    # the equal-active pair's advantage shrank by 0.5333
    assert re.search(r"\| active \| moe-a@topk\(k=2\) \| dense-s \| arith \| acc \| \+0\.1625 \| -0\.3708 \| -0\.5333 \|", out)
    assert re.search(r"\| dense-l \| latency/bs1/ctx64/decode \| \d+\.\d+ \| \d+\.\d+ \| 2\.00x \|", out)


def test_compare_names_a_missing_run(tmp_path, capsys):
    p = argparse.ArgumentParser()
    compare.add_arguments(p)
    assert compare.main(p.parse_args([str(FIXTURE), str(tmp_path / "missing")])) == 2
    assert "no such run folder" in capsys.readouterr().err
