"""Routing strategies inside vLLM: each MoE layer's router runs the strategy's ``rule``.

vLLM 0.32 routes every fused-MoE layer through a router object (``vllm/model_executor/layers/
fused_moe/router/``; on CPU a ``CPURouter``, held as ``<layer>.mlp.experts.router``). The router
reads its ``custom_routing_function(hidden_states, gating_output, topk, renormalize) -> (weights,
ids)`` on every forward; ``install`` sets it, through ``llm.apply_model`` (the model lives in this
process: the engine runs vLLM with one process), to a function that calls the strategy's
``rule(gate, logits)`` (``workers.routing.base.LogitsRule``: the definition transformers' gates run
too), records the layer's telemetry (``workers.routing.telemetry.LayerCounts``, the transformers
shape), and fills empty slots (``topp``) with the token's first expert at weight 0. vLLM caches
the KV of prompt prefixes computed under the previous routing, so ``install`` resets that cache.

``hash`` (and ``random`` with ``keyed``) needs each token's id: a forward pre-hook on the model's
input embedding keeps the step's flattened ``input_ids`` (one per row of ``gating_output``: vLLM's
model forward sees the scheduled tokens flattened, in the order every layer sees them), which
``gate.token_ids(n)`` returns when the count matches; a pre-hook on the model's forward keeps its
``positions`` the same way (``gate.token_positions(n)``). ``prune`` calibrates by running its text through vLLM under native routing.
The routing function, the hooks and the census's arithmetic are in ``arithmetic`` (torch only).
"""

from __future__ import annotations

import types

import torch

from moe_schema.routing import config_from_spec
from workers.engines.vllm.arithmetic import TokenIds, census_summary, layer_number, routing_function
from workers.errors import Unsupported
from workers.routing.base import LogitsRule
from workers.routing.session import RoutingSession
from workers.routing.telemetry import LayerCounts


class VllmGate:
    """What a ``LogitsRule`` reads of one vLLM MoE layer (the attributes of ``RoutedGate``)."""

    training = False
    weights_in_float32 = True  # vLLM's CPU experts read float32 weights whatever the model's dtype

    def __init__(self, router, layer: int, position: int, context: "TokenIds"):
        self.router = router
        self.layer, self.position = layer, position
        self.num_experts = int(router.global_num_experts)
        self.top_k = int(router.top_k)
        self.norm_topk_prob = bool(router.renormalize)
        self.context = context
        self.counts = LayerCounts(self.num_experts)
        self.census: list | None = None  # probes: (distinct experts, picks, tokens) per forward

    def token_ids(self, n: int) -> torch.Tensor | None:
        return self.context.token_ids(n)

    def token_mask(self, n: int) -> torch.Tensor | None:
        return None  # vLLM schedules no padding tokens into a step on CPU

    def token_positions(self, n: int) -> torch.Tensor | None:
        return self.context.token_positions(n)

    def router_logits(self, hidden):
        raise Unsupported("on vLLM a routing strategy gets the router logits (LogitsRule.rule), not the "
                          "hidden states")

    def native(self, hidden):
        raise Unsupported("on vLLM the checkpoint's router module is not callable; native routing is "
                          "workers.routing.base.native_rule")


def _routers(model) -> list[tuple[str, object]]:
    """``(module name, router)`` of every fused-MoE layer, in model order."""
    return [(name, m.router) for name, m in model.named_modules()
            if hasattr(getattr(m, "router", None), "custom_routing_function")]


def _embedding(model):
    """The input embedding module (vLLM's ``get_input_embeddings`` computes embeddings instead)."""
    for name, module in model.named_modules():
        if name.endswith("embed_tokens") or type(module).__name__ == "VocabParallelEmbedding":
            return module
    raise Unsupported(f"{type(model).__name__}: no input embedding module found (embed_tokens)")


