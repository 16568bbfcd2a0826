"""The base of engines whose forward the harness runs itself on a transformers model.

``workers.builds.load`` hosts the build (with the engine's ``load_options``), the transformers
engine's ``routing.apply_routing`` swaps its routers, its ``lm.HarnessLM`` answers lm-eval (with
the harness's own request packing) and its ``steps.TransformersProbeContext`` times steps.
"""

from __future__ import annotations

import contextlib

from workers.engines.base import Engine, Hosted


class HarnessForward(Engine):
    """An engine whose forward is a transformers model the harness drives itself: the base of the
    ``transformers`` engine and of third-party engines that host a build in transformers under
    other loading options (``load_options``), e.g. ``examples/engine_plugin``."""

    def load_options(self, variant) -> dict:
        """Extra ``from_pretrained`` keyword arguments (none: transformers' own defaults)."""
        return {}

    def load(self, variant, device, home) -> Hosted:
        from workers.builds.load import load_model
        from workers.host import model_bytes

        model, tokenizer, path = load_model(variant, device, home, **self.load_options(variant))
        return Hosted(model=model, tokenizer=tokenizer, path=path, bytes=model_bytes(model))

    def route(self, hosted, strategy):
        from workers.engines.transformers.routing import apply_routing

        return apply_routing(hosted.model, strategy, hosted.tokenizer)

    def lm(self, loaded, *, progress=None, cancelled=None, options=None):
        from workers.engines.transformers.lm import HarnessLM

        options = options or {}
        return HarnessLM(
            loaded.model, loaded.tokenizer, routing_session=loaded.routing_session, progress=progress,
            cancelled=cancelled, max_batch_tokens=options.get("max_batch_tokens"),
            prefix_sharing=options.get("prefix_sharing", True),
            generate_batch_size=options.get("generate_batch_size", 16),
        )

    @contextlib.contextmanager
    def probe_context(self, loaded, config, *, progress=None, cancelled=None):
        """The model in eval mode, in the probe's experts implementation, its memory admitted, its
        decode step compiled as asked; all undone on exit."""
        import torch

        from moe_schema.probes import TimedConfig
        from workers.engines.transformers.steps import (TransformersProbeContext, experts_implementation,
                                                        resolve_compile)
        from workers.probes.shape import shape_of
        from workers.probes.steps import admit, device_name, peaks_for

        model = loaded.model
        device = next(model.parameters()).device
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        timed = isinstance(config, TimedConfig)
        compile_mode = resolve_compile(config.compile, device) if timed else "none"
        peaks = peaks_for(config, device, dtype) if timed else None
        shape = shape_of(model)
        admit(config, shape, device)
        was_training = model.training
        model.eval()
        torch.manual_seed(config.seed)
        try:
            with experts_implementation(model, config.experts_implementation) as impl:
                ctx = TransformersProbeContext(model, loaded.tokenizer, shape, peaks, compile_mode, config.seed,
                                               progress, cancelled)
                ctx.experts_implementation = impl
                ctx.device_info = {"name": device_name(device), "type": device.type, "dtype": dtype}
                if peaks is not None:
                    ctx.device_info.update(peaks.as_dict(), name=device_name(device))
                yield ctx
        finally:
            model.train(was_training)
