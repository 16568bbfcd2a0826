"""The roofline's arithmetic against numbers worked out by hand, and against real transformers models."""

import subprocess
import sys

import pytest

from moe_schema import roofline
from moe_schema.roofline import ModelShape, decode_cost, expected_experts_touched, prefill_cost

OLMOE_1B_7B = {
    "model_type": "olmoe", "hidden_size": 2048, "num_hidden_layers": 16, "num_experts": 64,
    "num_experts_per_tok": 8, "intermediate_size": 1024, "vocab_size": 50304, "num_attention_heads": 16,
    "num_key_value_heads": 16, "tie_word_embeddings": False,
}


def test_olmoe_1b_7b_by_hand():
    # Per layer, hidden h = 2048, 16 heads of 128:
    #   attention q, k, v, o: 4 * 2048 * 2048                    = 16,777,216
    #   q_norm (2048) + k_norm (2048) + 2 layer norms (2 * 2048) =      8,192
    #   router 2048 * 64                                         =    131,072
    #   non-expert per layer                                     = 16,916,480; x 16 = 270,663,680
    #   one expert: gate, up, down 3 * 2048 * 1024               =  6,291,456
    # Embedding and LM head, untied: 50304 * 2048 = 103,022,592 each; final norm 2048.
    # Total = 2 * 103,022,592 + 270,663,680 + 2,048 + 16 * 64 * 6,291,456 = 6,919,161,856 (OLMoE's "6.9B").
    shape = ModelShape.from_config(OLMOE_1B_7B, bytes_per_param=2)
    assert shape.total_params == 6_919_161_856
    assert shape.other_params == 270_663_680 + 2_048
    assert shape.expert_params == 6_291_456
    # Decode at batch 1 reads: the non-expert weights (270,665,728) + the LM head (103,022,592)
    # + one embedding row (2,048; the table itself is not read) + 16 layers * 8 experts * 6,291,456
    # (805,306,368) = 1,178,996,736 params; x 2 bytes (bf16) = 2,357,993,472 bytes, about 2.36 GB.
    cost = decode_cost(shape, batch=1, context=0)
    assert cost["experts_touched"] == pytest.approx(8.0)  # E(1-(1-k/E)^1) = k
    assert cost["weight_bytes"] == 2_357_993_472
    # KV cache aside: one token at context 0 writes 16 layers * 2 * 2048 * 2 bytes = 131,072 bytes.
    assert cost["kv_bytes"] == 131_072
    # On an H100 SXM (3.35 TB/s) that is 2.358e9 / 3.35e12 = 0.7039 ms, memory bound.
    roof = roofline.roofline_ms(cost, roofline.table_peaks("NVIDIA H100 80GB HBM3", "bfloat16"))
    assert roof["bound"] == "memory"
    assert roof["roofline_ms"] == pytest.approx(2_358_124_544 / 3.35e12 * 1e3)


def test_olmoe_decode_grows_to_dense_equal_total():
    shape = ModelShape.from_config(OLMOE_1B_7B)
    # At batch 64 under uniform routing a layer touches 64 * (1 - (56/64)^64) = 63.98 experts:
    # nearly all of them, so the step reads nearly every weight, like the dense-equal-total model.
    assert expected_experts_touched(64, 8, 64) == pytest.approx(64 * (1 - (56 / 64) ** 64))
    assert expected_experts_touched(64, 8, 64) > 63.9
    all_weights = (shape.total_params - shape.embed_params) * 2
    b64 = decode_cost(shape, 64, 0)["weight_bytes"]
    assert 0.99 * all_weights < b64 <= all_weights + 64 * 2048 * 2
    # batch 1 reads about a sixth of what batch 64 does: 2.36 GB of 13.63 GB
    assert decode_cost(shape, 1, 0)["weight_bytes"] / b64 == pytest.approx(2_357_993_472 / b64)
    assert 0.17 < 2_357_993_472 / b64 < 0.18
    # a measured count replaces the expectation
    assert decode_cost(shape, 64, 0, experts_touched=32)["weight_bytes"] < b64


def test_prefill_flops_by_hand():
    shape = ModelShape.from_config(OLMOE_1B_7B)
    # 2 FLOPs per weight per token over the weights a token passes (non-expert 270,665,728 +
    # 16 * 8 * 6,291,456 = 1,075,972,096), for 128 tokens; the LM head (103,022,592) on the last
    # token only; attention 4 * 16 heads * 128 * (1 + ... + 128 = 8256) per layer, 16 layers.
    flops = prefill_cost(shape, batch=1, length=128)["flops"]
    expected = 2 * 1_075_972_096 * 128 + 2 * 103_022_592 + 16 * 4 * 16 * 128 * 8256
    assert flops == pytest.approx(expected)
    # On an H100 (989 TFLOP/s bf16) that prefill is compute bound.
    roof = roofline.roofline_ms(prefill_cost(shape, 8, 512), roofline.table_peaks("H100 SXM"))
    assert roof["bound"] == "compute"


