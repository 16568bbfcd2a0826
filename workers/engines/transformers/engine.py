"""The ``transformers`` engine: the harness runs the transformers model itself (the default).

Everything here wraps code that predates engines: ``workers.builds.load`` hosts the build,
``workers.routing.apply`` swaps its routers, ``workers.evaluation.lm.HarnessLM`` answers lm-eval
(with the harness's own request packing) and ``workers.probes.steps.ProbeContext`` times steps.
"""

from __future__ import annotations

from workers.engines.base import Engine, Hosted


class TransformersEngine(Engine):
    name = "transformers"

    def load(self, variant, device, home) -> Hosted:
        from workers.builds.load import load_model
        from workers.host import model_bytes

        model, tokenizer, path = load_model(variant, device, home)
        return Hosted(model=model, tokenizer=tokenizer, path=path, bytes=model_bytes(model))

    def route(self, hosted, routing):
        from workers.host import apply_routing

        return apply_routing(hosted.model, routing, hosted.tokenizer)

    def lm(self, loaded, *, progress=None, cancelled=None, options=None):
        from workers.evaluation.lm import HarnessLM

        options = options or {}
        return HarnessLM(
            loaded.model, loaded.tokenizer, routing_session=loaded.routing_session, progress=progress,
            cancelled=cancelled, max_batch_tokens=options.get("max_batch_tokens"),
            prefix_sharing=options.get("prefix_sharing", True),
            generate_batch_size=options.get("generate_batch_size", 16),
        )

    def probe_context(self, loaded, *, shape, peaks, compile_mode, seed, progress, cancelled):
        from workers.probes.steps import ProbeContext

        return ProbeContext(loaded.model, loaded.tokenizer, shape, peaks, compile_mode, seed, progress, cancelled)
