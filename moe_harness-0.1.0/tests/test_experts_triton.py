"""The fused Triton experts kernels (workers/experts/triton_moe.py), on CPU through Triton's
interpreter (conftest sets TRITON_INTERPRET=1 where there is no CUDA): block layout, parity with the
torch paths on shapes that span several tiles and several blocks per expert, either weight layout,
selection by name in loads and probes, and one-line refusals where the kernels cannot run."""

from __future__ import annotations

import types

import pytest
import torch

pytest.importorskip("triton")

from workers.errors import JobError, Unsupported  # noqa: E402
from workers.experts import TRITON_NAME, register, unsupported  # noqa: E402
from workers.experts import forward as fw  # noqa: E402
from workers.experts import triton_moe  # noqa: E402
from workers.probes import job as probe_job  # noqa: E402


def _experts(hidden: int, width: int, experts: int, k: int, transposed: bool = False):
    """An OlmoeExperts with weights large enough to matter (std 0.2), optionally stored transposed."""
    from transformers import OlmoeConfig
    from transformers.models.olmoe.modeling_olmoe import OlmoeExperts

    cfg = OlmoeConfig(hidden_size=hidden, intermediate_size=width, num_experts=experts, num_experts_per_tok=k)
    module = OlmoeExperts(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        module.gate_up_proj.copy_(torch.randn(module.gate_up_proj.shape, generator=g) * 0.2)
        module.down_proj.copy_(torch.randn(module.down_proj.shape, generator=g) * 0.2)
    if transposed:  # (E, H, 2I) and (E, I, H), as families with is_transposed store them
        module.gate_up_proj = torch.nn.Parameter(module.gate_up_proj.detach().transpose(1, 2).contiguous())
        module.down_proj = torch.nn.Parameter(module.down_proj.detach().transpose(1, 2).contiguous())
        module.is_transposed = True
    return module


EMPTY = 3  # with more than 3 tokens, token 3 has no expert at all


def _routing(tokens: int, k: int, experts: int, seed: int = 1):
    """Top-k routing with sentinel slots: every fifth token gives up its last slot."""
    g = torch.Generator().manual_seed(seed)
    index = torch.stack([torch.randperm(experts, generator=g)[:k] for _ in range(tokens)])
    weights = torch.rand(tokens, k, generator=g)
    index[::5, -1] = experts
    if tokens > EMPTY:
        index[EMPTY, :] = experts
    weights[index == experts] = 0.0
    return index, weights


# --- the block layout ------------------------------------------------------------------------------

@pytest.mark.parametrize("tokens,k,experts", [(1, 8, 64), (64, 8, 64), (70, 2, 4), (5, 2, 8)])
def test_blocks_cover_every_routed_slot_once_and_nothing_else(tokens, k, experts):
    index, _ = _routing(tokens, k, experts)
    ids = index.reshape(-1)
    perm, expert, start, end = triton_moe.block_layout(ids, experts, block_m=16)
    slots = ids.numel()
    assert expert.numel() == -(-slots // 16) + min(slots, experts)  # static: from sizes only
    covered = []
    for e, s, t in zip(expert.tolist(), start.tolist(), end.tolist()):
        assert 0 <= t - s <= 16
        rows = perm[s:t]
        assert (ids[rows] == e).all()  # a block holds one expert's slots
        covered += rows.tolist()
    routed = (ids < experts).nonzero().flatten().tolist()
    assert sorted(covered) == routed  # each routed slot exactly once; sentinels never


def test_block_layout_reads_nothing_on_the_host():
    """On meta tensors any host read fails: the layout (the kernels' grid and inputs) is graph safe."""
    ids = torch.empty(512, dtype=torch.long, device="meta")
    perm, expert, start, end = triton_moe.block_layout(ids, 64)
    assert expert.shape == start.shape == end.shape == (32 + 64,) and perm.shape == (512,)


# --- parity ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("tokens,k,experts,hidden,width", [
    (1, 2, 8, 96, 80),      # decode: one token; hidden and width span two tiles, neither a multiple
    (40, 2, 4, 64, 48),     # 20 slots per expert: more than one block of 16 per expert
    (9, 3, 8, 32, 16),      # tiles wider than the matrices
])
def test_float32_matches_the_torch_paths(tokens, k, experts, hidden, width, transposed):
    module = _experts(hidden, width, experts, k, transposed)
    index, weights = _routing(tokens, k, experts)
    x = torch.randn(tokens, hidden, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = fw.gather_forward(module, x, index, weights)
        out = triton_moe.triton_forward(module, x, index, weights)
    assert ref.abs().max() > 0.1
    if tokens > EMPTY:
        assert torch.equal(out[EMPTY], torch.zeros(hidden))  # the token with no expert gets nothing
    assert (out - ref).abs().max().item() <= 1e-5


def test_bfloat16_matches_within_rounding():
    module = _experts(96, 80, 8, 2).to(torch.bfloat16)
    index, weights = _routing(12, 2, 8)
    x = torch.randn(12, 96, generator=torch.Generator().manual_seed(2)).to(torch.bfloat16)
    with torch.no_grad():
        ref = fw.gather_forward(module.float(), x.float(), index, weights.float())
        out = triton_moe.triton_forward(module.to(torch.bfloat16), x, index, weights.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().max().item() <= 2e-2 * ref.abs().max().item()


def test_forced_through_the_harness_implementation():
    module = _experts(32, 16, 8, 2)
    index, weights = _routing(6, 2, 8)
    x = torch.randn(6, 32)
    calls = []
    original = fw._PATH_FUNCTIONS["triton"]
    fw._PATH_FUNCTIONS["triton"] = lambda *a: calls.append(1) or original(*a)
    try:
        with torch.no_grad():
            fused = fw.triton_experts_forward(module, x, index, weights)
            with fw.force_path("triton"):
                forced = fw.experts_forward(module, x, index, weights)
            with fw.force_path("grouped"):  # the benchmark can compare paths under either name
                grouped = fw.triton_experts_forward(module, x, index, weights)
    finally:
        fw._PATH_FUNCTIONS["triton"] = original
    assert len(calls) == 2 and torch.equal(fused, forced)
    assert (grouped - fused).abs().max().item() <= 1e-5


# --- where the kernels cannot run: one line, before any work ------------------------------------------

def test_unsupported_says_why(monkeypatch):
    module = _experts(32, 16, 8, 2)
    model = torch.nn.Module()  # an MoE block as the families build it: a router beside the experts
    model.gate, model.experts = torch.nn.Linear(32, 8, bias=False), module
    assert triton_moe.supported(module, "cpu") is None  # interpreted here
    assert unsupported(model, TRITON_NAME, "cpu") is None
    monkeypatch.setattr(triton_moe, "INTERPRETED", False)
    assert "need a CUDA device, not cpu" in triton_moe.supported(module, "cpu")
    assert "need a CUDA device, not cpu" in unsupported(model, TRITON_NAME, "cpu")
    assert unsupported(model, "harness", "cpu") is None and unsupported(model, "eager", "cpu") is None
    monkeypatch.setattr(triton_moe, "INTERPRETED", True)
    module.has_bias = True
    assert "experts with biases are not fused" in triton_moe.supported(module, "cpu")
    module.has_bias = False
    module.act_fn = torch.nn.GELU()
    assert "activation GELU is not fused (SiLU only)" in triton_moe.supported(module, "cpu")
    custom = type("GluExperts", (type(module),), {"_apply_gate": lambda self, h: h})
    module.__class__ = custom
    assert "custom gate (GluExperts._apply_gate)" in triton_moe.supported(module, "cpu")
    monkeypatch.setattr(triton_moe, "triton", None)
    assert triton_moe.supported(module, "cpu") == "triton is not installed"
    with pytest.raises(RuntimeError, match="harness experts path 'triton': triton is not installed"):
        triton_moe.triton_forward(module, torch.zeros(1, 32), torch.zeros(1, 2, dtype=torch.long),
                                  torch.zeros(1, 2))


# --- selection by name: loads and probes record what ran -------------------------------------------

OLMOE = {"model_type": "olmoe", "hidden_size": 32, "intermediate_size": 16, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "num_experts": 8, "num_experts_per_tok": 2,
         "max_position_embeddings": 64}


def _variant(impl):
    return {"name": "tiny", "build": {"config": dict(OLMOE), "seed": 0}, "routing": None, "dtype": "float32",
            "trust_remote_code": False, "experts_implementation": impl}


def test_a_variant_loads_with_the_kernels_and_matches_eager(_isolated_home):
    from workers.builds.load import load_model

    model, _, _ = load_model(_variant(TRITON_NAME), "cpu")
    assert model.config._experts_implementation == TRITON_NAME
    ids = torch.randint(0, model.config.vocab_size, (2, 5), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(ids).logits
        model.set_experts_implementation("eager")
        ref = model(ids).logits
    assert (ours - ref).abs().max().item() <= 1e-5


def test_a_variant_that_cannot_take_the_kernels_fails_in_one_line(_isolated_home, monkeypatch):
    from workers.builds.load import load_model

    monkeypatch.setattr(triton_moe, "INTERPRETED", False)
    with pytest.raises(JobError, match=r"variant\.experts_implementation: harness_triton: the Triton kernels "
                                       r"need a CUDA device, not cpu") as e:
        load_model(_variant(TRITON_NAME), "cpu")
    assert "\n" not in str(e.value)


def test_a_probe_runs_with_the_kernels_and_records_them(_isolated_home, monkeypatch):
    from workers.builds.load import load_model

    register()
    model, tok, _ = load_model(_variant(None), "cpu")
    loaded = types.SimpleNamespace(model=model, tokenizer=tok, variant={"name": "tiny"}, routing_session=None)
    job = {"kind": "probe", "probe": {"name": "latency", "params": {
        "prompt_lengths": [4], "batch_sizes": [2], "context_lengths": [4], "new_tokens": 2, "warmup": 0,
        "repeats": 1, "experts_implementation": TRITON_NAME}}}
    result = probe_job.run(job, loaded)["probe"]
    assert result["experts_implementation"] == TRITON_NAME
    assert model.config._experts_implementation != TRITON_NAME  # restored after
    monkeypatch.setattr(triton_moe, "INTERPRETED", False)
    with pytest.raises(Unsupported, match="experts_implementation='harness_triton': the Triton kernels need"):
        probe_job.run(job, loaded)
