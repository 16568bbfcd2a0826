"""The harness's experts implementation (workers/experts): parity with transformers' eager experts on
every MoE family, sentinel slots and zero weights, selection by name, static shapes, torch.compile."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from workers.experts import NAME, PATHS, choose_path, force_path, is_registered, register
from workers.experts import forward as fw
from workers.experts.sentinel import fill_empty_slots

HIDDEN, EXPERTS, TOP_K, WIDTH, VOCAB = 32, 8, 2, 32, 128
FAMILY_CONFIGS = {
    "olmoe": dict(num_experts=EXPERTS, intermediate_size=WIDTH),
    "mixtral": dict(num_local_experts=EXPERTS, intermediate_size=WIDTH),
    "qwen2_moe": dict(num_experts=EXPERTS, moe_intermediate_size=WIDTH, intermediate_size=64,
                      shared_expert_intermediate_size=32),
    "qwen3_moe": dict(num_experts=EXPERTS, moe_intermediate_size=WIDTH, intermediate_size=64),
    "granitemoe": dict(num_local_experts=EXPERTS, intermediate_size=WIDTH),
}
FAMILIES = sorted(FAMILY_CONFIGS)


def tiny_config(family: str, **extra):
    return AutoConfig.for_model(
        family, hidden_size=HIDDEN, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=VOCAB, max_position_embeddings=64, num_experts_per_tok=TOP_K, eos_token_id=None,
        bos_token_id=None, pad_token_id=None, **FAMILY_CONFIGS[family], **extra)


@pytest.fixture(scope="module")
def models():
    """One tiny float32 model per family (2 layers, 8 experts, top-2), random weights, seed 0."""
    torch.set_num_threads(1)
    register()
    built = {}
    for family in FAMILIES:
        torch.manual_seed(0)
        built[family] = AutoModelForCausalLM.from_config(tiny_config(family)).eval()
    return built


@pytest.fixture(scope="module")
def input_ids():
    return torch.randint(0, VOCAB, (3, 6), generator=torch.Generator().manual_seed(1))


def logits(model, ids, implementation: str, path: str | None = None) -> torch.Tensor:
    model.set_experts_implementation(implementation)
    try:
        with torch.no_grad():
            if path is None:
                return model(ids).logits.float()
            with force_path(path):
                return model(ids).logits.float()
    finally:
        model.set_experts_implementation("eager")


def experts_of(model):
    from workers.moe_blocks import find_moe_blocks

    return find_moe_blocks(model)[0].experts


# --- parity ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", FAMILIES)
def test_float32_logits_match_eager(models, input_ids, family, path):
    model = models[family]
    ref = logits(model, input_ids, "eager")
    out = logits(model, input_ids, NAME, path)
    assert ref.abs().max() > 0.01  # a model that computes something
    assert (out - ref).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_bfloat16_logits_match_eager(models, input_ids, family):
    model = models[family].to(torch.bfloat16)
    try:
        ref = logits(model, input_ids, "eager")
        for path in PATHS:
            out = logits(model, input_ids, NAME, path)
            err = (out - ref).abs().max().item() / ref.abs().max().item()
            assert err <= 2e-2, f"{family} {path}: relative error {err:.3g}"
    finally:
        model.to(torch.float32)


def test_default_path_on_cpu_is_used_by_the_model(models, input_ids, monkeypatch):
    """Selected by name, the model runs our forward (grouped_mm's CPU kernel here), every MoE layer."""
    calls = []
    grouped = fw._PATH_FUNCTIONS["grouped"]
    monkeypatch.setitem(fw._PATH_FUNCTIONS, "grouped", lambda *a: calls.append(1) or grouped(*a))
    logits(models["olmoe"], input_ids, NAME)
    assert len(calls) == 2


# --- sentinel slots and zero weights ---------------------------------------------------------------

def routed_with_gaps(tokens: int = 5):
    """Routing with sentinel slots (index == E), a token with no expert at all, and weights exactly 0."""
    g = torch.Generator().manual_seed(2)
    index = torch.stack([torch.randperm(EXPERTS, generator=g)[:TOP_K] for _ in range(tokens)])
    weights = torch.rand(tokens, TOP_K, generator=g)
    index[0, 1] = EXPERTS  # one slot empty
    index[1, :] = EXPERTS  # no expert
    index[3, 0] = EXPERTS
    weights[index == EXPERTS] = 0.0
    weights[2, 0] = 0.0  # a real expert at weight 0
    return index, weights


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("family", FAMILIES)
def test_sentinel_slots_and_zero_weights_match_eager(models, family, path):
    experts = experts_of(models[family])
    config = models[family].config
    index, weights = routed_with_gaps()
    x = torch.randn(index.shape[0], HIDDEN, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        config._experts_implementation = "eager"  # the reference: empty slots filled, weight 0
        ref = experts(x, *fill_empty_slots(index, weights, experts.num_experts))
        config._experts_implementation = NAME
        try:
            with force_path(path):
                out = experts(x, index, weights)
        finally:
            config._experts_implementation = "eager"
    assert torch.equal(out[1], torch.zeros(HIDDEN))  # no expert: nothing added
    assert ref[0].abs().max() > 0
    assert (out - ref).abs().max().item() <= 1e-6


def test_sentinel_from_the_router_matches_eager_and_drops_the_expert(models, input_ids):
    """A router that leaves every token's second slot empty: harness == eager, and != the full top-2."""
    model = models["olmoe"]

    filled = {"on": False}  # eager's reference gets the filled form, which every release takes

    def drop_second(module, args, output):
        router_logits, weights, index = output
        index = index.clone()
        index[:, 1] = module.num_experts
        weights = weights.masked_fill(index == module.num_experts, 0.0)
        if filled["on"]:
            index, weights = fill_empty_slots(index, weights, module.num_experts)
        return router_logits, weights, index

    full = logits(model, input_ids, NAME)
    handles = [layer.mlp.gate.register_forward_hook(drop_second) for layer in model.model.layers]
    try:
        filled["on"] = True
        ref = logits(model, input_ids, "eager")
        filled["on"] = False
        for path in PATHS:
            assert (logits(model, input_ids, NAME, path) - ref).abs().max().item() <= 1e-5, path
    finally:
        for h in handles:
            h.remove()
    assert (full - ref).abs().max().item() > 1e-3


# --- static shapes: what CUDA graphs need --------------------------------------------------------

@pytest.mark.parametrize("path", ["gather", "grouped"])
def test_graph_safe_paths_run_on_meta_tensors(path):
    """On meta tensors any read of a value on the host (.item, .tolist, nonzero) fails: these paths have none."""
    config = tiny_config("olmoe")
    from transformers.models.olmoe.modeling_olmoe import OlmoeExperts

    with torch.device("meta"):
        experts = OlmoeExperts(config).to(torch.bfloat16)
        x = torch.empty(5, HIDDEN, dtype=torch.bfloat16)
        index, weights = torch.empty(5, TOP_K, dtype=torch.long), torch.empty(5, TOP_K, dtype=torch.bfloat16)
    out = fw._PATH_FUNCTIONS[path](experts, x, index, weights)
    assert out.shape == (5, HIDDEN) and out.device.type == "meta"


def test_looped_path_is_not_graph_safe():
    """The check above can fail: the CPU path reads counts on the host."""
    config = tiny_config("olmoe")
    from transformers.models.olmoe.modeling_olmoe import OlmoeExperts

    with torch.device("meta"):
        experts = OlmoeExperts(config)
        x, index, weights = torch.empty(5, HIDDEN), torch.empty(5, TOP_K, dtype=torch.long), torch.empty(5, TOP_K)
    with pytest.raises(NotImplementedError):
        fw.looped_forward(experts, x, index, weights)


def test_path_choice_is_static(monkeypatch):
    meta = torch.empty(1, 2048, device="meta", dtype=torch.bfloat16)
    weight = torch.empty(64, 2048, 2048, device="meta", dtype=torch.bfloat16)
    assert choose_path(8, 64, meta, weight) == "grouped"  # decode too: each touched expert read once
    assert choose_path(512, 64, meta, weight) == "grouped"
    monkeypatch.setattr(fw, "GATHER_MAX_SLOTS_PER_EXPERT", 1.0)  # the knob a GPU measurement may raise
    assert choose_path(8, 64, meta, weight) == "gather" and choose_path(512, 64, meta, weight) == "grouped"
    monkeypatch.setattr(fw, "GATHER_MAX_SLOTS_PER_EXPERT", 0.0)
    odd = torch.empty(64, 2050, 2047, device="meta", dtype=torch.bfloat16)
    assert choose_path(512, 64, meta, odd) == "gather"  # strides not 16-byte aligned: no grouped_mm
    assert choose_path(512, 64, meta, weight.float()) == "gather"  # grouped_mm off CPU is bf16 only
    cpu = torch.empty(1, 32)
    assert choose_path(8, 64, cpu, torch.empty(64, 64, 32)) == "grouped"  # CPU: grouped_mm for any T*k
    assert choose_path(8, 64, cpu, torch.empty(64, 66, 33)) == "looped"  # unless strides do not align
    with force_path("grouped"):
        assert choose_path(8, 64, cpu, torch.empty(64, 64, 32)) == "grouped"


# --- bad input ---------------------------------------------------------------------------------------

def test_bad_input_is_one_clear_line(models):
    with pytest.raises(ValueError, match=r"experts path 'fast': unknown; known: gather, grouped, looped, triton"):
        with force_path("fast"):
            pass
    experts = experts_of(models["olmoe"])
    with pytest.raises(ValueError, match=r"harness experts: expected hidden \(T, H\) and index/weights \(T, k\)"):
        fw.experts_forward(experts, torch.zeros(3, HIDDEN), torch.zeros(3, 2, dtype=torch.long), torch.zeros(3, 3))


# --- selection by name --------------------------------------------------------------------------------

def test_from_pretrained_and_set_experts_implementation_on_a_saved_build(_isolated_home, input_ids):
    from workers.builds.materialize import materialize

    register()
    register()  # idempotent
    assert is_registered()
    cfg = {"model_type": "olmoe", "hidden_size": HIDDEN, "intermediate_size": WIDTH, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "num_experts": EXPERTS,
           "num_experts_per_tok": TOP_K, "max_position_embeddings": 64}
    path = materialize({"config": cfg, "seed": 0})
    model = AutoModelForCausalLM.from_pretrained(path, experts_implementation=NAME, dtype=torch.float32).eval()
    assert model.config._experts_implementation == NAME
    ids = input_ids % model.config.vocab_size
    with torch.no_grad():
        ours = model(ids).logits
        model.set_experts_implementation("eager")
        ref = model(ids).logits
        model.set_experts_implementation(NAME)
        again = model(ids).logits
    assert model.get_experts_implementation()[""] == NAME
    assert (ours - ref).abs().max().item() <= 1e-5 and torch.equal(ours, again)
    with pytest.raises(ValueError, match="harness_typo"):
        model.set_experts_implementation("harness_typo")


def test_torch_compile_matches_eager(models, input_ids):
    """Under torch.compile the forward traces without a graph break (the experts module compiles with
    fullgraph=True) and the model (fullgraph=False) matches eager. Dynamo + AOT tracing with the
    aot_eager backend: inductor's C++ code generation would take about a minute on this CPU."""
    torch._dynamo.reset()
    model = models["olmoe"]
    ref = logits(model, input_ids, "eager")
    experts = experts_of(model)
    index, weights = routed_with_gaps()
    x = torch.randn(index.shape[0], HIDDEN, generator=torch.Generator().manual_seed(4))
    model.set_experts_implementation(NAME)
    try:
        with torch.no_grad():
            expected = experts(x, index, weights)
            whole = torch.compile(experts, fullgraph=True, backend="aot_eager")(x, index, weights)
            out = torch.compile(model, fullgraph=False, backend="aot_eager")(input_ids).logits
    finally:
        model.set_experts_implementation("eager")
        torch._dynamo.reset()
    assert (whole - expected).abs().max().item() <= 1e-6
    assert (out - ref).abs().max().item() <= 1e-5
