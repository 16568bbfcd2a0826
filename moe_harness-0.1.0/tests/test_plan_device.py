"""`harness plan --device`: fit, memory and time estimates, checked by hand for one dense and one MoE
shape (OLMo-1B and OLMoE-1B-7B as config builds, bfloat16, on an H100 SXM: 3350 GB/s, 989 TFLOP/s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hollow import PUBLIC

REPO = Path(__file__).resolve().parent.parent
BW, FLOPS = 3350e9, 989e12
KV_PER_TOKEN = 16 * 2 * 16 * 128 * 2  # layers * (k, v) * kv heads * head_dim * bf16 bytes, both models
ATTN = 16 * 4 * 16 * 128  # layers * 4 * heads * head_dim: attention FLOPs per cached token


def plan(suite: dict, tmp_path: Path, *args: str) -> dict:
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "plan", str(path), "--json", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def h100(tmp_path_factory):
    suite = {"name": "plan", "dtype": "bfloat16",
             "models": [{"name": "olmo-1b", "config": PUBLIC["olmo-1b"]},
                        {"name": "olmoe-1b-7b", "config": PUBLIC["olmoe-1b-7b"]}],
             "tasks": [{"path": str(REPO / "suites" / "tasks" / "smoke_mc.yaml")}],
             "probes": [{"name": "latency", "batch_sizes": [1, 16], "prompt_lengths": [128],
                         "context_lengths": [512], "new_tokens": 16, "warmup": 0, "repeats": 1}]}
    doc = plan(suite, tmp_path_factory.mktemp("plan"), "--device", "h100", "--task-tokens", "smoke_mc=1000000")
    return doc, {v["variant"]: v for v in doc["variants"]}


def roofline_ms(weight_bytes: float, context: int, flops_per_token: float) -> float:
    """One decode step at batch 1: (weights read + KV read/written) / bandwidth vs FLOPs / peak."""
    moved = weight_bytes + KV_PER_TOKEN * (context + 1)
    flops = flops_per_token + ATTN * (context + 1)
    return max(moved / BW, flops / FLOPS) * 1e3


def test_dense_weights_kv_fit_and_decode_by_hand(h100):
    doc, v = h100
    dense = v["olmo-1b"]
    total = 1_176_764_416  # tied embeddings: 50304 * 2048 once
    assert dense["params"]["total"] == total
    assert dense["weight_bytes"] == 2 * total == 2_353_528_832
    assert dense["kv_bytes"] == KV_PER_TOKEN * 16 * (512 + 16) == 1_107_296_256  # batch 16, context + new tokens
    assert dense["fits"] is True and dense["to_fit"] is None
    # every weight is read once per step (the tied table is the LM head), no embedding rows apart
    want = roofline_ms(2 * total, 512, 2 * total)
    assert dense["decode_ms"]["b1@512"] == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx((2 * total + KV_PER_TOKEN * 513) / BW * 1e3)  # memory-bound


def test_moe_reads_only_the_experts_a_step_touches(h100):
    doc, v = h100
    moe = v["olmoe-1b-7b"]
    embed, expert = 50304 * 2048, 3 * 2048 * 1024
    routed = 16 * 64 * expert
    other = 6_919_161_856 - 2 * embed - routed  # attention, norms, routers, final norm
    assert other == 270_665_728
    assert moe["weight_bytes"] == 2 * 6_919_161_856
    assert moe["kv_bytes"] == KV_PER_TOKEN * 16 * 528
    # batch 1 touches top-k = 8 experts per layer; its one embedding row is read too (untied table)
    weights = 2 * (other + embed + 2048 + 16 * 8 * expert)
    flops = 2 * (other + 16 * 8 * expert) + 2 * embed
    assert moe["decode_ms"]["b1@512"] == pytest.approx(roofline_ms(weights, 512, flops), rel=1e-12)
    # batch 16: uniform routing touches 64 * (1 - (1 - 8/64)^16) experts per layer
    touched = 64 * (1 - (1 - 8 / 64) ** 16)
    weights16 = 2 * (other + embed + 16 * 2048 + 16 * touched * expert)
    moved = weights16 + KV_PER_TOKEN * 16 * 513
    flops16 = 16 * (2 * (other + 16 * 8 * expert) + 2 * embed + ATTN * 513)
    assert moe["decode_ms"]["b16@512"] == pytest.approx(max(moved / BW, flops16 / FLOPS) * 1e3, rel=1e-12)


def test_job_times_evaluation_at_the_stated_mfu_and_totals(h100):
    doc, v = h100
    jobs = {(j["kind"], j["variant"]): j for j in doc["jobs"]}
    active = v["olmoe-1b-7b"]["params"]["active"]
    assert active == 1_282_017_280
    assert jobs[("evaluate", "olmoe-1b-7b")]["seconds"] == pytest.approx(2 * active * 1e6 / (FLOPS * 0.4))
    assert jobs[("describe", "olmoe-1b-7b")]["seconds"] == 0.0
    probe = jobs[("probe", "olmo-1b")]["seconds"]
    assert probe > 2 * 16 * v["olmo-1b"]["decode_ms"]["b1@512"] / 1e3  # 2 passes of 16 steps at batch 1, and more
    assert doc["total_seconds"] == pytest.approx(sum(j["seconds"] for j in doc["jobs"]))
    assert doc["unestimated_jobs"] == 0 and doc["mfu"] == 0.4


def test_a_variant_that_does_not_fit_says_what_would(tmp_path):
    suite = {"name": "big", "dtype": "bfloat16",
             "models": [{"name": "mixtral", "config": PUBLIC["mixtral-8x7b"]},
                        {"name": "mixtral-fp32", "config": PUBLIC["mixtral-8x7b"], "dtype": "float32"}]}
    on_h100 = {v["variant"]: v for v in plan(suite, tmp_path, "--device", "h100")["variants"]}
    assert on_h100["mixtral"]["weight_bytes"] == 2 * 46_702_792_704
    assert not on_h100["mixtral"]["fits"] and on_h100["mixtral"]["to_fit"] == "needs 2 x h100"
    assert on_h100["mixtral-fp32"]["to_fit"] == "needs 3 x h100, or 2 in bfloat16"
    on_h200 = {v["variant"]: v for v in plan(suite, tmp_path, "--device", "h200")["variants"]}
    assert on_h200["mixtral"]["fits"] and on_h200["mixtral-fp32"]["to_fit"] == "fits in bfloat16"
    two = {v["variant"]: v for v in plan(suite, tmp_path, "--device", "h100", "--devices", "2")["variants"]}
    assert two["mixtral"]["fits"]


def test_training_time_uses_the_train_budget_at_the_stated_mfu(tmp_path):
    llama = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4}
    suite = {"name": "t", "corpus": {"kind": "knowledge", "entities": 200, "tokens": 100000},
             "train": {"tokens": 120000, "seq_len": 128}, "models": [{"name": "d", "config": llama}]}
    doc = plan(suite, tmp_path, "--peaks", "1000,100,80", "--mfu", "0.5")
    train = next(j for j in doc["jobs"] if j["kind"] == "train")
    (v,) = doc["variants"]
    active_no_embed = 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64  # attention, MLP, norms; final norm
    assert v["params"]["active_no_embed"] == active_no_embed
    per_token = 6 * active_no_embed + 12 * 2 * 4 * 16 * 128  # PaLM: + 12 * layers * heads * head_dim * seq_len
    assert train["seconds"] == pytest.approx(per_token * 120000 / (100e12 * 0.5))


def test_unknown_device_is_a_one_line_error(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"name": "s", "models": [{"name": "d", "config": PUBLIC["olmo-1b"]}]}))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "plan", str(path), "--device", "h1000"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("harness: --device: 'h1000': unknown device; known: a10, a100, a100-40gb, h100, "
                                   "h100-pcie, h200, l4, l40s (or give --peaks BANDWIDTH_GBS,TFLOPS,MEMORY_GB)")
