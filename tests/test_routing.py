"""Routing strategies on tiny real transformers MoE models (olmoe, mixtral, qwen2_moe, qwen3_moe)."""

from __future__ import annotations

import inspect
import warnings

import pytest
import torch

import transformers
from transformers import (GraniteMoeConfig, GraniteMoeForCausalLM, LlamaConfig, LlamaForCausalLM, MixtralConfig,
                          MixtralForCausalLM, OlmoeConfig,
                          OlmoeForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM, Qwen3MoeConfig,
                          Qwen3MoeForCausalLM)

from workers.compat import CACHE_KWARG, cache_kwargs
from workers.errors import Unsupported
from workers.routing.apply import apply, find_moe_blocks, installed
from workers.routing.gate import RoutedGate

transformers.logging.set_verbosity_error()

VOCAB, EXPERTS, K = 96, 8, 2
COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=64, num_experts_per_tok=K, bos_token_id=None, eos_token_id=None,
              pad_token_id=None)
FAMILIES = {
    "olmoe": lambda: OlmoeForCausalLM(OlmoeConfig(**COMMON, intermediate_size=16, num_experts=EXPERTS)),
    "mixtral": lambda: MixtralForCausalLM(MixtralConfig(**COMMON, intermediate_size=16, num_local_experts=EXPERTS)),
    "qwen2_moe": lambda: Qwen2MoeForCausalLM(Qwen2MoeConfig(
        **COMMON, intermediate_size=32, moe_intermediate_size=16, shared_expert_intermediate_size=16,
        num_experts=EXPERTS, norm_topk_prob=True)),
    "qwen3_moe": lambda: Qwen3MoeForCausalLM(Qwen3MoeConfig(
        **COMMON, intermediate_size=32, moe_intermediate_size=16, num_experts=EXPERTS, head_dim=8)),
    "granitemoe": lambda: GraniteMoeForCausalLM(GraniteMoeConfig(
        **COMMON, intermediate_size=16, num_local_experts=EXPERTS)),  # its router is named "router"
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def models():
    """One tiny float32 model per family, in eval mode; tests restore what they install."""
    out = {}
    for i, (family, make) in enumerate(FAMILIES.items()):
        torch.manual_seed(i)
        model = make().eval()
        with torch.no_grad():  # peakier routers than the 0.02-std init, so strategies differ visibly
            for block in find_moe_blocks(model):
                block.router.weight.mul_(20)
        out[family] = model
    yield out


@pytest.fixture
def olmoe(models):
    model = models["olmoe"]
    yield model
    apply(model, None).restore()
    model.eval()


@pytest.fixture(scope="module")
def ids():
    return torch.randint(0, VOCAB, (3, 10), generator=torch.Generator().manual_seed(0))


def logits(model, ids, **kw):
    with torch.no_grad():
        return model(input_ids=ids, **kw).logits


def routes(model, ids):
    """Each MoE layer's (index, weights) as handed to the experts, for one forward."""
    seen = {}
    hooks = [b.module.experts.register_forward_pre_hook(
        lambda m, args, pos=pos: seen.__setitem__(pos, (args[1].clone(), args[2].clone())))
        for pos, b in enumerate(find_moe_blocks(model))]
    try:
        logits(model, ids)
    finally:
        for h in hooks:
            h.remove()
    return [seen[p] for p in sorted(seen)]


# ---------------------------------------------------------------- native and topk


@pytest.mark.parametrize("family", list(FAMILIES))
def test_native_reproduces_stock_forward_and_records_telemetry(models, ids, family):
    model = models[family]
    ref = logits(model, ids)
    session = apply(model, None)
    try:
        assert all(isinstance(b.router, RoutedGate) for b in find_moe_blocks(model))
        assert (logits(model, ids) - ref).abs().max().item() <= 1e-6
        tel = session.telemetry()
        assert tel["strategy"] == "native" and len(tel["layers"]) == 2
        for layer in tel["layers"]:
            assert layer["tokens"] == ids.numel()
            assert sum(layer["tokens_per_expert"]) == ids.numel() * K
            assert layer["experts_per_token_hist"] == {str(K): ids.numel()}
            assert layer["dropped"] == 0 and 0 < layer["entropy"] <= 1 and layer["max_over_mean"] >= 1
        assert tel["summary"]["experts_per_token_mean"] == K and tel["summary"]["drop_rate"] == 0
        session.reset()
        assert session.telemetry()["summary"]["tokens"] == 0
    finally:
        session.restore()
    assert not any(isinstance(b.router, RoutedGate) for b in find_moe_blocks(model))
    assert torch.equal(logits(model, ids), ref)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_topk_with_native_k_equals_native(models, ids, family):
    model = models[family]
    ref = logits(model, ids)
    apply(model, {"name": "topk", "params": {"k": K}})
    try:
        assert (logits(model, ids) - ref).abs().max().item() <= 1e-6
        one = apply(model, {"name": "topk", "params": {"k": 1}})
        assert (logits(model, ids) - ref).abs().max().item() > 1e-4
        assert one.telemetry()["summary"]["experts_per_token_mean"] == 1
    finally:
        apply(model, None).restore()


def test_topk_renormalize_and_k_too_large(olmoe, ids):
    apply(olmoe, {"name": "topk", "params": {"k": 2, "renormalize": True}})
    for _, weights in routes(olmoe, ids):
        assert torch.allclose(weights.sum(-1), torch.ones(weights.shape[0]), atol=1e-6)
    apply(olmoe, {"name": "topk", "params": {"k": 2, "renormalize": False}})
    for _, weights in routes(olmoe, ids):
        assert (weights.sum(-1) < 1).all()
    with pytest.raises(ValueError, match="k=9 exceeds the 8 experts of MoE layer 0"):
        apply(olmoe, {"name": "topk", "params": {"k": 9}})
    assert installed(olmoe) is None and not isinstance(olmoe.model.layers[0].mlp.gate, RoutedGate)


def test_router_logits_still_collected_for_the_aux_loss(ids):
    torch.manual_seed(0)
    model = FAMILIES["mixtral"]().eval()  # fresh: transformers has not hooked its routers yet

    def aux_loss():
        with torch.no_grad():
            return model(input_ids=ids, output_router_logits=True).aux_loss.item()

    session = apply(model, {"name": "topk", "params": {"k": K}})
    routed = aux_loss()
    session.restore()
    stock = aux_loss()
    assert stock > 0 and abs(routed - stock) < 1e-6
    apply(model, {"name": "topk", "params": {"k": 1}})
    with torch.no_grad():
        out = model(input_ids=ids, output_router_logits=True)
    assert len(out.router_logits) == 2 and out.router_logits[0].shape == (ids.numel(), EXPERTS)
    apply(model, None).restore()


def test_training_gradients_reach_the_shared_router_weight(olmoe, ids):
    apply(olmoe, {"name": "topk", "params": {"k": 1}})
    gate = olmoe.model.layers[0].mlp.gate
    assert gate.weight is gate._original.weight
    assert "model.layers.0.mlp.gate.weight" in olmoe.state_dict()
    olmoe.zero_grad()
    olmoe(input_ids=ids, labels=ids).loss.backward()
    assert gate.weight.grad is not None and gate.weight.grad.abs().sum() > 0
    olmoe.zero_grad()


# ---------------------------------------------------------------- dynamic and fixed routes


def test_topp_bounds(olmoe, ids):
    session = apply(olmoe, {"name": "topp", "params": {"p": 1.0}})
    logits(olmoe, ids)
    assert session.telemetry()["summary"]["experts_per_token_mean"] == EXPERTS
    session = apply(olmoe, {"name": "topp", "params": {"p": 1e-6}})
    logits(olmoe, ids)
    assert session.telemetry()["summary"]["experts_per_token_mean"] == 1
    session = apply(olmoe, {"name": "topp", "params": {"p": 1e-6, "min_k": 3}})
    logits(olmoe, ids)
    assert session.telemetry()["summary"]["experts_per_token_mean"] == 3
    session = apply(olmoe, {"name": "topp", "params": {"p": 1.0, "max_k": 5}})
    logits(olmoe, ids)
    assert session.telemetry()["summary"]["experts_per_token_mean"] == 5
    session = apply(olmoe, {"name": "topp", "params": {"p": 0.6}})
    logits(olmoe, ids)
    tel = session.telemetry()
    hist = tel["layers"][0]["experts_per_token_hist"]
    assert 1 <= tel["summary"]["experts_per_token_mean"] <= EXPERTS and sum(hist.values()) == ids.numel()
    assert len(hist) > 1  # a dynamic number of experts per token


def test_topp_kept_mass_reaches_p(olmoe, ids):
    apply(olmoe, {"name": "topp", "params": {"p": 0.6, "renormalize": False}})
    (index, weights), _ = routes(olmoe, ids)
    kept = weights.sum(-1)  # unrenormalised weights are the probabilities of the kept experts
    assert (kept >= 0.6 - 1e-6).all()
    # dropping the smallest kept expert of a token with more than one would fall short of p
    used = (weights > 0).sum(-1)
    smallest = torch.where(weights > 0, weights, torch.full_like(weights, 2.0)).min(-1).values
    multi = used > 1
    assert (kept[multi] - smallest[multi] < 0.6).all()


def test_random_is_seeded_and_ignores_the_router(olmoe, ids):
    session = apply(olmoe, {"name": "random", "params": {"seed": 3}})
    first = logits(olmoe, ids)
    assert session.telemetry()["summary"]["experts_per_token_mean"] == K
    apply(olmoe, {"name": "random", "params": {"seed": 3}})
    assert torch.equal(logits(olmoe, ids), first)
    session.reset()  # stale session: reset of the new one below must reseed
    session = apply(olmoe, {"name": "random", "params": {"seed": 3}})
    logits(olmoe, ids)
    session.reset()
    assert torch.equal(logits(olmoe, ids), first)
    apply(olmoe, {"name": "random", "params": {"seed": 4}})
    assert not torch.equal(logits(olmoe, ids), first)
    apply(olmoe, {"name": "random", "params": {"seed": 3, "k": 3}})
    for index, _ in routes(olmoe, ids):
        assert index.shape[1] == 3 and all(len(set(row.tolist())) == 3 for row in index)


def test_keyed_random_gives_a_token_the_same_experts_whatever_the_batch(olmoe, ids):
    apply(olmoe, {"name": "random", "params": {"seed": 3, "keyed": True}})
    whole = routes(olmoe, ids)
    alone = routes(olmoe, ids[1:2])  # the middle row by itself, after other calls: no stream to shift
    for (index, _), (index1, _) in zip(whole, alone):
        assert torch.equal(index.reshape(3, 10, -1)[1], index1.reshape(10, -1))
    # left padding: positions count from the first real token, as the unpadded row's do
    padded = torch.cat([torch.zeros(1, 2, dtype=torch.long), ids[1:2]], dim=1)
    mask = torch.tensor([[0, 0] + [1] * 10])
    seen = {}
    hooks = [b.module.experts.register_forward_pre_hook(
        lambda m, args, pos=pos: seen.__setitem__(pos, args[1].clone()))
        for pos, b in enumerate(find_moe_blocks(olmoe))]
    try:
        logits(olmoe, padded, attention_mask=mask)
    finally:
        for h in hooks:
            h.remove()
    for pos, (index1, _) in enumerate(alone):
        assert torch.equal(seen[pos].reshape(12, -1)[2:], index1.reshape(10, -1))
    apply(olmoe, {"name": "random", "params": {"seed": 4, "keyed": True}})
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(routes(olmoe, ids), whole))
    with pytest.raises(ValueError, match="keyed: true needs each token's id and position"), torch.no_grad():
        olmoe(inputs_embeds=torch.zeros(1, 3, 32))


