"""The probe job on tiny real transformers models (CPU): every figure, sane orderings, failure paths."""

import threading
import types

import pytest
import torch

from moe_schema import protocol
from workers.errors import JobCancelled, JobError, Unsupported
from workers.probes import job as probe_job

NO_SPECIAL_TOKENS = {"eos_token_id": None, "bos_token_id": None, "pad_token_id": None}


def _loaded(model, session=None, tokenizer=None):
    """What workers.host hands a job: the fields the probe job reads."""
    return types.SimpleNamespace(model=model, tokenizer=tokenizer, variant={"name": "tiny"},
                                 routing_session=session)


def _olmoe(hidden=32, width=16, experts=8, k=2, vocab=128):
    from transformers import OlmoeConfig, OlmoeForCausalLM

    torch.manual_seed(0)
    cfg = OlmoeConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=width, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, num_experts=experts, num_experts_per_tok=k,
                      max_position_embeddings=1024, **NO_SPECIAL_TOKENS)
    return OlmoeForCausalLM(cfg).eval()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def olmoe_tiny():
    return _olmoe()


@pytest.fixture(scope="module")
def olmoe_wide():
    """Experts wide enough (128 -> 2048, 8 of them, 3 MiB each) that they dominate a decode step on CPU."""
    return _olmoe(hidden=128, width=2048, experts=8, k=1)


@pytest.fixture(scope="module")
def llama_tiny():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      **NO_SPECIAL_TOKENS)
    return LlamaForCausalLM(cfg).eval()


def probe(loaded, name, progress=None, cancelled=None, **params):
    return probe_job.run({"kind": "probe", "probe": {"name": name, "params": params}}, loaded, progress,
                         cancelled)["probe"]


