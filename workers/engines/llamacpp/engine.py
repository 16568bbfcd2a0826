"""The worker side of ``llamacpp``: llama.cpp's ``Llama`` (llama-cpp-python), on CPU, in this process.

A build is materialised as for the other engines (a Hugging Face folder), written once as a GGUF
and quantized once per ``quant`` (``gguf_write.gguf_for``, cached under the harness home), and
loaded with no layer offloaded. ``Hosted.model`` is the build's transformers model on the meta
device, as on vLLM: the parameter accounting and the probes' shape read it; the hosted tokenizer
is the build's Hugging Face tokenizer, and llama.cpp gets token ids only.

Routing: the number of experts a token uses is ``<arch>.expert_used_count``, a load-time setting, so
``route`` to ``topk(k)`` loads the GGUF again with that override (a memory map: fast) when k
changes. llama.cpp exposes no per-token expert choice, so the session's telemetry is None and the
result's ``build.routing_telemetry`` says it is unavailable and why; nothing is made up.

Threads: llama.cpp spins every thread it is given, so on a busy machine more threads than free
cores collapse throughput. ``threads`` is capped at the cores free when the build loads
(``free_cores``); the count used is in the result (``build.threads``).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

from moe_schema import protocol
from moe_schema.engines import refusal
from workers.engines import version
from workers.engines.base import Engine, Hosted, routing_errors
from workers.errors import JobError, ModelLoadFailed, Unsupported

TELEMETRY = ("unavailable: llama.cpp chooses experts inside its compute graph and exposes no per-token "
             "choice, so no tokens-per-expert counts are reported")


def free_cores(load: float | None = None, cores: int | None = None) -> int:
    """Cores this process may use that other processes are not already using: the CPUs it may run
    on, less the 1-minute load average (rounded), at least 1."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    load = load if load is not None else os.getloadavg()[0]
    return max(1, cores - int(round(load)))


def thread_count(asked: int | None, free: int) -> int:
    """The threads a build runs with: what the suite asked (null: every free core), at most ``free``."""
    return free if asked is None else max(1, min(asked, free))


def experts_used(strategy) -> int | None:
    """The ``expert_used_count`` a routing strategy asks for: None for the checkpoint's own (native)."""
    if strategy is None or strategy.name == "native":
        return None
    if strategy.name == "topk":
        return int(strategy.k)
    raise Unsupported(f"routing strategy {strategy.label()}: llama.cpp's only routing setting is the number of "
                      f"experts a token uses (native, topk)")


class LlamacppHandle:
    """What the engine keeps per hosted build: the ``Llama``, its GGUF, and how it was loaded."""

    def __init__(self, gguf: Path, arch: str, n_ctx: int, threads: int, kv_cache: str, quant: str, sizes: dict):
        self.gguf, self.arch, self.n_ctx, self.threads = gguf, arch, n_ctx, threads
        self.kv_cache, self.quant, self.sizes = kv_cache, quant, sizes
        self.llm = None
        self.k: int | None = None  # the expert_used_count override of self.llm (None: the file's)

    def open(self, k: int | None, logits_all: bool = True):
        """A ``Llama`` over the GGUF with ``k`` experts per token (None: the file's own)."""
        import llama_cpp

        kv_type = llama_cpp.GGML_TYPE_F32 if self.kv_cache == "f32" else llama_cpp.GGML_TYPE_F16
        overrides = {f"{self.arch}.expert_used_count": int(k)} if k is not None else None
        return llama_cpp.Llama(model_path=str(self.gguf), n_ctx=self.n_ctx, n_batch=min(self.n_ctx, 512),
                               n_threads=self.threads, n_threads_batch=self.threads, n_gpu_layers=0,
                               logits_all=logits_all, type_k=kv_type, type_v=kv_type, kv_overrides=overrides,
                               seed=0, verbose=False)

    def use(self, k: int | None) -> None:
        """Hold a ``Llama`` with ``k`` experts per token, loading it again only when k changes."""
        if self.llm is not None and self.k == k:
            return
        self.close()
        self.llm, self.k = self.open(k), k

    def close(self) -> None:
        if self.llm is not None:
            with contextlib.suppress(Exception):
                self.llm.close()
        self.llm = None


