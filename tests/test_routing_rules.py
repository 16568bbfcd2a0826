"""The routing strategies' rules, exactly, on hand-set router logits.

Most tests use a real ``RoutedGate`` around a real OLMoE router whose weight is the identity, so
the hidden states ARE the router logits and every expected route can be worked out by hand. The
rest route a tiny OLMoE model (bfloat16 included) through ``apply``. Everything is tiny: no test
loads a checkpoint.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import transformers
from transformers import MixtralConfig, OlmoeConfig, OlmoeForCausalLM
from transformers.models.mixtral.modeling_mixtral import MixtralTopKRouter
from transformers.models.olmoe.modeling_olmoe import OlmoeTopKRouter

from moe_schema.routing import config_from_spec
from workers.moe_blocks import CANONICAL
from workers.routing.apply import apply, find_moe_blocks
from workers.routing.gate import RoutedGate, RoutingContext, _returns_float32_weights, gate_class

transformers.logging.set_verbosity_error()
pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB, EXPERTS, K = 96, 8, 2  # the tiny model: its hidden size (32) differs from its vocabulary


# ---------------------------------------------------------------- helpers


def router(num_experts: int, top_k: int = 2, norm: bool = False) -> OlmoeTopKRouter:
    """A real OLMoE router with an identity weight: router logits == hidden states."""
    r = OlmoeTopKRouter(OlmoeConfig(hidden_size=num_experts, num_experts=num_experts,
                                    num_experts_per_tok=top_k, norm_topk_prob=norm))
    with torch.no_grad():
        r.weight.copy_(torch.eye(num_experts))
    return r


def make_gate(num_experts=4, top_k=2, norm=False, position=0, experts=None, strategy=None, original=None):
    original = original if original is not None else router(num_experts, top_k, norm)
    experts = experts if experts is not None else nn.Module()  # no config: the fill-in path
    return gate_class(type(original))(original, experts, strategy, RoutingContext(), position, position)


def build(name: str, gates, model=None, **params):
    """The torch strategy for ``name``, set up on ``gates`` (as ``apply`` does)."""
    strategy = config_from_spec({"name": name, "params": params}).build()
    strategy.setup(SimpleNamespace(gates=gates, model=model, tokenizer=None))
    strategy.reset()
    return strategy


def logits_of(probs) -> torch.Tensor:
    """Router logits whose softmax is ``probs`` (rows summing to 1)."""
    return torch.tensor(probs, dtype=torch.float32).log()


def used(index, num_experts):
    return [[int(i) for i in row if i < num_experts] for row in index]


def tiny_olmoe(dtype=torch.float32):
    torch.manual_seed(0)
    model = OlmoeForCausalLM(OlmoeConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=64, num_experts_per_tok=K, bos_token_id=None, eos_token_id=None,
        pad_token_id=None, intermediate_size=16, num_experts=EXPERTS)).eval()
    with torch.no_grad():  # peaky routers, as in test_routing
        for block in find_moe_blocks(model):
            block.router.weight.mul_(20)
    return model.to(dtype)


@pytest.fixture(scope="module")
def model():
    return tiny_olmoe()


@pytest.fixture(scope="module")
def model_bf16():
    return tiny_olmoe(torch.bfloat16)


@pytest.fixture
def olmoe(model):
    yield model
    apply(model, None).restore()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(0))


def first_layer_routes(model, ids, **kw):
    """(router logits of MoE layer 0, [(index, weights) per MoE layer]) for one forward."""
    seen = {}
    hooks = [b.module.experts.register_forward_pre_hook(
        lambda m, args, pos=pos: seen.__setitem__(pos, (args[1].clone(), args[2].clone())))
        for pos, b in enumerate(find_moe_blocks(model))]
    try:
        with torch.no_grad():
            out = model(input_ids=ids, output_router_logits=True, **kw)
    finally:
        for h in hooks:
            h.remove()
    return out.router_logits[0], [seen[p] for p in sorted(seen)]


# every strategy, with the parameters its test routes it under
EVERY = {
    "topk": {"k": 2},
    "topp": {"p": 0.9},
    "random": {"seed": 1},
    "hash": {"k": 2},
    "capacity": {"capacity_factor": 8.0},
    "expert_choice": {"capacity_factor": 2.0},  # each expert takes half the tokens
    "prune": {"experts": [0, 5]},
    "aux_free": {},
}


# ---------------------------------------------------------------- every strategy through a model


@pytest.mark.parametrize("name", list(EVERY))
def test_every_strategy_renormalises_when_asked_in_the_checkpoint_dtype(model_bf16, ids, name):
    """OLMoE does not renormalise its top-k weights; ``renormalize: true`` must, in bfloat16 (the
    dtype OLMoE hands its experts), and the router logits the aux loss reads are the router's own."""
    native_logits, _ = first_layer_routes(model_bf16, ids)
    session = apply(model_bf16, {"name": name, "params": {**EVERY[name], "renormalize": True}})
    try:
        logits, routes = first_layer_routes(model_bf16, ids)
        assert torch.equal(logits, native_logits)
        for index, weights in routes:
            assert weights.dtype == torch.bfloat16
            sums = weights.float().masked_fill(index >= EXPERTS, 0.0).sum(dim=1)
            sums = sums[(index < EXPERTS).any(dim=1)]  # tokens that kept an expert
            assert sums.numel() and torch.allclose(sums, torch.ones_like(sums), atol=1e-2), (name, sums)
        apply(model_bf16, {"name": name, "params": {**EVERY[name], "renormalize": False}})
        for index, weights in first_layer_routes(model_bf16, ids)[1]:
            sums = weights.float().masked_fill(index >= EXPERTS, 0.0).sum(dim=1)
            assert (sums < 0.99).any(), (name, sums)  # the raw probabilities of the chosen experts
    finally:
        session.restore()


