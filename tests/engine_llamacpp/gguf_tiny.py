"""Tiny builds of each family the GGUF writer knows, and both engines' log-probabilities for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

# hidden 64 and expert widths of 32: every matrix row is a whole number of q8_0/q4_0 blocks (32 weights)
BASE = {"hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 64}
MOE = {"num_experts_per_tok": 2}
CONFIGS = {
    "llama": {"model_type": "llama", **BASE},
    "llama_tied": {"model_type": "llama", **BASE, "tie_word_embeddings": True},
    "mixtral": {"model_type": "mixtral", **BASE, **MOE, "num_local_experts": 4},
    "qwen3": {"model_type": "qwen3", **BASE},
    "qwen3_moe": {"model_type": "qwen3_moe", **BASE, **MOE, "num_experts": 4, "moe_intermediate_size": 32,
                  "norm_topk_prob": True},
    # olmoe: as many KV heads as heads (llama.cpp's olmoe reads attn_k_norm with the query's width)
    "olmoe": {"model_type": "olmoe", **{k: v for k, v in BASE.items() if k != "head_dim"}, **MOE,
              "num_key_value_heads": 4, "num_experts": 4},
    "olmoe_tied": {"model_type": "olmoe", **{k: v for k, v in BASE.items() if k != "head_dim"}, **MOE,
                   "num_key_value_heads": 4, "num_experts": 4, "tie_word_embeddings": True},
}
ARCH = {"llama": "llama", "mixtral": "llama", "qwen3": "qwen3", "qwen3_moe": "qwen3moe", "olmoe": "olmoe"}
# a BOS and 31 bytes: every position is compared
IDS = [257] + np.random.default_rng(0).integers(0, 256, 31).tolist()


def build(name: str, **config) -> Path:
    from workers.builds.materialize import materialize

    return Path(materialize({"config": {**CONFIGS[name], **config}, "seed": 0}))


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def llama_logprobs(gguf_path, ids=IDS, **kwargs) -> np.ndarray:
    """llama.cpp's log-probabilities at every position: f32 KV cache, one thread, logits_all."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=64, n_batch=64, n_threads=1, logits_all=True,
                          type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32, verbose=False, **kwargs)
    try:
        llm.eval(ids)
        return log_softmax(np.array(llm.scores[:len(ids)]))
    finally:
        llm.close()


def hf_logprobs(checkpoint, ids=IDS, **config) -> np.ndarray:
    """transformers' float32 log-probabilities at every position (``config`` overrides the saved one)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.float32, **config).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    return log_softmax(logits.numpy())


def load_in_subprocess(gguf_path, **kwargs) -> subprocess.CompletedProcess:
    """Load ``gguf_path`` in a child process (llama.cpp may abort the process rather than raise), its
    log on stderr."""
    code = ("import sys, llama_cpp; llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, verbose=True, "
            f"**{kwargs!r}); print('loaded')")
    env = {**os.environ, "GGML_NO_BACKTRACE": "1"}  # an abort prints its assertion, not a gdb backtrace
    return subprocess.run([sys.executable, "-c", code, str(gguf_path)], capture_output=True, text=True, timeout=120,
                          env=env)
