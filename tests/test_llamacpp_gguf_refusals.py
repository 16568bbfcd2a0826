"""The llamacpp engine refuses at plan time, in one line, a build whose config the harness's GGUF
cannot express (``spec.unwritable``; the writer, tests/engine_llamacpp, refuses the same checkpoint)
or that llama.cpp computes differently (the renormalisation of the chosen experts' weights), each
beside the default it differs from. Torch-free and llama.cpp-free: the spec alone."""

from __future__ import annotations

import pytest

from workers.engines.llamacpp.spec import Llamacpp

REFUSED = [
    ({"model_type": "llama", "hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"model_type": "qwen3", "rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}, "rope_type 'yarn'"),
    ({"model_type": "llama", "rope_scaling": {"type": "linear", "factor": 2.0}}, "rope_type 'linear'"),
    ({"model_type": "qwen3", "use_sliding_window": True}, "sliding-window"),
    ({"model_type": "mixtral", "sliding_window": 4096}, "sliding-window"),
    ({"model_type": "llama", "attention_bias": True}, "biases"),
    ({"model_type": "llama", "mlp_bias": True}, "biases"),
    ({"model_type": "olmoe", "clip_qkv": 8.0}, "clip_qkv"),
    ({"model_type": "qwen3_moe", "norm_topk_prob": True, "mlp_only_layers": [1]}, "dense layers"),
    ({"model_type": "qwen3_moe", "norm_topk_prob": True, "decoder_sparse_step": 2}, "dense layers"),
    # llama.cpp hard-codes the renormalisation (tests/engine_llamacpp/test_refusals.py measures the difference)
    ({"model_type": "qwen3_moe", "norm_topk_prob": False}, "norm_topk_prob false"),
    ({"model_type": "olmoe", "norm_topk_prob": True}, "norm_topk_prob true"),
]


@pytest.mark.parametrize("config, words", REFUSED)
def test_a_config_the_gguf_cannot_express_is_refused_in_one_line(config, words):
    refusal = Llamacpp().build_refusal(config, "float32")
    assert refusal and "\n" not in refusal and words in refusal and config["model_type"] in refusal


@pytest.mark.parametrize("config", [
    {"model_type": "llama", "hidden_act": "silu", "attention_bias": False, "mlp_bias": False},
    {"model_type": "qwen3", "rope_parameters": {"rope_type": "default", "rope_theta": 1e6}, "use_sliding_window": False,
     "layer_types": ["full_attention", "full_attention"]},
    {"model_type": "mixtral", "sliding_window": None},
    {"model_type": "olmoe", "clip_qkv": None, "norm_topk_prob": False},
    {"model_type": "olmoe"},  # transformers' default: norm_topk_prob false
    {"model_type": "qwen3_moe", "norm_topk_prob": True, "mlp_only_layers": [], "decoder_sparse_step": 1},
])
def test_the_writable_defaults_beside_them_are_not_refused(config):
    assert Llamacpp().build_refusal(config, "float32") is None