@pytest.mark.parametrize("name,params,what", [
    ("topk", {"k": 9}, "'topk'"),
    ("topp", {"p": 0.5, "min_k": 9}, "'topp' (min_k)"),
    ("random", {"k": 9}, "'random'"),
    ("hash", {"k": 9}, "'hash'"),
    ("capacity", {"k": 9}, "'capacity'"),
    ("aux_free", {"k": 9}, "'aux_free'"),
])
def test_a_k_above_the_expert_count_is_refused_naming_the_strategy(olmoe, name, params, what):
    message = f"routing strategy {what}: k=9 exceeds the 8 experts of MoE layer 0"
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        apply(olmoe, {"name": name, "params": params})
    assert not any(isinstance(b.router, RoutedGate) for b in find_moe_blocks(olmoe))  # restored


# ---------------------------------------------------------------- topk and topp


def test_topk_picks_the_k_most_probable_and_renormalises_as_told():
    gate = make_gate(4, norm=False)
    hidden = logits_of([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4]])
    routed = build("topk", [gate], k=2).route(gate, hidden)
    assert routed.index.tolist() == [[0, 1], [3, 2]] and torch.equal(routed.logits, hidden)
    assert torch.allclose(routed.weights, torch.tensor([[0.5, 0.3], [0.4, 0.3]]))
    renormalised = build("topk", [gate], k=2, renormalize=True).route(gate, hidden).weights
    assert torch.allclose(renormalised, torch.tensor([[0.625, 0.375], [4 / 7, 3 / 7]]))
    norm_gate = make_gate(4, norm=True)  # a checkpoint that renormalises: None follows it, False does not
    assert torch.allclose(build("topk", [norm_gate], k=2).route(norm_gate, hidden).weights, renormalised)
    raw = build("topk", [norm_gate], k=2, renormalize=False).route(norm_gate, hidden).weights
    assert torch.allclose(raw, torch.tensor([[0.5, 0.3], [0.4, 0.3]]))


