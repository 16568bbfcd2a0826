"""The torch-free spec of ``hf_eager`` (the harness reads it when it checks a suite)."""

from __future__ import annotations

from moe_schema.engines import EngineSpec
from moe_schema.routing import TOKEN


class HfEager(EngineSpec):
    """A build hosted in transformers with eager attention (transformers picks sdpa where it can).
    As an example of a refusal it runs only routing strategies whose rule reads one token's router
    logits."""

    name = "hf_eager"
    implementation = "hf_eager.engine:HfEagerEngine"
    library = "hf_eager"  # a worker that can import this package hosts it
    distributions = ("moe-harness-hf-eager",)  # its version joins its jobs' keys
    install = "pip install -e examples/engine_plugin"
    routes = frozenset({TOKEN})
    routes_why = "hf_eager runs per-token rules only (an example of an engine refusing a strategy)"
