"""An F32 GGUF the harness writes computes the build's own model: llama.cpp (f32 KV cache) against
transformers in float32, every position, for each family; and top-k routing through
``<arch>.expert_used_count`` against transformers' ``num_experts_per_tok``."""

from __future__ import annotations

import numpy as np
import pytest

from gguf_tiny import ARCH, CONFIGS, hf_logprobs, llama_logprobs

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FP32_TOL = 1e-4


@pytest.mark.parametrize("name", ["llama", "llama_tied", "mixtral", "qwen3", "qwen3_moe", "olmoe", "olmoe_tied"])
def test_f32_gguf_matches_transformers_at_every_position(tiny, tmp_path, name):
    """max |log-softmax difference| within the fp32 tolerance and the same argmax at every position."""
    from workers.engines.llamacpp.gguf_write import write_gguf

    ckpt = tiny(name)
    ours, theirs = llama_logprobs(write_gguf(ckpt, tmp_path / "m.gguf")), hf_logprobs(ckpt)
    diff = float(np.abs(ours - theirs).max())
    print(f"parity {name}: max |dlogp| {diff:.2e}")
    assert diff <= FP32_TOL
    assert (ours.argmax(-1) == theirs.argmax(-1)).all()


@pytest.mark.parametrize("name", ["mixtral", "qwen3_moe", "olmoe"])
def test_expert_used_count_is_topk_for_every_k(tiny, tmp_path, name):
    """k = 1..E through kv_overrides matches transformers with num_experts_per_tok = k, and another
    k computes something else (the override really reaches the router)."""
    from workers.engines.llamacpp.gguf_write import write_gguf

    ckpt = tiny(name)
    path = write_gguf(ckpt, tmp_path / "m.gguf")
    experts = CONFIGS[name].get("num_experts") or CONFIGS[name]["num_local_experts"]
    by_k, worst = {}, 0.0
    for k in range(1, experts + 1):
        by_k[k] = llama_logprobs(path, kv_overrides={f"{ARCH[name]}.expert_used_count": k})
        worst = max(worst, float(np.abs(by_k[k] - hf_logprobs(ckpt, num_experts_per_tok=k)).max()))
    print(f"routing {name}: k=1..{experts}, max |dlogp| {worst:.2e}")
    assert worst <= FP32_TOL
    assert np.abs(by_k[1] - by_k[2]).max() > 1e-3


def test_the_byte_vocabulary_loads_with_the_harness_ids(tiny, tmp_path):
    """llama.cpp reads the vocabulary the writer gives the byte tokenizer: the embedding's rows, bos
    and eos at the harness's ids, byte tokens that detokenize to their bytes."""
    import llama_cpp

    from workers.builds.tokenizer import BOS_ID, BYTE_VOCAB_SIZE, EOS_ID
    from workers.engines.llamacpp.gguf_write import write_gguf

    llm = llama_cpp.Llama(model_path=str(write_gguf(tiny("qwen3"), tmp_path / "m.gguf")), n_ctx=64, verbose=False)
    try:
        assert (llm.n_vocab(), llm.token_bos(), llm.token_eos()) == (BYTE_VOCAB_SIZE, BOS_ID, EOS_ID)
        assert llm.detokenize(list(b"caf\xc3\xa9\n")) == "café\n".encode()
        assert llm.tokenize("café".encode(), add_bos=False) == list("café".encode())
    finally:
        llm.close()
