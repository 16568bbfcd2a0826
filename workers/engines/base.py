"""The engine interface: what the worker asks of whatever runs a build's forward.

Modelled on lm-eval's ``api/model.py``: abstract methods whose docstrings show the shapes that
cross. The worker's ``Host`` calls ``load`` once per build (and ``close`` when it evicts it),
``route`` on every job (the variant's routing strategy, telemetry from zero), and the jobs call
``lm`` (evaluate) and ``probe_context`` (probes) on every engine. A job gets the engine as
``loaded.engine``. Every engine derives from ``Engine``; what engines share lives here and in the
shared bases they derive from (``workers.evaluation.lm.EngineLM``, ``workers.probes.steps.ProbeContext``,
``workers.routing.session.RoutingSession``), never in one engine that another subclasses.

An engine object is built once per process from its torch-free spec (``moe_schema.engines``),
which it keeps as ``spec``; ``name`` is the spec's.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from pathlib import Path

import attrs

from moe_schema import protocol
from moe_schema.check import SchemaError
from workers.errors import JobError


@attrs.define
class Hosted:
    """One build held by an engine: what ``Engine.load`` returns and the Host keeps."""

    model: object  # a transformers model: the one that runs (transformers) or its meta-device twin
    #                (vLLM: shapes and parameter accounting only, no weights)
    tokenizer: object  # the build's Hugging Face tokenizer (both engines tokenize with it)
    path: Path | str  # the checkpoint folder (or hub id) it was loaded from
    bytes: int  # bytes it holds in memory (weights, plus vLLM's KV cache)
    handle: object = None  # the engine's own object: vLLM's ``LLM``; None for transformers


class Engine(ABC):
    """One way to run a build, made from its spec (``moe_schema.engines.EngineSpec``)."""

    def __init__(self, spec):
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    @abstractmethod
    def load(self, variant, device: str, home) -> Hosted:
        """Host the variant's build on ``device``; raise ``JobError`` with a one-line reason naming
        the variant when it cannot (``UNSUPPORTED``: engine missing, a shape it cannot run;
        ``OUT_OF_MEMORY``: weights or KV cache do not fit; ``MODEL_LOAD_FAILED``). ``variant`` is a
        checked ``moe_schema.variant.Variant`` (``variant.spec`` the dict, ``variant.strategy``)::

            hosted = engine.load(parse_variant({"name": "moe", "build": {...}, "dtype": "float32",
                                  "engine": {"name": "vllm", "params": {"kv_cache_bytes": None, ...}}}),
                                 "cpu", home)
            hosted.model.config.num_experts   # 4
        """

    @abstractmethod
    def route(self, hosted: Hosted, strategy):
        """Install ``strategy`` (a ``moe_schema.routing.StrategyConfig``, e.g. ``TopKConfig(k=1)``;
        None: the checkpoint's own) in the hosted build, replacing any earlier strategy, and return
        the session (a ``workers.routing.session.RoutingSession``)::

            session = engine.route(hosted, TopKConfig(k=1))
            session.label              # "topk(k=1)"
            session.causal             # True: generation and decode probes may use it
            session.telemetry()        # {"strategy", "layers": [{"layer": 0, "tokens": 12,
                                       #   "tokens_per_expert": [5, 7, 0, 0], ...}], "summary": {...}}
            session.reset()            # telemetry from zero, random generators reseeded

        The telemetry has one shape on every engine (``workers.routing.telemetry``). A strategy the
        engine cannot run raises ``Unsupported`` naming it and why; bad parameters are answered as
        ``INVALID_PARAMS`` (wrap the install in ``routing_errors()``)."""

    @abstractmethod
    def lm(self, loaded, *, progress=None, cancelled=None, options: dict | None = None):
        """An lm-eval ``LM`` over ``loaded`` for ``lm_eval.simple_evaluate``. It answers

            lm.loglikelihood([Instance(args=("The sky is", " blue")), ...])  -> [(-3.2, True), ...]
            lm.loglikelihood_rolling([Instance(args=("a whole document",)), ...]) -> [-41.7, ...]
            lm.generate_until([Instance(args=("Q: 2+2? A:", {"until": ["\\n"], "max_gen_toks": 8})), ...])
                                                                                   -> [" 4", ...]

        tokenising as lm-eval's ``hf`` backend does, and carries ``n_requests``, ``stats`` (dict of
        numbers), ``max_batch_tokens``, ``prefix_sharing`` and ``only_docs`` (a shard's doc-id
        filter, or None) for the evaluate job's result. ``options``: the job's ``eval`` entry."""

    @abstractmethod
    def probe_context(self, loaded, config, *, progress=None, cancelled=None):
        """A context manager over what a probe runs its steps on (a ``workers.probes.steps.ProbeContext``),
        set up for the probe's ``config`` (``moe_schema.probes``; refuse the options this engine
        cannot honour with ``Unsupported``) and undone on exit::

            with engine.probe_context(loaded, config, progress=p, cancelled=c) as ctx:
                samples, census = ctx.prefill(batch=1, length=64, warmup=1, repeats=3)  # seconds per prefill
                samples, census = ctx.decode(batch=4, context=64, new_tokens=8, warmup=1, repeats=2)
                                                                                  # seconds per decode step
                census   # {"experts_touched": 3.5, "experts_per_token": 2.0, ...} or None (dense)
                ctx.extra(phase, batch, length, samples)  # engine-specific row fields ({"ttft_s", "tpot_s"})
            ctx.facts()  # {"device": {...}, "experts_implementation", "compile", "compile_note", "torch_threads"}
        """

    def check(self, variant, device: str, home) -> None:
        """Refuse, before anything held is evicted, what ``load`` would refuse without loading
        (same ``JobError``s); nothing by default."""

    def describe(self, loaded) -> dict:
        """Facts this engine adds to a result's ``build`` entry."""
        return {}

    def close(self, hosted: Hosted) -> None:
        """Free what ``load`` took (called when the Host evicts the build)."""


@contextlib.contextmanager
def routing_errors():
    """A strategy's bad parameters as the worker answers them (INVALID_PARAMS naming the path), on any engine."""
    try:
        yield
    except JobError:
        raise
    except SchemaError as exc:  # checked as the suite parser checks it (moe_schema.routing), with its path
        raise JobError(protocol.INVALID_PARAMS, str(exc)) from None
    except (KeyError, ValueError, TypeError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise JobError(protocol.INVALID_PARAMS, f"variant.routing: {text}") from None
