"""Install a routing strategy in a loaded model: ``apply(model, spec) -> RoutingSession``.

``apply`` first restores the checkpoint's own routers (from any earlier ``apply``), then, on an
MoE model, replaces every MoE block's router (``gate``, or ``router``; see workers.moe_blocks) with a ``RoutedGate`` running the strategy
(``native`` when the spec is None, so every MoE variant records router telemetry). On a dense
model ``apply(model, None)`` changes nothing and a spec is refused.

    session = apply(model, {"name": "topk", "params": {"k": 1}}, tokenizer=tok)
    model(**batch)
    session.telemetry()   # {"layers": [...], "summary": {...}}
    session.restore()     # the stock routers again
"""

from __future__ import annotations

import torch
from torch import nn

from workers.compat import call_cache
from workers.errors import Unsupported
from workers.moe_blocks import find_moe_blocks
from moe_schema.routing import StrategyConfig, config_from_spec
from workers.routing.gate import RoutedGate, RoutingContext, gate_class
from workers.routing.session import RoutingSession

_ACTIVE = "_moe_harness_routing"  # model attribute holding the installed session


def _model_name(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    name = getattr(config, "name_or_path", "") or ""
    kind = getattr(config, "model_type", None) or type(model).__name__
    return f"{name} ({kind})" if name else kind


class ModuleRoutingSession(RoutingSession):
    """A strategy installed in a transformers model's router modules."""

    def restore(self) -> None:
        """Put the checkpoint's own routers back and remove the hooks."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        _restore_gates(self.model)
        if getattr(self.model, _ACTIVE, None) is self:
            self.model.__dict__.pop(_ACTIVE, None)
        self.installed = False


def _restore_gates(model: nn.Module) -> None:
    for block in find_moe_blocks(model):
        if isinstance(block.router, RoutedGate):
            block.set_router(block.router._original)


def _install_transformers_hooks(model: nn.Module) -> None:
    """Let transformers put its output-recording hooks (``router_logits`` for the load-balancing
    loss) on the stock routers now: the gates copy them, and the routers keep them after restore."""
    try:
        from transformers.utils.output_capturing import maybe_install_capturing_hooks
    except ImportError:  # another transformers version: gates still match the router class
        return
    maybe_install_capturing_hooks(model)


def _capture_inputs(model: nn.Module, context: RoutingContext, session: RoutingSession) -> list:
    """Hooks that keep the current batch's input ids and attention mask in ``context`` (and stop a
    non-causal strategy at the first decode step, in case a caller forgot ``check_causal``)."""

    def on_model(module, args, kwargs):
        if not session.causal:
            cache = call_cache(module.forward, args, kwargs)
            if cache is not None and hasattr(cache, "get_seq_length") and cache.get_seq_length() > 0:
                session.check_causal("decoding with a KV cache (generation, decode probes)")
        context.clear()
        mask = kwargs.get("attention_mask")
        context.attention_mask = mask if isinstance(mask, torch.Tensor) else None
        for name in ("position_ids", "cache_position"):
            value = kwargs.get(name)
            setattr(context, name, value if isinstance(value, torch.Tensor) else None)

    def on_embedding(module, args):
        if args and isinstance(args[0], torch.Tensor) and not args[0].is_floating_point():
            context.input_ids = args[0]

    return [
        model.register_forward_pre_hook(on_model, with_kwargs=True),
        model.get_input_embeddings().register_forward_pre_hook(on_embedding),
    ]


def apply(model: nn.Module, routing_spec: dict | StrategyConfig | None, *, tokenizer=None) -> RoutingSession:
    """Install ``routing_spec`` (``{"name", "params"}``; None = the checkpoint's own routing) in
    ``model`` and return the session. Restores any strategy installed before."""
    previous = model.__dict__.get(_ACTIVE)
    if previous is not None:
        previous.restore()
    _restore_gates(model)

    config = None if routing_spec is None else config_from_spec(routing_spec)
    blocks = find_moe_blocks(model)
    if not blocks:
        if config is not None:
            raise Unsupported(f"model {_model_name(model)} has no MoE layers: routing strategy "
                              f"{config.label()} cannot be applied")
        return ModuleRoutingSession(model, None, None, [], None, tokenizer)

    config = config or config_from_spec({"name": "native"})
    _install_transformers_hooks(model)
    strategy = config.build()
    context = RoutingContext()
    gates = []
    for position, block in enumerate(blocks):
        original = block.router
        gate = gate_class(type(original))(original, block.experts, strategy, context, block.layer, position)
        block.set_router(gate)
        gates.append(gate)
    session = ModuleRoutingSession(model, config, strategy, gates, context, tokenizer)
    model.__dict__[_ACTIVE] = session
    try:
        session._hooks = _capture_inputs(model, context, session)
        strategy.setup(session)
    except BaseException:
        session.restore()
        raise
    session.reset()  # calibration passes leave no telemetry behind
    return session


def installed(model: nn.Module) -> RoutingSession | None:
    """The session currently installed in ``model``, if any."""
    return model.__dict__.get(_ACTIVE)