def test_hash_picks_the_same_experts_for_the_same_token(olmoe):
    batch = torch.tensor([[5, 7, 5, 9, 7, 5], [9, 9, 5, 1, 7, 2]])
    session = apply(olmoe, {"name": "hash", "params": {"k": 2, "seed": 1}})
    flat = batch.reshape(-1)
    for index, _ in routes(olmoe, batch):
        for token in flat.unique():
            rows = index[flat == token]
            assert (rows == rows[0]).all()
        assert torch.equal(index, session.strategy.experts_for(flat, EXPERTS))
    with pytest.raises(ValueError, match="needs the input token ids"):
        with torch.no_grad():
            olmoe(inputs_embeds=olmoe.get_input_embeddings()(batch))


def test_hash_through_generate(olmoe):
    session = apply(olmoe, {"name": "hash"})
    prompt = torch.tensor([[3, 4, 5, 6]])
    with torch.no_grad():
        out = olmoe.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=3,
                             do_sample=False, pad_token_id=0)
    assert out.shape[1] == 7
    assert session.telemetry()["summary"]["tokens"] == 4 + 2  # prompt, then one token per decode step
    session.check_causal("generation")


def test_capacity_drops_at_a_small_factor_and_reports_it(olmoe, ids):
    ref = logits(olmoe, ids)
    session = apply(olmoe, {"name": "capacity", "params": {"capacity_factor": 0.25}})
    logits(olmoe, ids)
    tel = session.telemetry()
    capacity = -(-0.25 * K * ids.numel() // EXPERTS)
    for layer in tel["layers"]:
        assert layer["dropped"] > 0 and max(layer["tokens_per_expert"]) <= capacity
        assert layer["dropped"] + sum(layer["tokens_per_expert"]) == K * ids.numel()
    assert 0 < tel["summary"]["drop_rate"] < 1 and tel["summary"]["experts_per_token_mean"] < K
    session = apply(olmoe, {"name": "capacity", "params": {"capacity_factor": EXPERTS / K}})
    assert torch.allclose(logits(olmoe, ids), ref, atol=1e-6)  # room for everyone: plain top-k
    assert session.telemetry()["summary"]["drop_rate"] == 0


def test_capacity_ignores_padding(olmoe, ids):
    session = apply(olmoe, {"name": "capacity", "params": {"capacity_factor": 0.5}})
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    with torch.no_grad():
        olmoe(input_ids=ids, attention_mask=mask)
    tel = session.telemetry()
    real = int(mask.sum())
    assert tel["summary"]["tokens"] == real
    for layer in tel["layers"]:
        assert layer["dropped"] + sum(layer["tokens_per_expert"]) == K * real


def test_prune_never_routes_to_a_removed_expert(olmoe, ids):
    session = apply(olmoe, {"name": "prune", "params": {"experts": [0, 3, 5]}})
    logits(olmoe, ids)
    for layer in session.telemetry()["layers"]:
        assert [layer["tokens_per_expert"][e] for e in (0, 3, 5)] == [0, 0, 0]
        assert layer["experts_per_token_mean"] == K
    session = apply(olmoe, {"name": "prune", "params": {"experts": [[1, 2, 3, 4, 5, 6, 7], [0]]}})
    (first, _), (second, _) = routes(olmoe, ids)
    assert (first == 0).all() and first.shape[1] == 1 and not (second == 0).any()
    session = apply(olmoe, {"name": "prune", "params": {"fraction": 0.5}})
    removed = [session.strategy.removed(g.position) for g in session.gates]
    assert all(len(r) == EXPERTS // 2 for r in removed)
    assert session.telemetry()["summary"]["tokens"] == 0  # calibration left no telemetry
    logits(olmoe, ids)
    for layer, gone in zip(session.telemetry()["layers"], removed):
        assert all(layer["tokens_per_expert"][e] == 0 for e in gone)
    with pytest.raises(ValueError, match="expert 8 does not exist in MoE layer 0"):
        apply(olmoe, {"name": "prune", "params": {"experts": [8]}})
    with pytest.raises(ValueError, match="3 per-layer lists but the model has 2 MoE layers"):
        apply(olmoe, {"name": "prune", "params": {"experts": [[1], [2], [3]]}})


def test_prune_calibration_removes_the_least_used(olmoe):
    session = apply(olmoe, None)
    from workers.routing.prune import CALIBRATION_TEXT
    ids = [b % VOCAB for b in CALIBRATION_TEXT.encode()]
    ids = (ids * 2)[:256]
    logits(olmoe, torch.tensor([ids[i:i + 128] for i in (0, 128)]))
    counts = [layer["tokens_per_expert"] for layer in session.telemetry()["layers"]]
    session = apply(olmoe, {"name": "prune", "params": {"keep": 6, "calibration_tokens": 256}})
    for position, layer_counts in enumerate(counts):
        gone = session.strategy.removed(position)
        kept = [c for e, c in enumerate(layer_counts) if e not in gone]
        assert len(gone) == 2 and max(layer_counts[e] for e in gone) <= min(kept)


def test_expert_choice_is_refused_for_causal_work(olmoe, ids):
    session = apply(olmoe, {"name": "expert_choice", "params": {"capacity_factor": 1.0}})
    assert session.causal is False
    logits(olmoe, ids)
    for layer in session.telemetry()["layers"]:  # every expert takes exactly its capacity
        assert layer["tokens_per_expert"] == [-(-K * ids.numel() // EXPERTS)] * EXPERTS
    with pytest.raises(Unsupported, match="expert_choice is not causal.*cannot be used for generation"):
        session.check_causal("generation tasks")
    prompt = torch.tensor([[3, 4, 5, 6]])
    with pytest.raises(Unsupported, match="cannot be used for decoding with a KV cache"):
        with torch.no_grad():
            olmoe.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=2, do_sample=False,
                           pad_token_id=0)
    apply(olmoe, {"name": "topk", "params": {"k": 1}}).check_causal("generation")


def _prefilled_cache(model, prompt):
    """A DynamicCache holding ``prompt``'s keys and values (the state of a decode step)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=prompt, **cache_kwargs(cache), use_cache=True)
    return cache


def _decode_with_cache(model, tok, cache, how):
    if how == "positional":  # forward(input_ids, attention_mask, position_ids, <cache>, ...)
        position = list(inspect.signature(model.forward).parameters).index(CACHE_KWARG)
        args = [tok] + [None] * (position - 1) + [cache]
        return model(*args, use_cache=True)
    return model(input_ids=tok, use_cache=True, **{how: cache})


# Each way a KV cache can reach forward on the installed transformers: its own keyword, the old
# keyword where it is still accepted (5.24..5.39, with a FutureWarning), by position, and generate().
CACHE_WAYS = [CACHE_KWARG, "positional"] + (["past_key_values"] if CACHE_KWARG == "cache" else [])


@pytest.mark.parametrize("how", CACHE_WAYS)
def test_expert_choice_is_refused_under_every_cache_spelling(olmoe, how):
    prompt = torch.tensor([[3, 4, 5, 6]])
    cache = _prefilled_cache(olmoe, prompt)  # prefilled under native routing
    apply(olmoe, {"name": "expert_choice", "params": {"capacity_factor": 1.0}})
    with pytest.raises(Unsupported, match="cannot be used for decoding with a KV cache"):
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the old spelling's own deprecation notice
            _decode_with_cache(olmoe, torch.tensor([[7]]), cache, how)


def test_a_causal_strategy_decodes_under_every_cache_spelling(olmoe):
    """The refusal is expert_choice's alone: top-k decodes through each spelling, and a prefill
    (an empty cache) is not a decode step even for expert_choice."""
    prompt = torch.tensor([[3, 4, 5, 6]])
    apply(olmoe, {"name": "topk", "params": {"k": 1}})
    for how in CACHE_WAYS:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            out = _decode_with_cache(olmoe, torch.tensor([[7]]), _prefilled_cache(olmoe, prompt), how)
        assert out.logits.shape[:2] == (1, 1)
    apply(olmoe, {"name": "expert_choice", "params": {"capacity_factor": 1.0}})
    from transformers import DynamicCache
    with torch.no_grad():
        olmoe(input_ids=prompt, use_cache=True, **cache_kwargs(DynamicCache(config=olmoe.config)))


def test_harness_calls_pass_the_cache_without_deprecation_warnings(olmoe):
    """The probes pass the cache under the installed version's name: no FutureWarning from our calls."""
    from transformers import StaticCache

    cache = StaticCache(config=olmoe.config, max_cache_len=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        with torch.no_grad():
            olmoe(input_ids=torch.tensor([[3, 4, 5]]), cache_position=torch.arange(3), use_cache=True,
                  **cache_kwargs(cache))


def test_aux_free_bias_moves_toward_balance(olmoe, ids):
    session = apply(olmoe, {"name": "aux_free", "params": {"gamma": 0.02}})
    logits(olmoe, ids)  # eval mode: the bias stays put
    assert all(session.strategy.bias(g.position).abs().sum() == 0 for g in session.gates)
    before = session.telemetry()
    olmoe.train()
    with torch.no_grad():
        for _ in range(40):
            olmoe(input_ids=ids)
    olmoe.eval()
    session.reset()  # telemetry only: the learned bias stays
    logits(olmoe, ids)
    after = session.telemetry()
    assert after["summary"]["cv"] < 0.7 * before["summary"]["cv"]
    gate, layer = session.gates[0], before["layers"][0]  # the first layer's input does not move
    bias = session.strategy.bias(gate.position)
    load = torch.tensor(layer["tokens_per_expert"], dtype=torch.float)
    relative = bias - bias.mean()
    assert relative[load.argmax()] < 0 < relative[load.argmin()]


# ---------------------------------------------------------------- experts implementations


@pytest.mark.parametrize("spec", [{"name": "topp", "params": {"p": 0.5}},
                                  {"name": "capacity", "params": {"capacity_factor": 0.25}},
                                  {"name": "expert_choice", "params": {"capacity_factor": 0.5}}])
def test_variable_experts_per_token_same_under_every_experts_implementation(olmoe, ids, spec):
    from workers.experts import register
    from workers.experts.sentinel import skips_sentinel

    register()
    apply(olmoe, spec)
    out = {}
    try:
        for impl in ("eager", "grouped_mm", "batched_mm", "harness"):
            olmoe.set_experts_implementation(impl)
            seen = routes(olmoe, ids)
            has_sentinel = any(bool((index == EXPERTS).any()) for index, _ in seen)
            # only the implementations that skip it get the "no expert" index
            assert has_sentinel == skips_sentinel(olmoe.model.layers[0].mlp.experts, impl), impl
            out[impl] = logits(olmoe, ids)
    finally:
        olmoe.set_experts_implementation("grouped_mm")
    for impl in ("grouped_mm", "batched_mm", "harness"):
        assert torch.allclose(out["eager"], out[impl], atol=1e-5), impl


# ---------------------------------------------------------------- apply


def test_dense_model_no_op_and_refusal(ids):
    torch.manual_seed(0)
    dense = LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=4, num_key_value_heads=2, bos_token_id=None,
                                         eos_token_id=None, pad_token_id=None)).eval()
    assert find_moe_blocks(dense) == []
    session = apply(dense, None)
    assert session.telemetry() is None and session.causal
    with pytest.raises(Unsupported, match=r"model llama has no MoE layers: routing strategy topk\(k=1\)"):
        apply(dense, {"name": "topk", "params": {"k": 1}})


def test_apply_replaces_previous_strategy_and_removes_its_hooks(olmoe, ids):
    ref = logits(olmoe, ids)
    hooks = len(olmoe._forward_pre_hooks)
    apply(olmoe, {"name": "topk", "params": {"k": 1}})
    assert len(olmoe._forward_pre_hooks) == hooks + 1
    second = apply(olmoe, {"name": "topk", "params": {"k": K}})
    assert len(olmoe._forward_pre_hooks) == hooks + 1 and installed(olmoe) is second
    assert torch.equal(logits(olmoe, ids), ref)
    second.restore()
    assert len(olmoe._forward_pre_hooks) == hooks and installed(olmoe) is None
    assert type(olmoe.model.layers[0].mlp.gate).__name__ == "OlmoeTopKRouter"


def test_find_moe_blocks_skips_dense_layers():
    torch.manual_seed(0)
    model = Qwen2MoeForCausalLM(Qwen2MoeConfig(**{**COMMON, "num_hidden_layers": 3}, intermediate_size=32,
                                               moe_intermediate_size=16, shared_expert_intermediate_size=16,
                                               num_experts=4, mlp_only_layers=[1]))
    blocks = find_moe_blocks(model)
    assert [(b.layer, b.num_experts, b.top_k) for b in blocks] == [(0, 4, K), (2, 4, K)]
    assert blocks[1].name == "model.layers.2.mlp"
    session = apply(model, None)
    assert [layer["layer"] for layer in session.telemetry()["layers"]] == [0, 2]


def test_a_router_that_returns_the_index_first_is_read_and_answered_in_its_own_order(models, ids):
    """granitemoe in transformers 5.17 returns (index, weights, logits): a block whose router does so
    is found, routed, probed and trained on; the gate answers in that order."""
    import copy

    from workers.moe_blocks import CANONICAL, REVERSED, router_order

    model = copy.deepcopy(models["olmoe"])
    ref = logits(model, ids)
    for layer in model.model.layers:
        router = layer.mlp.gate

        class IndexFirst(type(router)):
            def forward(self, hidden):
                logits_, weights, index = super().forward(hidden)
                return index, weights, logits_

        router.__class__ = IndexFirst

        def forward(hidden_states, _block=layer.mlp):  # the block unpacks in the router's order
            shape = hidden_states.shape
            flat = hidden_states.reshape(-1, shape[-1])
            index, weights, _ = _block.gate(flat)
            return _block.experts(flat, index, weights).reshape(shape)

        layer.mlp.forward = forward
    assert torch.equal(logits(model, ids), ref)  # the rewiring itself changes nothing
    assert router_order(model.model.layers[0].mlp.gate) == REVERSED
    assert router_order(models["olmoe"].model.layers[0].mlp.gate) == CANONICAL
    session = apply(model, None)
    try:
        assert (logits(model, ids) - ref).abs().max().item() <= 1e-6
        assert session.telemetry()["summary"]["experts_per_token_mean"] == K
        apply(model, {"name": "topk", "params": {"k": 1}})
        out = model.model.layers[0].mlp.gate(torch.randn(3, 32))
        assert not out[0].is_floating_point() and out[0].shape == (3, 1) and out[2].shape == (3, EXPERTS)
    finally:
        apply(model, None).restore()

    class TwoOutputs(torch.nn.Module):
        weight = torch.nn.Parameter(torch.zeros(4, 8))

        def forward(self, hidden):
            return hidden, hidden

    with pytest.raises(ValueError, match=r"TwoOutputs: a router returning tuple, not \(logits, weights, index\)"):
        router_order(TwoOutputs())


def test_unknown_strategy_name_lists_the_known_ones(olmoe):
    from moe_schema.check import SchemaError

    with pytest.raises(SchemaError, match=r"^variant\.routing: unknown routing strategy 'topq' \(did you mean 'topp'\?\); "
                                          r"known: .*native"):
        apply(olmoe, {"name": "topq"})


@pytest.mark.parametrize("family", ["olmoe", "mixtral"])
def test_topk_matches_native_in_bfloat16_too(family, ids):
    """Weights reach the experts in the dtype the checkpoint's router uses (float32 for mixtral)."""
    torch.manual_seed(0)
    model = FAMILIES[family]().to(torch.bfloat16).eval()
    ref = logits(model, ids)
    apply(model, {"name": "topk", "params": {"k": K}})
    (_, weights), _ = routes(model, ids)
    assert weights.dtype == (torch.float32 if family == "mixtral" else torch.bfloat16)
    assert torch.equal(logits(model, ids), ref)


def test_load_balance_numbers():
    from workers.routing.telemetry import LayerCounts, load_balance, summarize

    assert load_balance([4, 4, 4, 4]) == {"max_over_mean": 1.0, "cv": 0.0, "entropy": 1.0}
    skewed = load_balance([8, 0, 0, 0])
    assert skewed["max_over_mean"] == 4.0 and abs(skewed["cv"] - 3 ** 0.5) < 1e-12 and skewed["entropy"] == 0.0
    assert load_balance([0, 0]) == {"max_over_mean": None, "cv": None, "entropy": None}
    counts = LayerCounts(4)
    empty = counts.as_dict(3)
    assert empty["layer"] == 3 and empty["tokens"] == 0 and empty["experts_per_token_mean"] is None
    counts.record(torch.tensor([[0, 1], [2, 4], [4, 4]]), torch.tensor([True, True, False]),
                  torch.tensor([0, 1, 2]), 2)
    layer = counts.as_dict(0)
    assert layer["tokens_per_expert"] == [1, 1, 1, 0] and layer["tokens"] == 2
    assert layer["experts_per_token_hist"] == {"1": 1, "2": 1} and layer["experts_per_token_mean"] == 1.5
    assert layer["dropped"] == 1 and layer["drop_rate"] == 0.25
    summary = summarize([layer, empty])
    assert summary["tokens"] == 2 and summary["experts_per_token_mean"] == 1.5 and summary["drop_rate"] == 0.25


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_native_rule_engines_without_router_modules_run_is_the_checkpoints_router(models, family, ids):
    """vLLM runs ``native`` as ``Native.rule`` over the logits; transformers calls the router module.
    Both must pick the same experts with the same weights in every family."""
    from workers.routing.base import native_rule

    model = models[family]
    session = apply(model, None)
    try:
        hidden = torch.randn(7, model.config.hidden_size, generator=torch.Generator().manual_seed(1))
        for gate in session.gates:
            logits, weights, index = gate.native(hidden)
            rule_weights, rule_index = native_rule(gate, logits)
            order, rule_order = index.sort(dim=1), rule_index.sort(dim=1)
            assert torch.equal(order.values, rule_order.values)
            assert torch.allclose(weights.gather(1, order.indices).float(),
                                  rule_weights.gather(1, rule_order.indices).float(), atol=1e-6)
    finally:
        session.restore()