SMALL = {
    "latency": dict(prompt_lengths=[8, 16], batch_sizes=[1, 4], context_lengths=[8], new_tokens=3,
                    warmup=1, repeats=2),
    "throughput": dict(batch_sizes=[1, 4], prompt_length=8, context_length=8, new_tokens=3, warmup=1, repeats=2),
    "memory": dict(batch_sizes=[1, 2], context_lengths=[16]),
    "routing": dict(batch_sizes=[1, 4], prompt_length=8, new_tokens=3),
}
TIMED_KEYS = ["ms_p50", "ms_p90", "ms_p95", "ms_p99", "ms_mean", "ms_std", "tokens_per_s", "roofline_ms",
              "measured_over_roofline", "experts_touched", "experts_touched_uniform", "bytes", "flops"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_probe_gives_every_figure(olmoe_tiny, name):
    calls = []
    result = probe(_loaded(olmoe_tiny), name, progress=lambda d, t, note="": calls.append((d, t)), **SMALL[name])
    rows = result["rows"]
    assert result["name"] == name and result["params"]["batch_sizes"] == SMALL[name]["batch_sizes"]
    assert result["experts_implementation"] == olmoe_tiny.config._experts_implementation == "grouped_mm"
    assert result["compile"] == "none" and result["device"]["type"] == "cpu"
    assert calls and calls[-1][0] == calls[-1][1]
    if name in ("latency", "throughput"):
        assert result["device"]["bandwidth_gbs"] > 0 and result["device"]["tflops"] > 0
        assert {r["phase"] for r in rows} == {"prefill", "decode"}
        for r in rows:
            for key in TIMED_KEYS:
                assert r[key] is not None and r[key] >= 0, (key, r)
            assert r["ms_p50"] <= r["ms_p90"] <= r["ms_p95"] <= r["ms_p99"]
            assert r["measured_over_roofline"] == pytest.approx(r["ms_p50"] / r["roofline_ms"])
            assert r["n"] == (2 * 3 if r["phase"] == "decode" else 2)
        if name == "latency":
            assert [(r["phase"], r["batch_size"]) for r in rows] == [
                ("prefill", 1), ("prefill", 1), ("decode", 1), ("decode", 4)]
    elif name == "memory":
        for r in rows:
            assert r["weights_bytes"] == sum(p.numel() * 4 for p in olmoe_tiny.parameters()) + sum(
                b.numel() * b.element_size() for b in olmoe_tiny.buffers())
            assert r["kv_cache_bytes"] == r["kv_cache_bytes_analytic"] == 2 * 2 * 32 * 4 * 16 * r["batch_size"]
            assert r["activations_peak_bytes"] is not None and r["activations_method"].startswith("measured")
            assert "computed" in r["weights_method"] and "measured" in r["kv_cache_method"]
    else:
        assert [(r["phase"], r["batch_size"]) for r in rows] == [
            ("prefill", 1), ("decode", 1), ("prefill", 4), ("decode", 4)]
        for r in rows:
            assert 1 <= r["experts_touched"] <= 8 and r["experts_per_token"] == 2.0
            assert len(r["experts_touched_per_layer"]) == 2


def test_routing_counts_are_exact_where_they_can_be(olmoe_tiny):
    rows = probe(_loaded(olmoe_tiny), "routing", batch_sizes=[1, 32], prompt_length=16, new_tokens=4)["rows"]
    by = {(r["phase"], r["batch_size"]): r for r in rows}
    assert by["decode", 1]["experts_touched"] == 2.0  # one token, top-2: exactly two experts per layer
    assert by["decode", 1]["passes"] == 4 and by["decode", 1]["experts_touched_uniform"] == 2.0
    assert by["decode", 32]["experts_touched"] > 2.0  # different sequences touch different experts
    assert by["prefill", 32]["experts_touched"] >= by["prefill", 1]["experts_touched"]
    gates = [layer.mlp.gate for layer in olmoe_tiny.model.layers]
    try:
        for g in gates:
            g.top_k = 8  # every expert for every token
        rows = probe(_loaded(olmoe_tiny), "routing", batch_sizes=[1], prompt_length=4, new_tokens=2)["rows"]
    finally:
        for g in gates:
            g.top_k = 2
    assert all(r["experts_touched"] == 8.0 and r["experts_per_token"] == 8.0 for r in rows)


def test_decode_tokens_per_second_grow_with_batch(olmoe_tiny):
    rows = probe(_loaded(olmoe_tiny), "throughput", batch_sizes=[1, 16], prompt_length=8, context_length=8,
                 new_tokens=4, warmup=1, repeats=3)["rows"]
    decode = {r["batch_size"]: r["tokens_per_s"] for r in rows if r["phase"] == "decode"}
    prefill = {r["batch_size"]: r["tokens_per_s"] for r in rows if r["phase"] == "prefill"}
    # a tiny model's step costs about the same at batch 1 and 16: tokens/s rise well before saturation
    assert decode[16] > 3 * decode[1], decode
    assert prefill[16] > prefill[1], prefill


def test_more_experts_per_token_take_more_time(olmoe_wide):
    gates = [layer.mlp.gate for layer in olmoe_wide.model.layers]
    medians, rows = {1: [], 8: []}, {}
    try:
        for k in (1, 8, 1, 8):  # interleaved rounds: a burst of load from elsewhere hits both
            for g in gates:
                g.top_k = k
            row = probe(_loaded(olmoe_wide), "latency", prompt_lengths=[8], batch_sizes=[1], context_lengths=[8],
                        new_tokens=8, warmup=1, repeats=3)["rows"][1]
            medians[k].append(row["ms_p50"])
            rows[k] = row
    finally:
        for g in gates:
            g.top_k = 1
    assert rows[1]["experts_touched"] == 1.0 and rows[8]["experts_touched"] == 8.0
    assert rows[8]["roofline_ms"] > 4 * rows[1]["roofline_ms"]  # 8x the expert bytes, the rest alike
    assert min(medians[8]) > 1.5 * min(medians[1]), medians  # about 2.5x on a quiet CPU


def test_dense_model_has_no_expert_figures(llama_tiny):
    result = probe(_loaded(llama_tiny), "latency", prompt_lengths=[8], batch_sizes=[2], context_lengths=[8],
                   new_tokens=2, warmup=0, repeats=2, experts_implementation="eager")
    assert result["experts_implementation"] is None
    for r in result["rows"]:
        assert r["experts_touched"] is None and r["roofline_ms"] > 0 and r["tokens_per_s"] > 0
    with pytest.raises(Unsupported, match="routing probe: this model has no MoE blocks"):
        probe(_loaded(llama_tiny), "routing", batch_sizes=[1], prompt_length=4, new_tokens=1)


def test_experts_implementation_is_used_recorded_and_restored(olmoe_tiny):
    result = probe(_loaded(olmoe_tiny), "routing", batch_sizes=[1], prompt_length=4, new_tokens=1,
                   experts_implementation="eager")
    assert result["experts_implementation"] == "eager"
    assert olmoe_tiny.config._experts_implementation == "grouped_mm"
    with pytest.raises(Unsupported, match="experts_implementation='nonesuch'"):
        probe(_loaded(olmoe_tiny), "routing", batch_sizes=[1], prompt_length=4, experts_implementation="nonesuch")
    assert olmoe_tiny.config._experts_implementation == "grouped_mm"


def test_decode_on_a_non_causal_routing_session_is_unsupported(olmoe_tiny):
    session = types.SimpleNamespace(causal=False, name="expert_choice")
    with pytest.raises(Unsupported, match="probe 'latency' decodes, but routing expert_choice is not causal") as e:
        probe(_loaded(olmoe_tiny, session), "latency", **SMALL["latency"])
    assert e.value.code == protocol.UNSUPPORTED
    # prefill-only probes still run
    rows = probe(_loaded(olmoe_tiny, session), "routing", batch_sizes=[2], prompt_length=4, new_tokens=0)["rows"]
    assert [r["phase"] for r in rows] == ["prefill"]
    assert probe(_loaded(olmoe_tiny, session), "memory", batch_sizes=[1], context_lengths=[4])["rows"]


def test_bad_jobs_fail_with_clear_errors(olmoe_tiny):
    with pytest.raises(JobError, match=r"probe\.batch_sizes\[0\]: must be a positive int, got -1") as e:
        probe(_loaded(olmoe_tiny), "latency", batch_sizes=[-1])
    assert e.value.code == protocol.INVALID_PARAMS
    with pytest.raises(JobError, match="'probe' must be {name, params}"):
        probe_job.run({"kind": "probe"}, _loaded(olmoe_tiny))
    with pytest.raises(Unsupported, match="compile='graphs' needs a CUDA device"):
        probe(_loaded(olmoe_tiny), "latency", compile="graphs", **SMALL["latency"])
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(JobCancelled):
        probe(_loaded(olmoe_tiny), "throughput", cancelled=cancelled, **SMALL["throughput"])


def test_suite_device_peaks_set_the_roofline(olmoe_tiny):
    result = probe(_loaded(olmoe_tiny), "latency", prompt_lengths=[8], batch_sizes=[1], context_lengths=[8],
                   new_tokens=2, warmup=0, repeats=1, device_peaks={"bandwidth_gbs": 1.0, "tflops": 1.0})
    assert result["device"]["source"] == "suite" and result["device"]["bandwidth_gbs"] == 1.0
    decode = result["rows"][1]
    assert decode["roofline_memory_ms"] == pytest.approx(decode["bytes"] / 1e9 * 1e3)


def test_prompts_come_from_the_tokenizer_when_it_fits(olmoe_tiny):
    from workers.probes.shape import shape_of
    from workers.engines.transformers.steps import TransformersProbeContext as ProbeContext

    def byte_tokenizer(text):
        return {"input_ids": [b % 128 for b in text.encode()]}

    ctx = ProbeContext(olmoe_tiny, byte_tokenizer, shape_of(olmoe_tiny), None, "none", 0, None, None)
    ids = ctx.prompts(3, 20)
    assert ids.shape == (3, 20) and len({tuple(r.tolist()) for r in ids}) == 3
    assert ids[0].tolist() == byte_tokenizer("The committee met on")["input_ids"]


def test_memory_sees_activations_of_a_large_prefill(olmoe_wide):
    row = probe(_loaded(olmoe_wide), "memory", batch_sizes=[8], context_lengths=[512])["rows"][0]
    # the experts' gate/up output alone is 4096 tokens x 4096 x 4 bytes = 64 MiB
    assert row["activations_peak_bytes"] > 4 * 2**20, row
    assert row["peak_bytes"] == row["weights_bytes"] + row["kv_cache_bytes"] + row["activations_peak_bytes"]


def test_with_routing_strategies_installed(olmoe_tiny):
    from workers.routing.apply import apply

    session = apply(olmoe_tiny, {"name": "topk", "params": {"k": 1}})
    try:
        rows = probe(_loaded(olmoe_tiny, session), "routing", batch_sizes=[1], prompt_length=8, new_tokens=2)["rows"]
    finally:
        session.restore()
    assert all(r["experts_per_token"] == 1.0 for r in rows)
    assert [r["experts_touched"] for r in rows if r["phase"] == "decode"] == [1.0]

    session = apply(olmoe_tiny, {"name": "expert_choice", "params": {}})
    try:
        assert session.causal is False
        with pytest.raises(Unsupported, match="not causal"):
            probe(_loaded(olmoe_tiny, session), "throughput", **SMALL["throughput"])
        rows = probe(_loaded(olmoe_tiny, session), "routing", batch_sizes=[2], prompt_length=8,
                     new_tokens=0)["rows"]
        assert rows[0]["experts_touched"] >= 1
    finally:
        session.restore()
