"""Counting without weights (harness.count): config builds by the arithmetic, checkpoints from
config.json and safetensors headers, equal to what a worker counts on the loaded model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import derive
from harness.count import CountError, count_variant, meta_count
from hollow import PUBLIC, model_tensors, write_hollow_checkpoint
from moe_schema import headers

REPO = Path(__file__).resolve().parent.parent
KEYS = ("total", "active", "total_no_embed", "active_no_embed", "num_experts", "experts_per_token")


def variant(build: dict, routing=None, dtype="bfloat16") -> dict:
    return {"name": "v", "build": build, "routing": routing, "dtype": dtype}


@pytest.fixture(scope="module")
def hollow(tmp_path_factory):
    """The four public shapes as full-size checkpoints whose data is a hole, and their meta counts."""
    root = tmp_path_factory.mktemp("hollow")
    metas = {}
    for name, config in PUBLIC.items():
        from workers.builds.meta import count

        out = count(config, tensors=True)
        metas[name] = out["params"]
        write_hollow_checkpoint(root / name, derive.resolved(config), out["tensors"])
    return root, metas


@pytest.mark.parametrize("name", list(PUBLIC))
def test_public_shapes_count_the_same_as_config_checkpoint_and_loaded_model(hollow, name):
    root, metas = hollow
    path = root / name / "model.safetensors"
    assert path.stat().st_size > 2e9 and path.stat().st_blocks * 512 < 50e6  # full size on paper, a hole on disk
    config = count_variant(variant({"config": PUBLIC[name]}))["params"]
    checkpoint = count_variant(variant({"checkpoint": str(root / name)}))["params"]
    for key in KEYS:
        assert config[key] == checkpoint[key] == derive.count(PUBLIC[name])[key] == metas[name][key], key


def test_describe_json_counts_hollow_checkpoints_and_config_builds_alike(hollow, tmp_path):
    root, _ = hollow
    docs = {}
    for form, models in (("config", [{"name": n, "config": c} for n, c in PUBLIC.items()]),
                         ("checkpoint", [{"name": n, "checkpoint": str(root / n)} for n in PUBLIC])):
        suite = tmp_path / f"{form}.yaml"
        suite.write_text(yaml.safe_dump({"name": form, "dtype": "bfloat16", "models": models}))
        proc = subprocess.run([sys.executable, "-m", "harness.cli", "describe", str(suite), "--json"], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        docs[form] = {v["variant"]: v for v in json.loads(proc.stdout)["variants"]}
    for name in PUBLIC:
        a, b = docs["config"][name], docs["checkpoint"][name]
        assert a["status"] == b["status"] == "ok" and a["params"] == b["params"]
        assert a["build"]["moe"] == b["build"]["moe"] == (name != "olmo-1b")
        assert (a["build"]["source"], b["build"]["source"]) == ("config", "checkpoint")
    assert docs["checkpoint"]["olmoe-1b-7b"]["params"]["total"] == 6_919_161_856
    assert docs["checkpoint"]["olmoe-1b-7b"]["params"]["active"] == 1_282_017_280


TINY_MIXTRAL = {"model_type": "mixtral", "hidden_size": 32, "intermediate_size": 16, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "num_local_experts": 4, "num_experts_per_tok": 2}


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory):
    """A tiny Mixtral written by transformers' save_pretrained (its per-expert layout) and its loaded count."""
    import torch

    from workers.builds.materialize import instantiate
    from workers.builds.params import count_params

    torch.set_num_threads(1)
    model = instantiate({"config": TINY_MIXTRAL, "seed": 0})
    path = tmp_path_factory.mktemp("saved") / "tiny"
    model.save_pretrained(path)
    return path, count_params(model)


def test_a_checkpoint_saved_by_transformers_counts_as_its_loaded_model(saved_tiny):
    path, loaded = saved_tiny
    names = list(headers.checkpoint_tensors(path))
    assert any(".experts.0." in n for n in names)  # on disk one tensor per expert, not the 3-D in-memory form
    got = count_variant(variant({"checkpoint": str(path)}))["params"]
    assert {k: got[k] for k in KEYS} == {k: loaded[k] for k in KEYS}


def test_fused_expert_tensors_count_like_per_expert_ones(tmp_path):
    config = derive.resolved(TINY_MIXTRAL)
    tensors = model_tensors(TINY_MIXTRAL)
    per_expert = count_variant(variant({"checkpoint": str(write_hollow_checkpoint(tmp_path / "a", config, tensors))}))
    fused = count_variant(variant({"checkpoint": str(write_hollow_checkpoint(tmp_path / "b", config, tensors,
                                                                             fused=True))}))
    assert per_expert["params"] == fused["params"] and fused["params"]["num_experts"] == 4
    assert per_expert["params"]["total"] == derive.count(TINY_MIXTRAL)["total"]


def test_routing_changes_active_parameters_alike_in_both_forms(saved_tiny):
    path, loaded = saved_tiny
    cfg = json.loads((path / "config.json").read_text())
    config_build = {k: cfg[k] for k in TINY_MIXTRAL} | {"vocab_size": cfg["vocab_size"]}
    for routing, k in (({"name": "topk", "params": {"k": 1}}, 1.0), ({"name": "topp", "params": {"p": 0.5}}, None)):
        a = count_variant(variant({"config": config_build}, routing))["params"]
        b = count_variant(variant({"checkpoint": str(path)}, routing))["params"]
        assert a == b and a["experts_per_token"] == k
    one = count_variant(variant({"checkpoint": str(path)}, {"name": "topk", "params": {"k": 1}}))["params"]
    assert one["total"] == loaded["total"] and one["active"] < loaded["active"]


