"""Quantized GGUFs: llama.cpp's quantizer on the writer's F32 file, cached once per build and
quantization; what their tensors weigh (``tensor_bytes``), which the roofline reads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from gguf_tiny import hf_logprobs, llama_logprobs

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUANTS = ["f32", "f16", "q8_0", "q4_0", "q4_k_m"]


@pytest.fixture(scope="module")
def files(tiny, tmp_path_factory):
    from workers.engines.llamacpp.gguf_cache import gguf_for

    home = tmp_path_factory.mktemp("home")
    ckpt = tiny("qwen3_moe")
    return ckpt, {q: gguf_for(ckpt, q, home) for q in QUANTS}


def test_each_quantization_loads_and_gives_finite_logits(files):
    ckpt, paths = files
    reference = hf_logprobs(ckpt)
    for quant, path in paths.items():
        logp = llama_logprobs(path)
        assert np.isfinite(logp).all(), quant
        print(f"{quant}: {path.stat().st_size} bytes, max |dlogp| vs transformers f32 "
              f"{np.abs(logp - reference).max():.2e}")


def test_files_shrink_with_the_bits_per_weight(files):
    size = {q: p.stat().st_size for q, p in files[1].items()}
    assert size["f32"] > size["f16"] > size["q8_0"] > size["q4_k_m"] >= size["q4_0"]


@pytest.mark.parametrize("quant, bits", [("f32", 32.0), ("f16", 16.0), ("q8_0", 8.5), ("q4_0", 4.5)])
def test_tensor_bytes_gives_the_formats_bits_per_expert_weight(files, quant, bits):
    """Block formats store a scale per 32 weights: 34 bytes (q8_0) and 18 bytes (q4_0) per block."""
    from workers.engines.llamacpp.gguf_cache import tensor_bytes

    t = tensor_bytes(files[1][quant])
    assert t["expert_bytes_per_param"] * 8 == bits
    assert t["expert_params"] == 2 * 3 * 4 * 64 * 32  # layers x projections x experts x hidden x width
    assert t["total_bytes"] == t["expert_bytes"] + t["other_bytes"] < t["file_bytes"]
    assert t["other_params"] == tensor_bytes(files[1]["f32"])["other_bytes"] // 4  # the same weights


def test_a_gguf_is_written_once_by_concurrent_callers(tiny, tmp_path, monkeypatch):
    """Two workers asking at once: one writes (under the checkpoint's lock), both get the same file,
    no temporary is left; a later call reuses it."""
    from workers.engines.llamacpp import gguf_cache

    writes = []
    real = gguf_cache.write_gguf
    monkeypatch.setattr(gguf_cache, "write_gguf", lambda *a: (writes.append(a), real(*a))[1])
    got = []
    threads = [threading.Thread(target=lambda: got.append(gguf_cache.gguf_for(tiny("llama"), "f32", tmp_path)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(writes) == 1 and len(got) == 2 and got[0] == got[1]
    assert sorted(p.name for p in got[0].parent.iterdir()) == [".lock", "f32.gguf"]
    assert gguf_cache.gguf_for(tiny("llama"), "f32", tmp_path) == got[0] and len(writes) == 1


def test_the_cache_key_follows_the_checkpoints_content(tiny, tmp_path):
    """Another build (other weights) gets another file; the same build, copied elsewhere, the same key."""
    import shutil

    from workers.engines.llamacpp.gguf_cache import checkpoint_digest

    a = tiny("llama")
    copy = shutil.copytree(a, tmp_path / "copy")
    assert checkpoint_digest(copy) == checkpoint_digest(a) != checkpoint_digest(tiny("llama", rms_norm_eps=1e-5))
    (copy / "model.safetensors").write_bytes((a / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    assert checkpoint_digest(copy) != checkpoint_digest(a)
