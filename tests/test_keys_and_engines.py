"""What a cached thing is named by, and which engine a variant may run on (moe_schema.hashing,
moe_schema.engines): everything that changes a result changes its key, nothing else does, and an
engine entry is accepted or refused at its boundary with a message naming the place."""

from __future__ import annotations

import hashlib

import pytest

from moe_schema import engines
from moe_schema.check import SchemaError
from moe_schema.hashing import canonical_json, content_hash, model_key

OK_MOE = {"model_type": "qwen3_moe", "hidden_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2,
          "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64, "intermediate_size": 128}
VARIANT = {"name": "moe", "build": {"config": OK_MOE, "seed": 0}, "dtype": "float32", "trust_remote_code": False,
           "experts_implementation": None, "routing": {"name": "topk", "params": {"k": 2}}}


# ---------------------------------------------------------------- the content hash

def test_the_hashed_text_is_sorted_compact_ascii_json():
    """Key order, spacing and non-ASCII spelling do not change a key: one canonical text is hashed."""
    assert canonical_json({"b": 1, "a": [1, "é"]}) == '{"a":[1,"\\u00e9"],"b":1}'
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})


def test_what_json_cannot_hold_is_hashed_as_its_text():
    """A path (or any object) in a spec is hashed by its str, so two specs naming one path share a key."""
    from pathlib import Path

    assert canonical_json({"p": Path("/x/y")}) == '{"p":"/x/y"}'
    assert content_hash({"p": Path("/x/y")}) == content_hash({"p": "/x/y"})


def test_a_key_is_the_first_hex_digits_of_sha256_and_stays_what_it_was():
    """Cached results, builds and corpora are found by these exact names: the digest of the canonical
    text, 16 digits unless asked (job keys take 24). A change here renames every cache entry."""
    want = hashlib.sha256(b'{"a":1}').hexdigest()
    assert content_hash({"a": 1}) == want[:16]
    assert content_hash({"a": 1}, n=24) == want[:24]
    assert content_hash(["x", 1, None]) == "ab34dabd09fbd5b7"  # pinned: a renamed cache would not be found
    assert content_hash({"a": 1}) != content_hash({"a": 2}) and content_hash({"a": 1}) != content_hash({"a": "1"})


# ---------------------------------------------------------------- what a model is cached by

@pytest.mark.parametrize("field, other", [
    ("build", {"config": OK_MOE, "seed": 1}), ("dtype", "bfloat16"), ("trust_remote_code", True),
    ("experts_implementation", "grouped_mm")])
def test_each_ingredient_of_a_loaded_model_changes_its_key(field, other):
    """Another build, dtype, trust_remote_code or experts implementation is another model in memory:
    a worker must not serve one from the other's cache slot."""
    assert model_key({**VARIANT, field: other}) != model_key(VARIANT)


def test_routing_and_name_do_not_change_the_model_key():
    """Routings of one build share one loaded model (the strategy is re-applied on each load)."""
    assert model_key({**VARIANT, "routing": {"name": "topp", "params": {"p": 0.5}}, "name": "x"}) == model_key(VARIANT)


def test_a_transformers_engine_keeps_the_old_key_and_any_other_engine_changes_it():
    """No engine, or transformers spelled out: the names builds always had. vLLM, and vLLM with other
    parameters, are other models; an engine entry with no name counts as transformers."""
    plain = model_key(VARIANT)
    assert model_key({**VARIANT, "engine": {"name": "transformers", "params": {}}}) == plain
    assert model_key({**VARIANT, "engine": {"params": {"x": 1}}}) == plain
    assert model_key({**VARIANT, "engine": "vllm"}) == plain  # not a spec: a checked variant never has it
    vllm = model_key({**VARIANT, "engine": engines.engine_spec("vllm")})
    assert vllm != plain
    assert model_key({**VARIANT, "engine": engines.engine_spec("vllm", {"max_model_len": 64})}) != vllm
    assert plain == content_hash([VARIANT["build"], "float32", False, None])


