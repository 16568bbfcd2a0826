"""One place per fact: the per-family parameter arithmetic and the device peaks are each written
once (moe_schema.params, moe_schema.devices), and every reader agrees with transformers' models."""

from __future__ import annotations

import pytest

from moe_schema import devices, params

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 96, "intermediate_size": 48, "max_position_embeddings": 64}


@pytest.mark.parametrize("extra", [
    {"attention_bias": True},  # mixtral's attention has no bias whatever its config says
    {"attention_bias": False},
])
def test_mixtral_attention_bias_is_counted_alike_by_the_count_the_roofline_and_the_model(extra):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from workers.builds.params import count_params
    from moe_schema.roofline import ModelShape
    from workers.probes.shape import shape_of

    cfg = {"model_type": "mixtral", **TINY, "num_local_experts": 4, "num_experts_per_tok": 2, **extra}
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model("mixtral", **{k: v for k, v in cfg.items()
                                                                               if k != "model_type"}),
                                             dtype=torch.float32)
    real = count_params(model)
    assert {k: params.count(cfg)[k] for k in ("total", "active")} == {k: real[k] for k in ("total", "active")}
    assert ModelShape.from_config(cfg, bytes_per_param=4) == shape_of(model)
    assert ModelShape.from_config(cfg).total_params == real["total"]


def test_one_device_table_for_the_roofline_and_training_mfu():
    from moe_schema import roofline
    from workers.training import job

    assert roofline.table_peaks is devices.table_peaks and not hasattr(job, "PEAK_FLOPS")
    for name in ("NVIDIA H100 PCIe", "NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA A100-SXM4-80GB",
                 "NVIDIA L40S", "NVIDIA L4", "NVIDIA A10"):
        flops, why = job.peak_flops_of(name)
        assert why is None and flops == roofline.resolve_peaks(name, "bfloat16").tflops * 1e12, name
    assert job.peak_flops_of("NVIDIA H100 PCIe")[0] == 756e12  # training once said 989 (the SXM part's)
    assert devices.table_peaks("NVIDIA L40S").tflops == 362.0 and devices.table_peaks("NVIDIA L4").tflops == 121.0
    assert devices.table_peaks("NVIDIA A10").tflops == 125.0 and devices.table_peaks("Weird GPU") is None
    assert job.peak_flops_of("Weird GPU") == (None, "GPU 'Weird GPU' is not in the peak FLOP/s table")


def test_the_shared_arithmetic_is_torch_free():
    import subprocess
    import sys

    code = ("import sys, moe_schema.params, moe_schema.devices; "
            "bad = {'torch', 'transformers', 'lm_eval'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_content_hash_names_jobs_builds_corpora_and_trained_weights():
    import ast
    import hashlib
    import json
    from pathlib import Path

    from harness import plan
    from moe_schema.corpus import corpus_hash
    from moe_schema.hashing import content_hash, model_key
    from workers.builds.spec import build_hash
    from workers.host import cache_key

    build = {"config": {"model_type": "llama", "hidden_size": 32, "name": "é"}, "seed": 0}
    # the names cached results already carry: sha256 of sorted, compact, ASCII JSON
    old = hashlib.sha256(json.dumps(build, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert build_hash(build) == corpus_hash(build) == content_hash(build) == old[:16]
    variant = {"build": build, "dtype": "float32", "trust_remote_code": False, "experts_implementation": None,
               "routing": {"name": "topk", "params": {"k": 1}}}
    # the coordinator's affinity and the worker's model cache are one key, routing left out
    assert plan.build_id(variant) == cache_key(variant) == model_key({**variant, "routing": None})
    repo = Path(__file__).resolve().parent.parent
    users = sorted(str(p.relative_to(repo)) for package in ("harness", "moe_schema", "workers")
                   for p in (repo / package).rglob("*.py")
                   if any(isinstance(n, ast.Import) and any(a.name == "hashlib" for a in n.names)
                          for n in ast.walk(ast.parse(p.read_text()))))
    assert users == ["moe_schema/hashing.py"]  # files too: task folders and GGUF cache keys (entries_digest)


def test_parameter_accounting_finds_experts_where_routing_does():
    """count_params reads the MoE blocks from workers.moe_blocks, not from any 3-D parameter: a
    3-D weight outside an MoE block (a conv-like table, a stacked projection) is not an expert."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, OlmoeConfig, OlmoeForCausalLM

    from workers.builds.params import count_params
    from workers.moe_blocks import find_moe_blocks

    dense = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    dense.model.stacked = torch.nn.Module()
    dense.model.stacked.weight = torch.nn.Parameter(torch.zeros(3, 4, 5))
    counted = count_params(dense)
    assert counted["num_experts"] is None and counted["active"] == counted["total"]
    moe = OlmoeForCausalLM(OlmoeConfig(vocab_size=64, hidden_size=16, intermediate_size=8, num_hidden_layers=2,
                                       num_attention_heads=2, num_key_value_heads=1, num_experts=4,
                                       num_experts_per_tok=2))
    blocks = find_moe_blocks(moe)
    counted = count_params(moe)
    assert counted["num_experts"] == blocks[0].num_experts == 4 and counted["experts_per_token"] == 2.0
    routed = sum(p.numel() for b in blocks for p in b.experts.parameters())
    assert counted["total"] - counted["active"] == routed // 2


def test_one_merge_for_a_sharded_evaluation():
    """Metrics, routing telemetry and timings of shards merge in moe_schema.merge (the report once
    summed telemetry and run.py timings, each on its own)."""
    from harness.report import run as report_run
    from moe_schema.merge import merge_routing, merge_shards

    def shard(docs, per_expert, run_s):
        return {"samples": {"t": [{"doc_id": d, "acc": d % 2} for d in docs]}, "aggregations": {"t": {"acc": "mean"}},
                "routing": {"layers": [{"layer": 0, "tokens": sum(per_expert) // 2, "tokens_per_expert": per_expert}]},
                "timings": {"load_s": 1.0, "run_s": run_s, "model_cached": True}}

    merged = merge_shards([shard([0, 2], [3, 1], 2.0), shard([1, 3], [1, 3], 4.0)])
    assert merged["metrics"]["t"]["acc"] == 0.5
    assert merged["routing"]["layers"][0]["tokens_per_expert"] == [4, 4] and merged["routing"]["merged_from"] == 2
    assert merged["timings"] == {"load_s": 2.0, "run_s": 6.0, "model_cached": True}
    assert report_run.merge_routing is merge_routing