class CalibrationModel:
    """What ``Prune._calibrate`` calls as ``session.model``: the build's meta twin for its shapes,
    and a forward that runs the rows through vLLM (every token prefilled, prefix cache reset)."""

    training = False

    def __init__(self, llm, meta):
        self.llm, self.meta = llm, meta

    def get_input_embeddings(self):
        """The vocabulary size as ``weight.shape[0]``, on the CPU (where calibration ids are made);
        a (vocab, 0) tensor holds no data."""
        vocab = int(self.meta.get_input_embeddings().weight.shape[0])
        return types.SimpleNamespace(weight=torch.empty(vocab, 0))

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def __call__(self, input_ids):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        self.llm.reset_prefix_cache()
        self.llm.generate([TokensPrompt(prompt_token_ids=row) for row in input_ids.tolist()],
                          SamplingParams(max_tokens=1, temperature=0.0), use_tqdm=False)


class VllmRoutingSession(RoutingSession):
    """The shared ``RoutingSession`` over vLLM gates: the same telemetry, reset and causal checks."""

    def __init__(self, llm, meta, config, strategy, gates, context, tokenizer):
        super().__init__(CalibrationModel(llm, meta), config, strategy, gates, context, tokenizer)
        self.llm = llm

    def restore(self) -> None:
        """vLLM's own routing again (no custom routing function, no input-ids hook)."""
        def clear(model):
            for _, router in _routers(model):
                router.custom_routing_function = None
            for hook in getattr(model, "_moe_harness_hooks", []):
                hook.remove()
            model._moe_harness_hooks = []

        self.llm.apply_model(clear)
        self.llm.reset_prefix_cache()
        self.installed = False

    def census(self, on: bool) -> None:
        """Start (``on``) or stop recording the experts each forward touches (the probes' census)."""
        for gate in self.gates:
            gate.census = [] if on else None

    def census_summary(self, skip: int = 0) -> dict | None:
        """``ExpertCensus.summary``'s shape from what the gates recorded, without the first ``skip``
        forwards (a decode's prefill)."""
        return census_summary([g.census for g in self.gates], skip)


def install(llm, meta, strategy, tokenizer=None, previous: VllmRoutingSession | None = None) -> VllmRoutingSession:
    """Install ``strategy`` (a ``StrategyConfig``, or a ``{"name", "params"}`` spec; None: the
    checkpoint's own, as a rule, so telemetry is recorded) in every MoE layer of ``llm``; return the
    session. Replaces ``previous``."""
    if previous is not None and previous.installed:
        previous.restore()
    config = None if strategy is None else config_from_spec(strategy, "variant.routing")
    found = llm.apply_model(_routers)[0]
    if not found:
        if config is not None:
            raise Unsupported(f"model {meta.config.model_type} has no MoE layers: routing strategy "
                              f"{config.label()} cannot be applied")
        return VllmRoutingSession(llm, meta, None, None, [], None, tokenizer)
    config = config or config_from_spec({"name": "native"})
    strategy = config.build()
    if not isinstance(strategy, LogitsRule):
        raise Unsupported(f"routing strategy {config.label()} is not a rule over router logits "
                          f"(workers.routing.base.LogitsRule), so vLLM cannot run it")
    context = TokenIds()
    gates = []
    for position, (name, router) in enumerate(found):
        gates.append(VllmGate(router, layer_number(name, position), position, context))

    def put(model):
        for gate in gates:
            gate.router.custom_routing_function = routing_function(strategy, gate)
        model._moe_harness_hooks = [_embedding(model).register_forward_pre_hook(context.hook),
                                    model.register_forward_pre_hook(context.model_hook, with_kwargs=True)]

    session = VllmRoutingSession(llm, meta, config, strategy, gates, context, tokenizer)
    llm.apply_model(put)
    session.installed = True
    try:
        strategy.setup(session)
    except BaseException:
        session.restore()
        raise
    llm.reset_prefix_cache()  # prefixes cached under the previous routing would keep it
    session.reset()  # calibration passes leave no telemetry behind
    return session
