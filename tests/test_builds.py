"""workers.builds: byte tokenizer, materialising config builds, checking and loading checkpoints."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moe_schema import protocol
from workers.builds import materialize as mat
from workers.builds.load import load_model
from workers.builds.materialize import build_dir, materialize, resolve_checkpoint
from workers.builds.spec import build_hash, check_variant
from workers.builds.tokenizer import BYTE_VOCAB_SIZE, EOS_ID, save_byte_tokenizer
from workers.errors import JobError, ModelLoadFailed

TINY = {"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 64}
MOE = {"num_experts_per_tok": 2}
FAMILY_CONFIGS = {
    "llama": {"model_type": "llama", **TINY},
    "olmo": {"model_type": "olmo", **TINY},
    "qwen3": {"model_type": "qwen3", **TINY, "head_dim": 8},
    "olmoe": {"model_type": "olmoe", **TINY, **MOE, "num_experts": 4},
    "mixtral": {"model_type": "mixtral", **TINY, **MOE, "num_local_experts": 4},
    "qwen2_moe": {"model_type": "qwen2_moe", **TINY, **MOE, "num_experts": 4, "moe_intermediate_size": 16,
                  "shared_expert_intermediate_size": 24},
    "qwen3_moe": {"model_type": "qwen3_moe", **TINY, **MOE, "num_experts": 4, "moe_intermediate_size": 16,
                  "head_dim": 8},
    "granite": {"model_type": "granite", **TINY},
    "granitemoe": {"model_type": "granitemoe", **TINY, **MOE, "num_local_experts": 4},
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return save_byte_tokenizer(tmp_path_factory.mktemp("byte_tok"))


@pytest.fixture(scope="module")
def byte_tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


# --- tokenizer -------------------------------------------------------------------------------

def test_tokenizer_is_bytes_plus_specials(byte_tokenizer):
    tok = byte_tokenizer
    assert len(tok) == BYTE_VOCAB_SIZE == 259
    assert tok.eos_token == "<|eos|>" and tok.eos_token_id == EOS_ID
    assert tok.pad_token_id is not None and tok.bos_token_id is not None
    assert tok("héllo")["input_ids"] == list("héllo".encode())  # one id per UTF-8 byte, no specials added
    assert tok("")["input_ids"] == []


@pytest.mark.parametrize("text", ["Hello, world!", " leading and  double  spaces . , ?", "naïve café — 世界 🎉",
                                  "tabs\tand\nnewlines\r\n", "\x00\x7f control", "Ελληνικά русский عربى"])
def test_tokenizer_round_trips_examples(byte_tokenizer, text):
    ids = byte_tokenizer(text)["input_ids"]
    assert len(ids) == len(text.encode("utf-8"))
    assert byte_tokenizer.decode(ids) == text


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_tokenizer_round_trips_any_text(byte_tokenizer, text):
    assert byte_tokenizer.decode(byte_tokenizer(text)["input_ids"]) == text


# --- materialize -----------------------------------------------------------------------------

def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "model.safetensors")


def test_materialize_is_deterministic_and_cached(tmp_path):
    build = {"config": FAMILY_CONFIGS["olmoe"], "seed": 3}
    a = materialize(build, tmp_path / "a")
    b = materialize(build, tmp_path / "b")
    assert a.name == b.name == build_hash(build) and a.parent == tmp_path / "a" / "builds"
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    assert all(wa[k].equal(wb[k]) for k in wa)  # bit-identical
    assert json.loads((a / "build.json").read_text()) == build
    # cached: the second call in the same home returns the folder untouched
    mtime = (a / "model.safetensors").stat().st_mtime_ns
    assert materialize(dict(reversed(list(build.items()))), tmp_path / "a") == a  # key order is irrelevant
    assert (a / "model.safetensors").stat().st_mtime_ns == mtime
    # another seed: other weights, other folder
    c = materialize({"config": FAMILY_CONFIGS["olmoe"], "seed": 4}, tmp_path / "a")
    assert c != a and not _weights(c)["model.embed_tokens.weight"].equal(wa["model.embed_tokens.weight"])


def test_materialize_leaves_global_rng_alone(tmp_path):
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    materialize({"config": FAMILY_CONFIGS["llama"], "seed": 9}, tmp_path)
    assert torch.rand(3).equal(expected)


def test_materialize_default_home_is_env(monkeypatch, tmp_path):
    monkeypatch.setenv("MOE_HARNESS_HOME", str(tmp_path))
    build = {"config": FAMILY_CONFIGS["llama"], "seed": 1}
    assert materialize(build) == tmp_path / "builds" / build_hash(build) == build_dir(build)


def test_materialize_failure_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(directory):
        raise OSError("disk full")

    monkeypatch.setattr(mat, "save_byte_tokenizer", broken)
    build = {"config": FAMILY_CONFIGS["llama"], "seed": 2}
    with pytest.raises(OSError, match="disk full"):
        materialize(build, tmp_path)
    assert list((tmp_path / "builds").iterdir()) == []  # no final folder, no temporary one


def test_materialize_concurrent_writers_agree(tmp_path):
    """Threads racing on one new build: one rename wins, the others see a complete folder."""
    build = {"config": FAMILY_CONFIGS["mixtral"], "seed": 5}
    results, errors = [], []
    barrier = threading.Barrier(3)

    def worker():
        barrier.wait()
        try:
            results.append(materialize(build, tmp_path))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(results)) == 1
    assert sorted(p.name for p in (tmp_path / "builds").iterdir()) == [build_hash(build)]
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(results[0]))


def test_lost_rename_race_returns_the_winner(tmp_path, monkeypatch):
    build = {"config": FAMILY_CONFIGS["llama"], "seed": 6}
    final = build_dir(build, tmp_path)
    real_rename = os.rename

    def rival_wins(src, dst):  # another process finished first: dst exists and is complete
        real_rename(src, dst)
        raise OSError(39, "Directory not empty")

    monkeypatch.setattr(mat.os, "rename", rival_wins)
    assert materialize(build, tmp_path) == final
    assert (final / "config.json").is_file()
    assert [p.name for p in final.parent.iterdir()] == [final.name]


def test_abandoned_temporary_folders_of_dead_writers_are_swept(tmp_path):
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    host = socket.gethostname()
    builds = tmp_path / "builds"
    names = {"dead": f".tmp-0123456789abcdef-{host}-{dead.pid}-aaaaaaaa",
             "alive": f".tmp-0123456789abcdef-{host}-{os.getpid()}-bbbbbbbb",
             "elsewhere": f".tmp-0123456789abcdef-other-host-{dead.pid}-cccccccc"}
    for name in names.values():
        (builds / name).mkdir(parents=True)
    materialize({"config": FAMILY_CONFIGS["llama"], "seed": 7}, tmp_path)
    left = {p.name for p in builds.iterdir()}
    assert names["dead"] not in left and {names["alive"], names["elsewhere"]} <= left


@pytest.mark.parametrize("family", sorted(FAMILY_CONFIGS))
def test_every_family_materializes_and_loads(family):
    import torch

    variant = {"build": {"config": FAMILY_CONFIGS[family], "seed": 0}}
    model, tok, path = load_model(variant, "cpu")
    assert type(model).__name__ == mat.FAMILIES[family].causal_lm_class
    assert not model.training and model.config.vocab_size == BYTE_VOCAB_SIZE
    assert model.config.eos_token_id == tok.eos_token_id == EOS_ID
    ids = torch.tensor([tok("a bc")["input_ids"]])
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, 4, BYTE_VOCAB_SIZE) and torch.isfinite(logits).all()


def test_build_is_an_ordinary_checkpoint():
    """Plain transformers, no harness code, loads the build and gets the same logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    variant = {"build": {"config": FAMILY_CONFIGS["qwen2_moe"], "seed": 0}}
    ours, _, path = load_model(variant, "cpu")
    plain = AutoModelForCausalLM.from_pretrained(str(path)).eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    assert type(plain).__name__ == "Qwen2MoeForCausalLM"
    ids = torch.tensor([tok("same weights")["input_ids"]])
    with torch.no_grad():
        assert torch.equal(plain(ids).logits, ours(ids).logits)


