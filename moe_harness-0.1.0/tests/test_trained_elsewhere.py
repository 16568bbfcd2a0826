"""Three workers that share no filesystem (each its own MOE_HARNESS_HOME): a train suite with two
train jobs still runs whole, because the jobs that use a trained checkpoint go to the worker that
trained it; the third worker, which holds neither checkpoint, gets none of them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.local import start_local_workers

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

SUITE = """
name: apart
seed: 3
dtype: float32
corpus: {kind: knowledge, entities: 40, tokens: 20000, eval_per_bucket: 4, seed: 0}
train: {tokens: 3072, batch_size: 8, seq_len: 64, lr: 0.003, warmup_steps: 1, checkpoint_every: 100}
models:
  - name: moe
    config: {model_type: olmoe, hidden_size: 32, intermediate_size: 32, num_hidden_layers: 1,
             num_attention_heads: 4, num_key_value_heads: 4, num_experts: 4, num_experts_per_tok: 2,
             max_position_embeddings: 128}
  - name: dense
    derive: {from: moe, match: active}
tasks:
  - {corpus: longtail, num_fewshot: 0}
"""


def test_jobs_on_a_trained_checkpoint_follow_it_to_its_worker(tmp_path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    homes = [tmp_path / "host-a", tmp_path / "host-b", tmp_path / "host-c"]
    with start_local_workers(1, env={"MOE_HARNESS_HOME": str(homes[0])}) as a, \
            start_local_workers(1, env={"MOE_HARNESS_HOME": str(homes[1])}) as b, \
            start_local_workers(1, env={"MOE_HARNESS_HOME": str(homes[2])}) as c:
        endpoints = [*a.endpoints, *b.endpoints, *c.endpoints]
        env = {**os.environ, "MOE_HARNESS_HOME": str(tmp_path / "coordinator")}
        proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(tmp_path / "run"),
                               "--workers", ",".join(endpoints), "--no-report"], capture_output=True, text=True,
                              timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    recs = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert recs and all(r["status"] == "ok" for r in recs), [r.get("error") for r in recs]
    trained_on = {r["variant"]: r["worker"] for r in recs if r["kind"] == "train"}
    assert set(trained_on) == {"moe", "dense"}
    assert len(set(trained_on.values())) == 2  # the two train jobs on two workers
    for r in recs:
        if r["kind"] != "train":
            assert r["worker"] == trained_on[r["variant"]], (r["kind"], r["variant"])
    # each checkpoint exists only in the home of the worker that trained it
    kept = {home.name: [p.name for p in (home / "trained").iterdir() if not p.name.startswith(".")]
            if (home / "trained").is_dir() else [] for home in homes}
    assert sorted(len(v) for v in kept.values()) == [0, 1, 1], kept