def test_topp_keeps_experts_until_the_mass_before_them_reaches_p():
    gate = make_gate(4)
    even = torch.tensor([[0.0, 0.0, -1e4, -1e4]])  # probabilities 0.5, 0.5, 0, 0 exactly
    routed = build("topp", [gate], p=0.5).route(gate, even)
    assert routed.padded and len(used(routed.index, 4)[0]) == 1  # the first expert alone reaches 0.5
    assert len(used(build("topp", [gate], p=0.6).route(gate, even).index, 4)[0]) == 2
    # p = 1 keeps every expert up to max_k, even those of probability 0
    assert sorted(used(build("topp", [gate], p=1.0).route(gate, even).index, 4)[0]) == [0, 1, 2, 3]
    assert len(used(build("topp", [gate], p=1.0, max_k=3).route(gate, even).index, 4)[0]) == 3
    # never fewer than min_k
    peaked = logits_of([[0.97, 0.01, 0.01, 0.01]])
    assert used(build("topp", [gate], p=0.1).route(gate, peaked).index, 4) == [[0]]
    assert len(used(build("topp", [gate], p=0.1, min_k=3).route(gate, peaked).index, 4)[0]) == 3
    # most probable first: 0.4, 0.3 reach 0.6; the rest are empty slots at weight 0
    mixed = build("topp", [gate], p=0.6).route(gate, logits_of([[0.1, 0.3, 0.2, 0.4]]))
    assert mixed.index.tolist() == [[3, 1, 4, 4]]
    assert torch.allclose(mixed.weights, torch.tensor([[0.4, 0.3, 0.0, 0.0]]))


# ---------------------------------------------------------------- capacity


def test_capacity_serves_the_first_tokens_and_drops_the_rest_at_weight_zero():
    gate = make_gate(2, top_k=1)
    hidden = logits_of([[0.9, 0.1]] * 4)  # all four want expert 0; capacity ceil(1 * 1 * 4 / 2) = 2
    routed = build("capacity", [gate]).route(gate, hidden)
    assert torch.equal(routed.logits, hidden)
    assert routed.index.tolist() == [[0], [0], [2], [2]]  # 2 == num_experts: dropped
    assert torch.allclose(routed.weights, torch.tensor([[0.9], [0.9], [0.0], [0.0]]))
    assert routed.dropped.tolist() == [0, 0, 1, 1] and routed.requested == 1 and routed.padded
    # a factor of 1.5 seats three (ceil(3.0)); the kept weights are not renormalised
    assert build("capacity", [gate], capacity_factor=1.5).route(gate, hidden).index.tolist() == [[0], [0], [0], [2]]


def test_capacity_gives_padding_no_seat_and_sizes_itself_on_real_tokens():
    gate = make_gate(2, top_k=1)
    gate.context.attention_mask = torch.tensor([[0, 0, 1, 1, 1, 1]])  # left padding, 4 real tokens
    hidden = logits_of([[0.9, 0.1]] * 6)
    routed = build("capacity", [gate]).route(gate, hidden)
    # capacity ceil(4 / 2) = 2: the first two real tokens get expert 0, the padding takes no seat
    assert routed.index[2:].tolist() == [[0], [0], [2], [2]]
    assert routed.dropped[2:].tolist() == [0, 0, 1, 1]


# ---------------------------------------------------------------- expert choice


