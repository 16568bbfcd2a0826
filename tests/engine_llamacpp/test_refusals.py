"""What the llamacpp spec refuses is really wrong in llama.cpp (each refusal beside the neighbouring
case that runs), and what the GGUF writer cannot express is refused in one line naming the checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from gguf_tiny import CONFIGS, hf_logprobs, llama_logprobs, load_in_subprocess

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _refusal(config):
    from workers.engines.llamacpp.spec import Llamacpp

    return Llamacpp().build_refusal(config, "float32")


def _gap(ckpt, tmp_path) -> float:
    from workers.engines.llamacpp.gguf_write import write_gguf

    return float(np.abs(llama_logprobs(write_gguf(ckpt, tmp_path / "m.gguf")) - hf_logprobs(ckpt)).max())


@pytest.mark.parametrize("family, refused", [("qwen3_moe", False), ("qwen3_moe", True),
                                             ("olmoe", True), ("olmoe", False)])
def test_norm_topk_prob_llama_cpp_cannot_run_differs_and_is_refused(tiny, tmp_path, family, refused):
    """llama.cpp hard-codes the renormalisation per architecture (qwen3moe: always, olmoe: never):
    the other setting computes another model (beyond the fp32 tolerance) and the spec refuses it."""
    norm = (family == "qwen3_moe") != refused  # the setting llama.cpp computes, or the other one
    config = {**CONFIGS[family], "norm_topk_prob": norm}
    gap = _gap(tiny(family, norm_topk_prob=norm), tmp_path)
    print(f"{family} norm_topk_prob={norm}: max |dlogp| {gap:.2e}")
    assert (gap > 1e-3) if refused else (gap <= 1e-4)
    assert (_refusal(config) is not None) == refused


@pytest.mark.parametrize("kv_heads, loads", [(2, False), (4, True)])
def test_olmoe_with_fewer_kv_heads_than_heads_fails_to_load_and_is_refused(tiny, tmp_path, kv_heads, loads):
    from workers.engines.llamacpp.gguf_write import write_gguf

    config = {**CONFIGS["olmoe"], "num_key_value_heads": kv_heads}
    run = load_in_subprocess(write_gguf(tiny("olmoe", num_key_value_heads=kv_heads), tmp_path / "m.gguf"))
    assert (run.returncode == 0 and "loaded" in run.stdout) == loads, run.stderr[-2000:]
    assert loads or "tensor 'blk.0.attn_k_norm.weight' has wrong shape" in run.stderr
    assert (_refusal(config) is None) == loads


@pytest.mark.parametrize("k, loads", [(0, False), (1, True), (4, True), (5, False)])
def test_a_k_outside_1_to_experts_kills_llama_cpp_and_is_refused(tiny, tmp_path, k, loads):
    from moe_schema.check import SchemaError
    from moe_schema.routing import config_from_spec
    from workers.engines.llamacpp.gguf_write import write_gguf
    from workers.engines.llamacpp.spec import Llamacpp

    path = write_gguf(tiny("qwen3_moe"), tmp_path / "m.gguf")
    run = load_in_subprocess(path, kv_overrides={"qwen3moe.expert_used_count": k})
    assert (run.returncode == 0 and "loaded" in run.stdout) == loads, run.stderr[-2000:]
    assert loads or (run.returncode < 0 and "GGML_ASSERT" in run.stderr)  # killed by a signal, not an exception
    try:
        refusal = Llamacpp().routing_refusal(config_from_spec({"name": "topk", "params": {"k": k}}), CONFIGS["qwen3_moe"])
    except SchemaError as exc:  # k < 1: the topk strategy's own schema refuses it, on every engine
        refusal = str(exc)
    assert (refusal is None) == loads


def test_a_tokenizer_the_writer_cannot_express_is_refused_in_one_line(tiny, tmp_path):
    """A word-level tokenizer (the bios corpora's) is refused naming the checkpoint; the byte
    tokenizer of the same build writes."""
    import shutil

    from workers.builds.tokenizer import save_word_tokenizer
    from workers.engines.llamacpp.gguf_write import UnsupportedCheckpoint, write_gguf

    ckpt = shutil.copytree(tiny("llama"), tmp_path / "words")
    write_gguf(ckpt, tmp_path / "bytes.gguf")
    (ckpt / "tokenizer.json").unlink()
    save_word_tokenizer(ckpt, ["alice", "bob"])
    with pytest.raises(UnsupportedCheckpoint) as err:
        write_gguf(ckpt, tmp_path / "words.gguf")
    message = str(err.value)
    assert "\n" not in message and str(ckpt) in message and "WordLevel" in message and "byte tokenizer" in message
    assert not (tmp_path / "words.gguf").exists()
    (ckpt / "tokenizer.json").unlink()
    with pytest.raises(UnsupportedCheckpoint, match="no tokenizer.json"):
        write_gguf(ckpt, tmp_path / "words.gguf")


@pytest.mark.parametrize("config, words", [
    ({"model_type": "granite", "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 2,
      "num_attention_heads": 4}, "family 'granite'"),
    ({"model_type": "qwen2_moe", "hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 2,
      "num_attention_heads": 4, "num_experts": 4, "moe_intermediate_size": 32,
      "shared_expert_intermediate_size": 32}, "NaN logits"),
    ({**CONFIGS["llama"], "attention_bias": True}, "biases"),
    ({**CONFIGS["qwen3_moe"], "mlp_only_layers": [0]}, "dense layers"),
])
def test_a_checkpoint_the_writer_cannot_express_is_refused_in_one_line(tmp_path, config, words):
    from workers.builds.materialize import materialize
    from workers.engines.llamacpp.gguf_write import UnsupportedCheckpoint, write_gguf

    ckpt = materialize({"config": config, "seed": 0})
    with pytest.raises(UnsupportedCheckpoint) as err:
        write_gguf(ckpt, tmp_path / "m.gguf")
    assert "\n" not in str(err.value) and str(ckpt) in str(err.value) and words in str(err.value)