def test_load_honours_dtype_and_experts_implementation():
    import torch

    variant = {"build": {"config": FAMILY_CONFIGS["olmoe"], "seed": 0}, "dtype": "bfloat16",
               "experts_implementation": "eager"}
    model, _, _ = load_model(variant, "cpu")
    assert model.dtype == torch.bfloat16
    assert model.config._experts_implementation == "eager"
    with pytest.raises(JobError, match=r"^variant\.experts_implementation: .*bogus") as err:
        load_model({**variant, "experts_implementation": "bogus"}, "cpu")
    assert err.value.code == protocol.INVALID_PARAMS


# --- checkpoints -----------------------------------------------------------------------------

def test_local_checkpoint_dir_is_returned_as_is(tmp_path):
    src = materialize({"config": FAMILY_CONFIGS["llama"], "seed": 0}, tmp_path)
    assert materialize({"checkpoint": str(src)}) == src.resolve()


def test_pickle_only_checkpoint_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ModelLoadFailed, match=r"only pickle weights \(pytorch_model\.bin\).*safetensors only"):
        load_model({"build": {"checkpoint": str(tmp_path)}}, "cpu")


@pytest.mark.parametrize("files, message", [
    ({}, "no config.json"),
    ({"config.json": "{}"}, r"no \*\.safetensors weights"),
])
def test_incomplete_checkpoint_dirs_are_refused(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ModelLoadFailed, match=message):
        resolve_checkpoint(str(tmp_path))