def test_expert_choice_each_expert_takes_its_best_tokens():
    gate = make_gate(3, top_k=1)
    # capacity ceil(1 * 1 * 3 / 3) = 1: experts 0 and 1 both take token 0, expert 2 token 1; token 2 gets none
    hidden = logits_of([[0.45, 0.45, 0.10], [0.10, 0.10, 0.80], [0.33, 0.33, 0.34]])
    routed = build("expert_choice", [gate], renormalize=False).route(gate, hidden)
    assert torch.equal(routed.logits, hidden)
    assert routed.index.tolist() == [[0, 1, 3], [2, 3, 3], [3, 3, 3]]  # by id, empty slots last
    assert torch.allclose(routed.weights, torch.tensor([[0.45, 0.45, 0.0], [0.8, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    assert routed.dropped.tolist() == [0, 0, 1] and routed.requested == 1 and routed.padded
    # a factor of 2 lets each expert take two tokens
    wider = build("expert_choice", [gate], capacity_factor=2.0).route(gate, hidden)
    assert used(wider.index, 3) == [[0, 1], [2], [0, 1, 2]] and wider.dropped.tolist() == [0, 0, 0]


def test_expert_choice_never_picks_padding_and_sizes_itself_on_real_tokens():
    gate = make_gate(3, top_k=1)
    gate.context.attention_mask = torch.tensor([[1, 1, 1, 0]])
    # the padding token would be experts 0 and 1's best; capacity ceil(3 / 3) = 1 over the 3 real tokens
    hidden = logits_of([[0.45, 0.45, 0.10], [0.10, 0.10, 0.80], [0.33, 0.33, 0.34], [0.49, 0.49, 0.02]])
    routed = build("expert_choice", [gate], renormalize=False).route(gate, hidden)
    assert routed.index.tolist() == [[0, 1, 3], [2, 3, 3], [3, 3, 3], [3, 3, 3]]
    assert routed.dropped.tolist() == [0, 0, 1, 1]


# ---------------------------------------------------------------- state that follows the device


@pytest.mark.parametrize("name,params", [
    ("topk", {"k": 2}), ("topp", {"p": 0.5}), ("capacity", {}), ("expert_choice", {}),
    ("hash", {"k": 2}), ("prune", {"experts": [1]}), ("aux_free", {}),
])
def test_strategy_state_follows_the_hidden_states_to_another_device(name, params):
    """Set up on the CPU, routed where the model runs: per-layer state (hash tables, prune masks,
    aux_free biases, index helpers) moves with the hidden states. The meta device stands in for
    an accelerator here, and mixing it with CPU tensors fails as CUDA would."""
    gate = make_gate(4)
    embeddings = nn.Embedding(10, 3)  # vocabulary 10: the hash table's rows
    model = SimpleNamespace(config=SimpleNamespace(), get_input_embeddings=lambda: embeddings)
    strategy = build(name, [gate], model=model, **params)
    gate.to("meta")
    gate.context.input_ids = torch.zeros(2, 3, dtype=torch.long, device="meta")
    routed = strategy.route(gate, torch.zeros(6, 4, device="meta"))
    assert routed.index.device.type == routed.weights.device.type == "meta"
    if name == "aux_free":
        assert strategy.bias(0).device.type == "meta"
        strategy.load_state({"bias.0": torch.ones(4)})  # a resumed train job's state goes there too
        assert strategy.bias(0).device.type == "meta"


# ---------------------------------------------------------------- hash


def test_hash_tables_are_seeded_and_cover_the_vocabulary(olmoe):
    def table(seed, rng):
        torch.manual_seed(rng)  # the global RNG must not matter
        session = apply(olmoe, {"name": "hash", "params": {"k": 2, "seed": seed}})
        return session.strategy.experts_for(torch.arange(VOCAB), EXPERTS)

    first = table(seed=3, rng=0)
    assert first.shape == (VOCAB, 2)  # one row per token id of the vocabulary (96), not per hidden unit (32)
    assert all(len(set(row)) == 2 and all(0 <= e < EXPERTS for e in row) for row in first.tolist())
    assert torch.equal(table(seed=3, rng=1), first)
    assert not torch.equal(table(seed=4, rng=0), first)


def test_hash_without_token_ids_says_what_it_needs(olmoe):
    apply(olmoe, {"name": "hash", "params": {"k": 2}})
    message = ("routing strategy 'hash' needs the input token ids, and this forward gave none "
               "(inputs_embeds?) or of another shape")
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"), torch.no_grad():
        olmoe(inputs_embeds=torch.zeros(1, 3, 32))


# ---------------------------------------------------------------- random


def test_random_layers_draw_from_their_own_seeded_generators():
    gates = [make_gate(8, position=0), make_gate(8, position=1)]
    hidden = torch.zeros(5, 8)
    strategy = build("random", gates, seed=3)
    alone = strategy.route(gates[1], hidden).index
    strategy.reset()
    strategy.route(gates[0], hidden)  # layer 0 drawing first must not shift layer 1's draws
    assert torch.equal(strategy.route(gates[1], hidden).index, alone)
    # the documented seeding: layer `position` draws from torch's generator seeded seed * 1_000_003 + position
    g = torch.Generator().manual_seed(3 * 1_000_003 + 1)
    assert torch.equal(alone, torch.topk(torch.rand((5, 8), generator=g), 2).indices)
    assert not torch.equal(strategy.route(gates[1], hidden).index, alone)  # the stream moves on
    strategy.reset()
    assert torch.equal(strategy.route(gates[1], hidden).index, alone)  # reset starts it again


# ---------------------------------------------------------------- aux_free


def test_aux_free_picks_up_the_bias_a_trained_checkpoint_saved(olmoe, tmp_path):
    from safetensors.torch import save_file

    saved = {"bias.0": torch.arange(8.0) / 10, "bias.1": -torch.arange(8.0) / 10}
    old_path = olmoe.config._name_or_path
    try:
        olmoe.config._name_or_path = str(tmp_path)
        save_file(saved, str(tmp_path / "routing_state.safetensors"), metadata={"strategy": "aux_free"})
        session = apply(olmoe, {"name": "aux_free"})
        assert torch.equal(session.strategy.bias(0), saved["bias.0"])
        assert torch.equal(session.strategy.bias(1), saved["bias.1"])
        save_file(saved, str(tmp_path / "routing_state.safetensors"), metadata={"strategy": "other"})
        session = apply(olmoe, {"name": "aux_free"})  # another strategy's state: start from zero
        assert torch.equal(session.strategy.bias(0), torch.zeros(8))
    finally:
        olmoe.config._name_or_path = old_path


def test_aux_free_load_state_puts_back_what_state_returned():
    gates = [make_gate(4, position=0), make_gate(4, position=1)]
    model = SimpleNamespace(config=SimpleNamespace())
    strategy = build("aux_free", gates, model=model)
    tensors = {"bias.0": torch.tensor([0.1, 0.0, -0.1, 0.2]), "bias.1": torch.tensor([0.0, 0.3, 0.0, 0.0])}
    strategy.load_state(tensors)
    assert torch.equal(strategy.bias(0), tensors["bias.0"]) and torch.equal(strategy.bias(1), tensors["bias.1"])
    assert {k: v.tolist() for k, v in strategy.state().items()} == {k: v.tolist() for k, v in tensors.items()}
    # the bias steers the choice: expert 3's 0.2 lifts it over expert 1 here
    routed = strategy.route(gates[0], logits_of([[0.4, 0.3, 0.1, 0.2]]))
    assert routed.index.tolist() == [[0, 3]]


# ---------------------------------------------------------------- prune


def test_prune_refuses_to_remove_every_expert(olmoe):
    with pytest.raises(ValueError, match="^" + re.escape(
            "routing strategy 'prune' removes every expert of MoE layer 0") + "$"):
        apply(olmoe, {"name": "prune", "params": {"experts": list(range(EXPERTS))}})


def test_prune_calibration_counts_add_up_over_forwards():
    """Counts on the calibration pass are the native routes' tokens per expert, summed over every
    forward (unused experts count 0)."""
    gate = make_gate(4, top_k=2)
    strategy = build("prune", [gate], experts=[3])
    strategy._calibrating, strategy._counts = True, {0: torch.zeros(4, dtype=torch.long)}
    hidden = logits_of([[0.5, 0.3, 0.1, 0.1], [0.2, 0.6, 0.1, 0.1], [0.6, 0.2, 0.1, 0.1]])
    routed = strategy.route(gate, hidden)
    assert torch.equal(routed.logits, hidden) and routed.index.tolist() == [[0, 1], [1, 0], [0, 1]]
    strategy.route(gate, hidden)
    assert strategy._counts[0].tolist() == [6, 6, 0, 0]


def test_prune_routes_among_the_kept_experts_only():
    gate = make_gate(4, top_k=2)
    strategy = build("prune", [gate], experts=[0])
    routed = strategy.route(gate, logits_of([[0.7, 0.1, 0.15, 0.05]]))
    assert routed.index.tolist() == [[2, 1]]
    # removed experts have probability 0: the kept ones share the whole mass
    assert torch.allclose(routed.weights, torch.tensor([[0.5, 1 / 3]]))


# ---------------------------------------------------------------- the gate


def test_routing_context_reads_the_mask_of_this_batch_only():
    context = RoutingContext()
    assert context.token_ids(3) is None and context.token_mask(3) is None
    context.attention_mask = torch.tensor([1, 0, 1])  # not (batch, seq)
    assert context.token_mask(3) is None
    context.attention_mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    assert context.token_mask(6).tolist() == [False, True, True, True, True, True]
    assert context.token_mask(4).tolist() == [True, True, True, True]  # seq 2: the mask's last 2 columns
    assert context.token_mask(5) is None  # not a whole number of rows
    assert context.token_mask(8) is None  # longer than the mask
    context.input_ids = torch.tensor([[4, 5], [6, 7]])
    assert context.token_ids(4).tolist() == [4, 5, 6, 7] and context.token_ids(3) is None


def test_the_gate_keeps_the_routers_attributes_and_hooks_but_not_its_state():
    original = router(4)
    calls = []
    original.register_forward_pre_hook(lambda m, args: calls.append("pre"))
    original.register_forward_pre_hook(lambda m, args, kwargs: calls.append("pre_kw"), with_kwargs=True)
    gate = make_gate(original=original, strategy=config_from_spec({"name": "native"}).build())
    assert gate.hidden_dim == 4 and gate.top_k == 2 and gate.norm_topk_prob is False
    gate(torch.zeros(3, 4))
    assert calls == ["pre", "pre_kw"]
    gate.register_buffer("scratch", torch.zeros(1))  # the gate's own module state stays its own
    assert "scratch" not in dict(original.named_buffers())


def test_a_router_without_top_k_routes_one_expert():
    class Bare(nn.Module):
        output_order = CANONICAL

        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.eye(4))

    gate = gate_class(Bare)(Bare(), nn.Module(), None, RoutingContext(), 0, 0)
    assert gate.top_k == 1 and gate.num_experts == 4


def test_empty_slots_are_trimmed_then_skipped_or_filled_at_weight_zero():
    index = torch.tensor([[1, 4, 4], [4, 2, 0]])
    weights = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4]])
    filled = make_gate(4)  # experts without a config: the eager fill-in path
    w, i = filled._fit_experts(weights, index)
    assert i.tolist() == [[1, 1], [2, 0]] and torch.allclose(w, torch.tensor([[0.7, 0.0], [0.5, 0.4]]))
    skipping = nn.Module()
    skipping.config = SimpleNamespace(_experts_implementation="harness")  # skips index num_experts
    w, i = make_gate(4, experts=skipping)._fit_experts(weights, index)
    assert i.tolist() == [[1, 4], [2, 0]] and torch.allclose(w, torch.tensor([[0.7, 0.0], [0.5, 0.4]]))
    # one used slot at most: one slot left; a token with none gets expert 0 at weight 0
    w, i = filled._fit_experts(torch.ones(2, 2), torch.tensor([[3, 4], [4, 4]]))
    assert i.tolist() == [[3], [0]] and w.tolist() == [[1.0], [0.0]]
    w, i = filled._fit_experts(torch.ones(0, 3), torch.zeros(0, 3, dtype=torch.long))
    assert i.shape == (0, 3)  # no tokens: nothing to trim


def test_the_gate_learns_whether_the_router_hands_out_float32_weights():
    class Refusing(nn.Module):
        """A router that must not be called."""

        def __init__(self, dtype, device="cpu"):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(4, 4, dtype=dtype, device=device))

        def forward(self, hidden):
            raise AssertionError("called")

    assert _returns_float32_weights(Refusing(torch.float32), CANONICAL) is True  # float32: nothing to ask
    assert _returns_float32_weights(Refusing(torch.bfloat16, "meta"), CANONICAL) is False  # meta: never run
    assert _returns_float32_weights(router(4).to(torch.bfloat16), CANONICAL) is False  # OLMoE casts
    mixtral = MixtralTopKRouter(MixtralConfig(hidden_size=4, num_local_experts=4, num_experts_per_tok=2))
    with torch.no_grad():
        mixtral.weight.copy_(torch.eye(4))
    assert _returns_float32_weights(mixtral.to(torch.bfloat16), CANONICAL) is True  # Mixtral keeps float32