# ---------------------------------------------------------------- engine parameters at their boundaries

@pytest.mark.parametrize("params, ok", [({"tensor_parallel_size": 1}, True), ({"tensor_parallel_size": 0}, False),
                                        ({"tensor_parallel_size": True}, False), ({"kv_cache_bytes": 1}, True),
                                        ({"kv_cache_bytes": 0}, False), ({"kv_cache_bytes": None}, True),
                                        ({"max_model_len": 1}, True), ({"max_model_len": -5}, False)])
def test_engine_counts_start_at_one_and_a_bool_is_not_a_count(params, ok):
    """1 is the least device count, cache size and sequence length; 0, negatives and ``true`` are refused
    at the parameter's path."""
    if ok:
        assert engines.check_engine("e", {"name": "vllm", "params": params})["params"][next(iter(params))] == \
            next(iter(params.values()))
    else:
        with pytest.raises(SchemaError, match=rf"^e\.params\.{next(iter(params))}: (must be an integer >= 1|expected int), got "):
            engines.check_engine("e", {"name": "vllm", "params": params})


def test_a_missing_engine_name_is_refused_at_the_entry():
    with pytest.raises(SchemaError, match=r"^e: missing 'name'$"):
        engines.check_engine("e", {"params": {}})
    with pytest.raises(SchemaError, match=r"^e\.name: expected an engine name, got int 3"):
        engines.check_engine("e", {"name": 3})


@pytest.mark.parametrize("value, want", [
    (1, 1), ("1", 1), ("7 B", 7), ("2kb", 2000), ("1KiB", 1024), ("0.5 KiB", 512), (" 3 GiB ", 3 << 30),
    ("1.5 TB", 1_500_000_000_000), ("2 bytes", None), ("1.5B", None), ("0", None), (0, None), ("0.4B", None),
    ("2e9", None), ("-1GiB", None), (True, None), (2.0, None), ("1 XB", None)])
def test_a_byte_count_is_whole_and_at_least_one_byte(value, want):
    """Sizes are an int or a number with a unit (k = 1000, Ki = 1024, case-insensitive); a fraction
    of a byte, zero, a negative, scientific notation or an unknown unit is refused at its path."""
    if want is not None:
        assert engines.size_bytes("m.kv", value) == want
    else:
        with pytest.raises(SchemaError, match=r"^m\.kv: (must be a byte count >= 1|expected a (byte count|whole "
                                              r"number of bytes >= 1))"):
            engines.size_bytes("m.kv", value)


def test_the_suites_short_forms_and_where_their_errors_point():
    """A name alone or a map with parameters beside the name; an unknown name is reported at the entry
    when it stands alone and at ``.name`` when parameters sit beside it; a list entry at its index."""
    assert engines.suite_engine("m", {"name": "vllm", "kv_cache_bytes": None})["params"]["kv_cache_bytes"] is None
    assert engines.suite_engine("m", "transformers") == {"name": "transformers", "params": {}}
    with pytest.raises(SchemaError, match=r"^m: unknown engine 'vlm'"):
        engines.suite_engine("m", "vlm")
    with pytest.raises(SchemaError, match=r"^m\.name: unknown engine 'vlm'"):
        engines.suite_engine("m", {"name": "vlm", "tensor_parallel_size": 2})
    with pytest.raises(SchemaError, match=r"^m: missing 'name'"):
        engines.suite_engine("m", {"tensor_parallel_size": 2})
    with pytest.raises(SchemaError, match=r"^m: expected an engine name or a map with 'name', got int 5"):
        engines.suite_engine("m", 5)
    with pytest.raises(SchemaError, match=r"^m\.name: expected an engine name, got int 5"):
        engines.suite_engine("m", {"name": 5})
    with pytest.raises(SchemaError, match=r"^m\.engine\[1\]\.name: unknown engine 'x'"):
        engines.suite_engines("m.engine", ["vllm", {"name": "x", "a": 1}])
    with pytest.raises(SchemaError, match=r"^m\.engine: unknown engine 'x'"):
        engines.suite_engines("m.engine", "x")
    assert [e["name"] for e in engines.suite_engines("m", ["vllm", "transformers"])] == ["vllm", "transformers"]


