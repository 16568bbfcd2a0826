"""The vLLM engine's arithmetic without vLLM (workers/engines/vllm/arithmetic.py): the window each
log-likelihood request sends and the score read back, generate_until's sampling, preemptions, the
routing telemetry counted per strategy, and the probes' census. ``tox -e vllm`` runs the same code
through the real engine; these pin it in the default tests, with vLLM's outputs as plain objects."""

from __future__ import annotations

import types

import pytest
import torch

from moe_schema.routing import config_from_spec
from workers.engines.vllm.arithmetic import (TokenIds, census_summary, generation_settings, layer_number,
                                             loglikelihood_rows, preemptions, prompt_logprobs, routing_function,
                                             score)
from workers.engines.vllm.routing import VllmGate

ns = types.SimpleNamespace


def test_a_request_sends_its_window_less_the_last_token_and_scores_the_whole_continuation():
    rows = loglikelihood_rows([(None, [1, 2, 3], [4, 5]), ("k", [9], [8])], max_length=10)
    assert rows == [([1, 2, 3, 4], [4, 5]), ([9], [8])]


def test_a_long_request_is_cut_from_the_left_to_max_length_plus_one_tokens_as_lm_eval_hf_cuts_it():
    # 6 tokens, max_length 4: the last 5 are kept, the prompt is the first 4 of them
    assert loglikelihood_rows([(None, [1, 2, 3, 4], [5, 6])], max_length=4) == [([2, 3, 4, 5], [5, 6])]
    assert loglikelihood_rows([(None, [1, 2, 3, 4], [5, 6])], max_length=5) == [([1, 2, 3, 4, 5], [5, 6])]


def test_prompt_logprobs_are_asked_only_where_the_continuation_reaches_into_the_prompt():
    assert prompt_logprobs([7]) is None and prompt_logprobs([7, 8]) == 0


def _out(prompt_entries: dict[int, tuple[int, float, int]], sampled_token: int, sampled_logprob: dict[int, float],
         prompt_len: int):
    """vLLM's RequestOutput: ``prompt_entries`` {position: (token, logprob, rank)}."""
    plp = [None] * prompt_len
    for position, (token, logprob, rank) in prompt_entries.items():
        plp[position] = {token: ns(logprob=logprob, rank=rank)}
    return ns(prompt_logprobs=plp, outputs=[ns(logprobs=[{t: ns(logprob=v) for t, v in sampled_logprob.items()}],
                                               token_ids=[sampled_token])])


def test_the_score_sums_the_continuations_tokens_in_the_prompt_and_the_sampled_one():
    prompt, cont = [1, 2, 3, 4, 5], [4, 5, 6]  # 4 and 5 are scored in the prompt, 6 at the sampled position
    out = _out({3: (4, -0.5, 1), 4: (5, -0.25, 1)}, 6, {6: -0.125}, len(prompt))
    assert score(prompt, cont, out) == (-0.875, True)


@pytest.mark.parametrize("ranks,sampled,greedy", [((1, 1), 6, True), ((2, 1), 6, False), ((1, 2), 6, False),
                                                  ((1, 1), 7, False)])
def test_a_continuation_is_greedy_only_if_every_token_was_the_models_first_choice(ranks, sampled, greedy):
    prompt, cont = [1, 2, 3, 4, 5], [4, 5, 6]
    out = _out({3: (4, -1.0, ranks[0]), 4: (5, -1.0, ranks[1])}, sampled, {6: -1.0}, len(prompt))
    assert score(prompt, cont, out) == (-3.0, greedy)


def test_a_one_token_continuation_is_scored_at_the_sampled_position_only():
    out = _out({}, 9, {9: -2.0}, 3)
    assert score([1, 2, 3], [9], out) == (-2.0, True)
    assert score([1, 2, 3], [9], _out({}, 8, {9: -2.0}, 3)) == (-2.0, False)


@pytest.mark.parametrize("kwargs,temperature", [
    ({}, 0.0), ({"temperature": 0.0}, 0.0), ({"temperature": 0.7}, 0.7), ({"do_sample": True}, 1.0),
    ({"do_sample": True, "temperature": 0.5}, 0.5), ({"do_sample": False, "temperature": 0.0}, 0.0),
])
def test_generation_is_greedy_unless_the_task_samples(kwargs, temperature):
    settings = generation_settings(kwargs, 32, ["\n\n", ""])
    assert settings["temperature"] == temperature and isinstance(settings["temperature"], float)
    assert settings["max_tokens"] == 32 and settings["stop"] == ["\n\n"]  # an empty stop string is no stop


@pytest.mark.parametrize("kwargs,top_p,top_k", [({}, 1.0, -1), ({"top_p": 0.9, "top_k": 5}, 0.9, 5),
                                                ({"top_p": None, "top_k": 0}, 1.0, -1), ({"top_k": None}, 1.0, -1)])
def test_top_p_and_top_k_unset_or_zero_are_off(kwargs, top_p, top_k):
    settings = generation_settings(kwargs, 1, [])
    assert (settings["top_p"], settings["top_k"]) == (top_p, top_k) and settings["stop"] == []
    assert set(settings) == {"max_tokens", "temperature", "top_p", "top_k", "stop"}