class LlamacppEngine(Engine):
    # ---- hosting ------------------------------------------------------------------------------
    def check(self, variant, device, home) -> None:
        self._plan(variant, device, home)

    def _plan(self, variant, device, home) -> dict:
        """Every refusal that needs no load: the library, the device, the build, the routing's k."""
        from workers.builds.materialize import materialize

        name, engine = variant.name, variant.spec["engine"]
        if version(self.name) is None:
            raise JobError(protocol.UNSUPPORTED,
                           f"variant {name}: engine llamacpp is not installed in this worker ({sys.executable}); "
                           f"install it with pip install -e '.[llamacpp]' (README, 'The llama.cpp engine')")
        path = materialize(variant.spec["build"], home)
        if not Path(path).is_dir():
            raise Unsupported(f"variant {name}: engine llamacpp loads a local checkpoint folder, got {path!r}")
        config = json.loads((Path(path) / "config.json").read_text())
        refused = refusal(engine, config=config, dtype=variant.spec["dtype"], device=device,
                          strategies=(variant.strategy,))
        if refused is not None:
            raise Unsupported(f"variant {name}: engine llamacpp cannot host it: {refused.why}")
        return {"path": Path(path), "config": config}

    def load(self, variant, device, home) -> Hosted:
        from transformers import AutoTokenizer

        from workers.builds.load import meta_twin
        from workers.engines.llamacpp.gguf_cache import gguf_for, tensor_bytes
        from workers.engines.llamacpp.gguf_write import UnsupportedCheckpoint
        from workers.engines.llamacpp.spec import ARCHITECTURES

        plan = self._plan(variant, device, home)
        v, path, config = variant.spec, plan["path"], plan["config"]
        params = v["engine"]["params"]
        threads = thread_count(params.get("threads"), free_cores())  # the load average is read once
        try:
            gguf = gguf_for(path, params["quant"], home, threads=threads)
        except UnsupportedCheckpoint as exc:
            raise Unsupported(f"variant {variant.name}: engine llamacpp cannot host it: {exc}") from None
        except Exception as exc:
            raise ModelLoadFailed(f"variant {variant.name}: writing its GGUF failed: {_first_line(exc)}") from None
        n_ctx = params.get("n_ctx") or int(config.get("max_position_embeddings") or 2048)
        handle = LlamacppHandle(gguf, ARCHITECTURES[config["model_type"]], n_ctx, threads, params["kv_cache"],
                                params["quant"], tensor_bytes(gguf))
        try:
            handle.use(experts_used(variant.strategy))
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadFailed(f"variant {variant.name}: llama.cpp cannot load {str(gguf)!r}: "
                                  f"{_first_line(exc)}") from None
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=v["trust_remote_code"])
        meta = meta_twin(path, v["dtype"], v["trust_remote_code"])
        return Hosted(model=meta, tokenizer=tokenizer, path=path, bytes=int(handle.sizes["file_bytes"]), handle=handle)

    def close(self, hosted) -> None:
        if hosted.handle is not None:
            hosted.handle.close()
        hosted.handle = None

    # ---- routing ------------------------------------------------------------------------------
    def route(self, hosted, strategy):
        from workers.engines.llamacpp.routing import LlamacppRoutingSession

        with routing_errors():
            k = experts_used(strategy)
            hosted.handle.use(k)
        return LlamacppRoutingSession(hosted.model, strategy, hosted.tokenizer)

    # ---- evaluation and probes ----------------------------------------------------------------
    def lm(self, loaded, *, progress=None, cancelled=None, options=None):
        from workers.engines.llamacpp.lm import LlamacppLM

        return LlamacppLM(loaded, progress=progress, cancelled=cancelled, options=options or {})

    @contextlib.contextmanager
    def probe_context(self, loaded, config, *, progress=None, cancelled=None):
        """The same runner and row fields as the other engines, timed around llama.cpp's own decode
        calls, with the roofline reading the GGUF's real bytes per parameter."""
        from workers.engines.llamacpp.steps import open_probe_context

        with open_probe_context(self, loaded, config, progress=progress, cancelled=cancelled) as ctx:
            yield ctx

    def describe(self, loaded) -> dict:
        handle = loaded.handle
        sizes = handle.sizes
        return {"experts_implementation": "llama.cpp (CPU)", "threads": handle.threads, "n_ctx": handle.n_ctx,
                "kv_cache": handle.kv_cache, "routing_telemetry": TELEMETRY,
                "gguf": {"quant": handle.quant, "bytes": sizes["file_bytes"],
                         "bits_per_weight": 8 * sizes["total_bytes_per_param"],
                         "expert_bits_per_weight": (8 * sizes["expert_bytes_per_param"]
                                                    if sizes["expert_bytes_per_param"] else None)}}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