def test_a_variant_name_shows_only_non_default_engine_parameters():
    """``[vllm]`` with defaults; a changed parameter joins the label; transformers adds nothing."""
    spec = engines.engine_spec("vllm", {"tensor_parallel_size": 1, "kv_cache_bytes": 5})
    assert engines.label(spec) == "[vllm,kv_cache_bytes=5]"
    assert engines.label({"name": "vllm"}) == "[vllm]"


@pytest.mark.parametrize("variant, want", [({}, "transformers"), ({"engine": None}, "transformers"),
                                           ({"engine": {"name": "vllm"}}, "vllm"), ({"engine": {"name": 3}}, "transformers"),
                                           ({"engine": "vllm"}, "transformers"), ("notadict", "transformers")])
def test_a_records_engine_is_its_specs_name_else_transformers(variant, want):
    """Results stored before engines existed read as transformers; a malformed entry too."""
    assert engines.engine_name(variant) == want


# ---------------------------------------------------------------- what vLLM on CPU hosts


def _vllm_build_refusal(config, dtype, family=None):
    """What the registry's one check says of a build on vLLM (None: it runs), the why alone."""
    r = engines.refusal(engines.engine_spec("vllm"), config=config, dtype=dtype, family=family)
    assert r is None or r.what == "build"
    return None if r is None else r.why


def _cpu_refusal(spec):
    """What the registry's one check says of an engine spec on a CPU worker (a build it runs)."""
    r = engines.refusal(spec, config=OK_MOE, dtype="float32", device="cpu")
    assert r is None or r.what == "device"
    return None if r is None else r.why

@pytest.mark.parametrize("dtype, refused", [("float32", False), ("bfloat16", False), ("float16", False),
                                            ("auto", False), ("float64", True), ("int8", True)])
def test_vllm_dtypes(dtype, refused):
    """vLLM's CPU platform runs three dtypes and the checkpoint's own (auto); others are refused by name."""
    why = _vllm_build_refusal(OK_MOE, dtype)
    assert (why is not None) == refused
    if refused:
        assert why == f"dtype {dtype} is not one vLLM runs (float32, bfloat16, float16)"


def test_a_family_vllm_has_no_class_for_is_refused_even_without_a_config():
    """The family comes from the config, else from the argument (a checkpoint's model type)."""
    assert _vllm_build_refusal(None, "float32", "gpt2").startswith("vLLM 0.32 has no model class for family 'gpt2'; "
                                                                     "it loads llama, qwen3,")
    assert _vllm_build_refusal(None, "float32", "llama") is None
    assert _vllm_build_refusal({"model_type": "gpt2"}, "float32", "llama") is not None  # the config's own wins
    assert _vllm_build_refusal({}, "float32", None) is None
    assert _vllm_build_refusal({"model_type": "qwen3_moe", "hidden_size": "x"}, "float32") is None  # its own check


@pytest.mark.parametrize("hidden, heads, refused", [(128, 4, False), (64, 4, True), (512, 2, False), (576, 2, True),
                                                    (2048, 4, False), (1024, 1, True)])
def test_head_sizes_vllms_cpu_attention_takes(hidden, heads, refused):
    """32 and 256 and 512 are head sizes vLLM's CPU attention compiles for; 16, 288 and 1024 are not."""
    why = _vllm_build_refusal({**OK_MOE, "hidden_size": hidden, "num_attention_heads": heads}, "float32")
    assert (why is not None) == refused
    if refused:
        assert why.startswith(f"attention head size {hidden // heads} is not one vLLM's CPU attention takes (32, ")