def test_tied_embeddings_are_counted_once(tmp_path):
    config = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
              "num_attention_heads": 4, "tie_word_embeddings": True}
    tensors = dict(model_tensors(config))
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]  # a checkpoint that stores both
    got = count_variant(variant({"checkpoint": str(write_hollow_checkpoint(tmp_path / "t", derive.resolved(config),
                                                                           tensors))}))["params"]
    assert got["total"] == derive.count(config)["total"] and got["total_no_embed"] == got["total"] - 259 * 32


def test_saved_buffers_and_layers_past_the_model_are_not_parameters():
    tensors = {"model.layers.0.mlp.gate.e_score_correction_bias": ("F32", (8,)),
               "model.layers.0.mlp.gate.weight": ("BF16", (8, 4)),
               "model.layers.1.mlp.gate.weight": ("BF16", (8, 4))}  # a multi-token-prediction layer
    assert headers.count_tensors(tensors, {"num_hidden_layers": 1})["total"] == 32


def test_bad_checkpoints_fail_with_the_file_named(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "model.safetensors").write_bytes((10**12).to_bytes(8, "little"))
    with pytest.raises(CountError, match=r"model\.safetensors: header length 1000000000000 is over"):
        count_variant(variant({"checkpoint": str(tmp_path)}))
    (tmp_path / "model.safetensors").write_bytes((4).to_bytes(8, "little") + b"nope")
    with pytest.raises(CountError, match=r"model\.safetensors: header is not JSON"):
        count_variant(variant({"checkpoint": str(tmp_path)}))


def test_describe_prints_a_failed_rows_error_once_below_the_table(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (bad / "model.safetensors").write_bytes((4).to_bytes(8, "little") + b"nope")
    suite = tmp_path / "s.yaml"
    suite.write_text(yaml.safe_dump({"name": "s", "models": [
        {"name": "broken", "checkpoint": str(bad)},
        {"name": "fine", "config": {"model_type": "llama", "hidden_size": 32, "intermediate_size": 48,
                                    "num_hidden_layers": 2, "num_attention_heads": 4}}]}))
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "describe", str(suite)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 1
    table, _, below = proc.stdout.partition("└")
    assert "failed" in table and "header is not JSON" not in table
    assert below.count("header is not JSON") == 1
    assert f"broken: {bad}/model.safetensors: header is not JSON" in below


DEEPSEEK = {"model_type": "deepseek_v3", "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 16,
            "num_hidden_layers": 3, "num_attention_heads": 4, "n_routed_experts": 8, "n_shared_experts": 2,
            "num_experts_per_tok": 2, "first_k_dense_replace": 1, "q_lora_rank": 32, "kv_lora_rank": 16,
            "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "v_head_dim": 8, "n_group": 2, "topk_group": 1}


@pytest.mark.parametrize("config", [DEEPSEEK, {**DEEPSEEK, "attention_bias": True}], ids=["plain", "bias"])
def test_deepseek_v3_arithmetic_equals_the_meta_device_count(config):
    """The meta-device path (a torch subprocess) counts the family's own transformers class."""
    want = meta_count(config)["params"]
    got = derive.count(config)
    for key in KEYS:
        assert got[key] == want[key], key


def test_deepseek_v3_twins_both_ways():
    dense = derive.derive_twin(DEEPSEEK, "active")
    assert dense["model_type"] == "llama"
    assert derive.relative_gap(derive.count(dense)["total"], derive.count(DEEPSEEK)["active"]) < 0.02
    llama = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
             "num_attention_heads": 4}
    moe = derive.derive_twin(llama, "active", family="deepseek_v3", num_experts=16, top_k=2, shared_experts=1)
    assert moe["n_shared_experts"] == 1 and moe["first_k_dense_replace"] == 0
    assert derive.relative_gap(derive.count(moe)["active"], derive.count(llama)["total"]) < 0.02
    assert count_variant(variant({"config": moe}))["params"]["num_experts"] == 16


def test_a_hub_id_is_counted_from_its_config_and_safetensors_metadata_only(saved_tiny, monkeypatch):
    """Served from a local checkpoint in huggingface_hub's own metadata classes: only config.json is
    downloaded, and the tensor table comes from get_safetensors_metadata (no weights fetched)."""
    import huggingface_hub
    from huggingface_hub.utils import SafetensorsFileMetadata, SafetensorsRepoMetadata, TensorInfo

    path, loaded = saved_tiny
    fetched = []

    def download(repo, filename, **kw):
        fetched.append((repo, filename))
        assert filename == "config.json"
        return str(path / filename)

    def metadata(repo, **kw):
        header = headers.read_header(path / "model.safetensors")
        tensors = {n: TensorInfo(dtype=i["dtype"], shape=i["shape"], data_offsets=tuple(i["data_offsets"]))
                   for n, i in header.items()}
        return SafetensorsRepoMetadata(metadata=None, sharded=False, weight_map={n: "model.safetensors" for n in tensors},
                                       files_metadata={"model.safetensors": SafetensorsFileMetadata({}, tensors)})

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(huggingface_hub, "get_safetensors_metadata", metadata)
    got = count_variant(variant({"checkpoint": "org/tiny-mixtral"}))
    assert fetched == [("org/tiny-mixtral", "config.json")]
    assert {k: got["params"][k] for k in KEYS} == {k: loaded[k] for k in KEYS}
    assert got["build"]["family"] == "mixtral" and got["build"]["source"] == "checkpoint"


def test_an_unreachable_hub_id_is_a_one_line_error(monkeypatch):
    import huggingface_hub

    def offline(*a, **kw):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nplease check")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(CountError, match=r"^org/x: cannot fetch config.json and safetensors metadata from the hub "
                                         r"\(OSError: We couldn't connect to 'https://huggingface.co' please check\)$"):
        count_variant(variant({"checkpoint": "org/x"}))