def test_dense_config_and_expected_touched_edges():
    dense = ModelShape.from_config({"model_type": "llama", "hidden_size": 2048, "num_hidden_layers": 16,
                                    "intermediate_size": 8192, "vocab_size": 50304,
                                    "num_attention_heads": 16, "tie_word_embeddings": True})
    # per layer 4 * 2048^2 + 3 * 2048 * 8192 + 2 * 2048 = 67,112,960; x 16 + final norm 2048
    assert dense.other_params == 16 * 67_112_960 + 2048
    assert dense.total_params == 50304 * 2048 + dense.other_params  # tied: the table counts once
    assert not dense.moe and decode_cost(dense, 4, 10)["experts_touched"] is None
    # tied: the LM head reads the whole table, no separate embedding rows
    assert decode_cost(dense, 1, 0)["weight_bytes"] == (dense.other_params + 50304 * 2048) * 2
    assert expected_experts_touched(64, 8, 0) == 0
    assert expected_experts_touched(8, 8, 1) == 8


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="missing key 'num_experts'"):
        ModelShape.from_config({k: v for k, v in OLMOE_1B_7B.items() if k != "num_experts"})
    with pytest.raises(ValueError, match="model_type 'gpt2' not supported"):
        ModelShape.from_config({"model_type": "gpt2"})


def test_device_peaks_table_override_and_unknown():
    h200 = roofline.resolve_peaks("NVIDIA H200", "bfloat16")
    assert (h200.bandwidth_gbs, h200.tflops, h200.source) == (4800.0, 989.0, "table")
    assert roofline.resolve_peaks("NVIDIA A100-SXM4-80GB", "bfloat16").tflops == 312.0
    assert roofline.resolve_peaks("NVIDIA H100 PCIe", "bfloat16").bandwidth_gbs == 2000.0
    assert roofline.resolve_peaks("NVIDIA H100 80GB HBM3", "float32").tflops == 67.0
    partly = roofline.resolve_peaks("NVIDIA H100 80GB HBM3", "bfloat16", {"bandwidth_gbs": 3000})
    assert (partly.bandwidth_gbs, partly.tflops, partly.source) == (3000.0, 989.0, "suite")
    full = roofline.resolve_peaks("Weird GPU", "bfloat16", {"bandwidth_gbs": 100, "tflops": 1})
    assert full.source == "suite"
    with pytest.raises(ValueError, match="no peak table entry for device 'Weird GPU'.*device_peaks"):
        roofline.resolve_peaks("Weird GPU", "bfloat16")
    cpu = roofline.resolve_peaks("cpu", "float32")
    assert cpu.source == "measured" and cpu.bandwidth_gbs > 0.1 and cpu.tflops > 1e-4
    assert roofline.measure_cpu_peaks("float32") is cpu  # measured once per process


def test_roofline_module_is_torch_free():
    code = ("import sys, moe_schema.roofline, moe_schema.probes; "
            "bad = [m for m in ('torch', 'transformers', 'lm_eval') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the analytic counts against the families' own transformers classes ------------------------

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 96, "intermediate_size": 48, "max_position_embeddings": 64}
FAMILY_CONFIGS = {
    "llama": {"mlp_bias": True, "attention_bias": True},
    "olmo": {},
    "qwen3": {"head_dim": 16, "tie_word_embeddings": True},
    "olmoe": {"num_experts": 6, "num_experts_per_tok": 2},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                  "shared_expert_intermediate_size": 24, "mlp_only_layers": [0]},
    "qwen3_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16,
                  "decoder_sparse_step": 2},
}


@pytest.mark.parametrize("model_type", sorted(FAMILY_CONFIGS))
def test_from_config_matches_the_real_model(model_type):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from workers.probes.shape import shape_of

    cfg = {"model_type": model_type, **TINY, **FAMILY_CONFIGS[model_type]}
    kwargs = {k: v for k, v in cfg.items() if k != "model_type"}
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(model_type, **kwargs), dtype=torch.float32)
    counted = shape_of(model)
    worked = ModelShape.from_config(cfg, bytes_per_param=4)
    assert counted.total_params == sum(p.numel() for p in model.parameters())
    assert counted == worked


def test_probe_rows_carry_moe_caps_sparsity_aware_utilisation():
    """S-MBU / S-MFU (MoE-CAP, arXiv 2412.07067) of a 2 ms step: its bytes and FLOPs with the experts it
    activated (the census), over measured time x the device peaks."""
    import types

    from workers.engines.transformers.steps import TransformersProbeContext as ProbeContext
    from workers.probes.steps import timed_row

    shape = ModelShape.from_config(OLMOE_1B_7B, bytes_per_param=2)
    peaks = roofline.table_peaks("NVIDIA H100 80GB HBM3", "bfloat16")
    ctx = types.SimpleNamespace(shape=shape, peaks=peaks, extra=lambda *a: ProbeContext.extra(None, *a))
    census = {"experts_touched": 20.0, "experts_per_token": 8.0}
    row = timed_row(ctx, "decode", 4, 512, [0.002, 0.002, 0.002], census, new_tokens=1)
    cost = decode_cost(shape, 4, 512, 20.0, 8.0)
    assert row["s_mbu"] == pytest.approx(cost["bytes"] / 2e-3 / 3350e9)
    assert row["s_mfu"] == pytest.approx(cost["flops"] / 2e-3 / 989e12)
    assert row["tpot_s"] == pytest.approx(0.002) and row["ttft_s"] is None  # a decode step: time per output token
    # fewer experts touched: fewer bytes counted, so a lower S-MBU at the same time
    fewer = timed_row(ctx, "decode", 4, 512, [0.002, 0.002, 0.002], {**census, "experts_touched": 8.0}, new_tokens=1)
    assert fewer["s_mbu"] < row["s_mbu"]