@pytest.mark.parametrize("lora, rope, refused", [(512, 64, False), (448, 128, False), (512, 32, True), (64, 64, True)])
def test_latent_attention_takes_only_576(lora, rope, refused):
    """DeepSeek's MLA: kv_lora_rank + qk_rope_head_dim must be 576 (the one size the CPU kernels take)."""
    mla = {"model_type": "deepseek_v3", "hidden_size": 128, "num_attention_heads": 4, "kv_lora_rank": lora,
           "qk_rope_head_dim": rope}
    why = _vllm_build_refusal(mla, "float32")
    assert (why is not None) == refused
    if refused:
        assert why == (f"latent attention head size {lora + rope} (kv_lora_rank + qk_rope_head_dim) is not one "
                       f"vLLM's CPU MLA kernels take (576)")


@pytest.mark.parametrize("tp, refused", [(1, False), (2, True)])
def test_a_cpu_worker_hosts_a_build_on_one_device(tp, refused):
    """tensor_parallel_size 1 runs on a CPU worker; 2 needs two devices and is refused, saying so."""
    why = _cpu_refusal(engines.engine_spec("vllm", {"tensor_parallel_size": tp}))
    assert (why is not None) == refused
    if refused:
        assert why == ("tensor_parallel_size 2 needs 2 devices; a CPU worker hosts a build on one "
                       "(tensor_parallel_size 1)")
    assert _cpu_refusal({"name": "vllm", "params": {}}) is None
    assert _cpu_refusal({"name": "transformers", "params": {"tensor_parallel_size": 9}}) is None


def test_an_engine_declared_with_the_decorator_is_found_by_its_name(monkeypatch):
    """``@engine`` registers a spec under its own ``name``: a suite's ``engine: {name: ...}`` finds it."""
    monkeypatch.setattr(engines.ENGINES, "_entries", dict(engines.ENGINES._entries))

    @engines.engine
    class Mine(engines.EngineSpec):
        name = "mine"

    assert engines.ENGINES.get("mine") is Mine and "mine" in engines.ENGINES.names()
    assert engines.engine(engines.Transformers) is engines.Transformers  # the same spec again: no clash


def test_an_engine_refuses_a_rule_of_an_unknown_need_naming_that_need():
    """A strategy from a plugin may state a need no engine knows: the refusal names it as written."""
    import types

    assert engines.Transformers().routing_refusal(types.SimpleNamespace(needs="telepathy")) == \
        "its rule telepathy, and engine transformers does not give it that"


def test_a_bad_engine_parameter_or_key_is_refused_at_its_place_in_the_suite():
    with pytest.raises(SchemaError) as info:
        engines.suite_engine("models[0].engine", {"name": "vllm", "tensor_parallel_size": 0})
    assert str(info.value) == "models[0].engine.tensor_parallel_size: must be an integer >= 1, got 0"
    with pytest.raises(SchemaError) as info:
        engines.check_engine("variant.engine", {"name": "vllm", "params": {}, "bogus": 1})
    assert str(info.value) == "variant.engine.bogus: unknown key; known: name, params"


def test_an_unknown_engine_is_refused_at_the_place_that_names_it():
    for call, where in ((lambda: engines.engine_spec("nope"), "variant.engine.params"),
                        (lambda: engines.params_of("nope", None, "x.params"), "x.params")):
        with pytest.raises(SchemaError) as info:
            call()
        assert str(info.value) == f"{where}: unknown engine 'nope'; known: llamacpp, transformers, vllm"


def test_a_refused_strategy_is_named_by_its_place_among_the_variants_strategies():
    """``harness plan`` points at the strategy an engine cannot run: the second here, not the first."""
    import types

    token = types.SimpleNamespace(needs="token")
    hidden = types.SimpleNamespace(needs="telepathy")
    got = engines.refusal(engines.engine_spec("vllm"), config=None, dtype="float32", strategies=(None, token, hidden))
    assert (got.what, got.index) == ("routing", 2) and got.why.startswith("its rule telepathy, and vLLM calls")
