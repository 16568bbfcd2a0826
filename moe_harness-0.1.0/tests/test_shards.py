"""One evaluation split over two workers holding the same variant, merged exactly as unsplit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _suite(tmp: Path, shards: int) -> Path:
    data = {
        "name": f"shards{shards}",
        "models": [{"name": "dense", "config": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                                                "num_hidden_layers": 2, "num_attention_heads": 4,
                                                "num_key_value_heads": 4, "max_position_embeddings": 512}}],
        "tasks": [{"path": str(REPO / "suites" / "tasks" / "smoke_mc.yaml"), "limit": 40, "shards": shards}],
    }
    path = tmp / f"shards{shards}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run(suite: Path, out: Path, workers: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(out),
                           "--workers", workers, "--no-cache", "--no-report"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_workers():
    """Two idle daemons of this test's own (the shared pool may still be busy with other tests' jobs)."""
    from harness.local import start_local_workers

    with start_local_workers(2) as workers:
        yield ",".join(workers.endpoints)


def test_two_shards_on_two_workers_merge_to_the_unsplit_result(two_workers, tmp_path):
    workers = two_workers
    whole = [r for r in _run(_suite(tmp_path, 1), tmp_path / "whole", workers) if r["kind"] == "evaluate"]
    split = [r for r in _run(_suite(tmp_path, 2), tmp_path / "split", workers) if r["kind"] == "evaluate"]
    assert len(whole) == 1 and len(split) == 1  # the shards are listed once, merged
    merged, unsplit = split[0], whole[0]
    assert merged["merged_from"] == 2
    assert len(set(merged["worker"])) == 2, "both workers should have taken a shard"
    assert merged["metrics"]["smoke_mc"]["acc"] == pytest.approx(unsplit["metrics"]["smoke_mc"]["acc"], abs=1e-12)
    ids = [s["doc_id"] for s in merged["samples"]["smoke_mc"]]
    assert ids == [s["doc_id"] for s in unsplit["samples"]["smoke_mc"]] and len(ids) == 40
    shard_files = [json.loads(p.read_text()) for p in (tmp_path / "split" / "jobs").glob("*.json")]
    assert sorted(r["shard"]["index"] for r in shard_files if r.get("shard")) == [0, 1]
    # the merged result's worker time is that of both shards
    shard_run_s = sum(r["timings"]["run_s"] for r in shard_files if r.get("shard"))
    assert merged["timings"]["run_s"] == pytest.approx(shard_run_s)