def test_preemptions_count_every_recompute_and_a_missing_figure_as_none():
    outs = [ns(metrics=ns(num_preemptions=2)), ns(metrics=ns(num_preemptions=None)), ns(metrics=ns()),
            ns(metrics=ns(num_preemptions=1))]
    assert preemptions(outs) == 3 and preemptions([]) == 0


def test_token_ids_are_given_only_when_their_count_matches_the_layers_rows():
    context = TokenIds()
    assert context.token_ids(3) is None and context.token_positions(3) is None
    context.hook(None, (torch.tensor([[5, 6, 7]]),))
    assert context.token_ids(3).tolist() == [5, 6, 7] and context.token_ids(2) is None
    context.hook(None, (torch.ones(3, 4),))  # embeddings (floating point) are not ids: the ids stay
    assert context.token_ids(3).tolist() == [5, 6, 7]
    context.hook(None, ())
    assert context.token_ids(3).tolist() == [5, 6, 7]


def test_positions_come_from_the_keyword_or_the_second_argument_and_only_flat():
    context = TokenIds()
    context.model_hook(None, (torch.tensor([1]), torch.tensor([0, 1, 2])), {})
    assert context.token_positions(3).tolist() == [0, 1, 2] and context.token_positions(4) is None
    context.model_hook(None, (), {"positions": torch.tensor([4, 5])})
    assert context.token_positions(2).tolist() == [4, 5]
    context.model_hook(None, (torch.tensor([1]), torch.tensor([[0, 1]])), {})  # batched (2-D): not a step's
    assert context.token_positions(2) is None
    context.model_hook(None, (torch.tensor([1]),), {})
    assert context.token_positions(1) is None


LOGITS = torch.tensor([[4.0, 0, 0, 0], [0, 3.0, 3.0, 0], [1.0, 1.0, 1.0, 1.0]])


def _route(spec: dict):
    router = ns(global_num_experts=4, top_k=2, renormalize=True)
    gate = VllmGate(router, 3, 0, TokenIds())
    gate.census = []
    weights, index = routing_function(config_from_spec(spec).build(), gate)(None, LOGITS, 2, True)
    return gate, weights, index


def test_top_k_routing_counts_k_experts_for_every_token():
    gate, weights, index = _route({"name": "topk", "params": {"k": 2}})
    assert (weights.dtype, index.dtype) == (torch.float32, torch.int32) and index.is_contiguous()
    counts = gate.counts.as_dict(3)
    assert counts["tokens"] == 3 and counts["experts_per_token_hist"] == {"2": 3}
    assert counts["tokens_per_expert"] == [1, 1, 3, 1] and sum(counts["tokens_per_expert"]) == 6
    assert gate.census == [(4, 6, 3)]  # distinct experts, picks, tokens


def test_top_p_routing_counts_only_the_experts_it_picked_and_fills_empty_slots_at_weight_zero():
    gate, weights, index = _route({"name": "topp", "params": {"p": 0.5}})
    counts = gate.counts.as_dict(3)
    assert counts["experts_per_token_hist"] == {"1": 1, "2": 2} and counts["tokens_per_expert"] == [2, 2, 1, 0]
    assert gate.census == [(3, 5, 3)]  # the filled slots are not picks
    assert (index < 4).all()  # vLLM's kernels get a real expert in every slot
    assert index[0].tolist() == [0, 0, 0, 0] and weights[0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert weights.sum(dim=1).tolist() == pytest.approx([1.0, 1.0, 1.0])


def test_without_the_probes_census_no_census_is_recorded():
    router = ns(global_num_experts=4, top_k=2, renormalize=True)
    gate = VllmGate(router, 0, 0, TokenIds())
    routing_function(config_from_spec({"name": "topk", "params": {"k": 1}}).build(), gate)(None, LOGITS, 1, True)
    assert gate.census is None and gate.counts.as_dict(0)["tokens"] == 3


def test_the_census_averages_experts_touched_over_the_forwards_every_layer_recorded():
    layers = [[(4, 6, 3), (2, 2, 1), (2, 2, 1)], [(6, 6, 3), (1, 2, 1)]]
    got = census_summary(layers)  # two forwards in both layers
    assert got == {"experts_touched": (3.0 + 3.5) / 2, "experts_touched_per_layer": [3.0, 3.5],
                   "experts_per_token": 16 / 8, "passes": 2}
    skipped = census_summary(layers, skip=1)  # the prefill left out
    assert skipped == {"experts_touched": 1.5, "experts_touched_per_layer": [2.0, 1.0],
                       "experts_per_token": 2.0, "passes": 1}
    assert census_summary(layers, skip=2) is None and census_summary([]) is None
    assert census_summary([[(1, 1, 1)], None]) is None  # a layer that recorded nothing
    assert census_summary([[(0, 0, 0)]])["experts_per_token"] is None


@pytest.mark.parametrize("name,position,layer", [("model.layers.7.mlp.experts", 0, 7), ("model.layers.12", 3, 12),
                                                 ("model.decoder.mlp", 5, 5), ("model.layers.x.mlp", 2, 2)])
def test_a_routers_layer_is_the_number_in_its_name_else_its_position(name, position, layer):
    assert layer_number(name, position) == layer