@pytest.mark.parametrize("checkpoint, message", [
    ("/no/such/dir", "no such directory"),
    ("./missing", "no such directory"),
    ("not a hub id!", "neither a local directory nor a hub id"),
])
def test_bad_checkpoint_names(checkpoint, message):
    with pytest.raises(ModelLoadFailed, match=message) as err:
        resolve_checkpoint(checkpoint)
    assert err.value.code == protocol.MODEL_LOAD_FAILED


def test_hub_id_offline_is_a_clear_load_failure(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no 25 s of retries
    assert resolve_checkpoint("no-such-org/no-such-model") == "no-such-org/no-such-model"
    with pytest.raises(ModelLoadFailed, match=r"^checkpoint 'no-such-org/no-such-model': cannot load the model: ") as err:
        load_model({"build": {"checkpoint": "no-such-org/no-such-model"}}, "cpu")
    assert err.value.code == protocol.MODEL_LOAD_FAILED
    assert "\n" not in err.value.message


# --- spec checks -----------------------------------------------------------------------------

@pytest.mark.parametrize("variant, message", [
    ({}, "variant: missing 'build'"),
    ({"build": {"checkpoint": "/x", "config": {}}}, "exactly one of 'checkpoint', 'config' and 'trained'"),
    ({"build": {"config": {"model_type": "gpt9"}}}, r"variant\.build\.config\.model_type: unknown model family 'gpt9'; known: llama"),
    ({"build": {"config": {"model_type": "llama", "hidden_size": "big"}}}, r"variant\.build\.config\.hidden_size: expected int, got 'big'"),
    ({"build": {"config": {"model_type": "llama", "num_experts": 4}}}, r"variant\.build\.config\.num_experts: not a llama config key"),
    ({"build": {"config": {"model_type": "llama"}, "seed": 1.5}}, r"variant\.build\.seed: expected int"),
    ({"build": {"config": {"model_type": "llama"}, "sed": 1}},
     r"variant\.build\.sed: unknown key \(did you mean 'seed'\?\); known: config, seed"),
    ({"build": {"checkpoint": ""}}, r"variant\.build\.checkpoint: expected a non-empty string"),
    ({"build": {"checkpoint": "a/b"}, "dtype": "fp8"}, r"variant\.dtype: unknown dtype 'fp8'"),
    ({"build": {"checkpoint": "a/b"}, "routing": "topk"}, r"variant\.routing: expected a map with a strategy 'name'"),
    ({"build": {"checkpoint": "a/b"}, "routing": {"name": "topk", "params": {"k": 0}}},
     r"variant\.routing\.params\.k: routing strategy 'topk': k must be a positive integer"),
    ({"build": {"checkpoint": "a/b"}, "trust_remote_code": "yes"}, r"variant\.trust_remote_code: expected a bool"),
    ({"build": {"trained": "../../etc"}}, r"variant\.build\.trained: expected a train key \(16 hex digits\)"),
    ({"build": {"trained": "0123456789abcdef", "seed": 1}}, r"variant\.build\.seed: unknown key; known: trained"),
])
def test_bad_variants_name_the_field(variant, message):
    with pytest.raises(JobError, match=message) as err:
        check_variant(variant)
    assert err.value.code == protocol.INVALID_PARAMS


def test_unbuildable_config_is_a_clear_error(tmp_path):
    bad = {**FAMILY_CONFIGS["llama"], "vocab_size": 100}
    with pytest.raises(JobError, match=r"vocab_size: 100 is smaller than the byte tokenizer's 259"):
        materialize({"config": bad}, tmp_path)
    assert not (tmp_path / "builds").exists() or list((tmp_path / "builds").iterdir()) == []
