"""The ``vllm`` engine: vLLM's own ``LLM``, in this process, from the build's checkpoint folder.

One process: ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` and ``distributed_executor_backend="uni"``
(starts in seconds instead of a minute, and the model is reachable from here: routing is installed
through ``llm.apply_model``, see ``routing``). Eager mode (``enforce_eager``): the routing
function and its telemetry are Python run on every forward, which a compiled graph would freeze.

A config build is materialised as for transformers (``workers.builds.materialize``: a Hugging Face
folder with safetensors and the byte tokenizer) and vLLM loads that folder. The KV cache is sized
explicitly (``kv_cache_memory_bytes``): ``engine.params.kv_cache_bytes``, or room for
``DEFAULT_SEQUENCES`` sequences of ``max_model_len`` tokens; vLLM would otherwise ask for 92% of
memory. Refused before vLLM starts, each in one line naming the variant: vLLM not installed (or
installed beside CUDA builds of torchvision / torchaudio / torchcodec, which break ``import vllm``:
``install.broken_companions`` names what to uninstall), a family / head size / dtype vLLM cannot
run or tensor parallelism on a CPU (``moe_schema.engines.refusal``, the suite's check, now with
the checkpoint's config.json in hand), a KV cache smaller than one sequence or one that does not
fit beside the weights in free memory.

``Hosted.model`` is the build's transformers model on the meta device (no weights): the parameter
accounting, the roofline's shape and the result's ``build`` entry read it as they read a hosted
transformers model. The hosted tokenizer is the build's Hugging Face tokenizer; requests reach vLLM
as token ids, tokenised exactly as on the transformers engine.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import sys
from pathlib import Path

from moe_schema import protocol
from moe_schema.engines import refusal
from moe_schema.headers import SUITE_DTYPE_BYTES
from moe_schema.roofline import kv_bytes_per_token
from workers.engines import version
from workers.engines.base import Engine, Hosted, routing_errors
from workers.builds.load import meta_twin
from workers.errors import JobError, ModelLoadFailed, Unsupported

DEFAULT_SEQUENCES = 8  # KV cache room when the suite does not size it: sequences of max_model_len
MIN_DEFAULT_KV = 16 << 20


def kv_bytes(config: dict, dtype: str) -> int:
    """KV cache bytes per token of a checkpoint's config.json in ``dtype`` (``auto``: the config's
    own dtype), by ``moe_schema.roofline.kv_bytes_per_token``."""
    if dtype == "auto":
        dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    heads = int(config.get("num_attention_heads") or 1)
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    return int(kv_bytes_per_token(int(config["num_hidden_layers"]), kv_heads, head, SUITE_DTYPE_BYTES.get(dtype, 4)))


class VllmEngine(Engine):
    # ---- hosting ------------------------------------------------------------------------------
    def check(self, variant, device, home) -> None:
        self._plan(variant, device, home)

    def _plan(self, variant, device, home) -> dict:
        """Every refusal that needs no vLLM start; what ``load`` passes to ``LLM``."""
        from workers.builds.materialize import materialize
        from workers.host import estimate_bytes
        from workers.memory import device_memory

        name, engine = variant.name, variant.spec["engine"]
        params = engine["params"]
        if version(self.name) is None:
            raise JobError(protocol.UNSUPPORTED,
                           f"variant {name}: engine vllm is not installed in this worker ({sys.executable}); "
                           f"install it with python workers/engines/vllm/install.py (README, 'The vLLM engine')")
        if not device.startswith("cpu"):
            raise Unsupported(f"variant {name}: this worker drives vLLM's CPU build; device {device} is not one")
        path = materialize(variant.spec["build"], home)
        if not Path(path).is_dir():
            raise Unsupported(f"variant {name}: engine vllm loads a local checkpoint folder, got {path!r}")
        config = json.loads((Path(path) / "config.json").read_text())
        refused = refusal(engine, config=config, dtype=variant.spec["dtype"], device=device)
        if refused is not None:
            raise Unsupported(f"variant {name}: engine vllm cannot host it: {refused.why}")

        max_len = params.get("max_model_len") or int(config.get("max_position_embeddings") or 2048)
        per_token = kv_bytes(config, variant.spec["dtype"])
        kv = params.get("kv_cache_bytes") or max(MIN_DEFAULT_KV, per_token * max_len * DEFAULT_SEQUENCES)
        if kv < per_token * max_len:
            raise JobError(protocol.INVALID_PARAMS,
                           f"variant {name}: engine.kv_cache_bytes {kv:,} holds {kv // per_token:,} tokens, fewer "
                           f"than one sequence of max_model_len {max_len} ({per_token * max_len:,} bytes)")
        weights = estimate_bytes(path, variant.spec["dtype"])
        free = device_memory("cpu")["free"]
        if weights + kv > free:
            raise JobError(protocol.OUT_OF_MEMORY,
                           f"variant {name}: a KV cache of {kv:,} bytes beside {weights:,} bytes of weights does "
                           f"not fit the {free:,} bytes free; lower engine.kv_cache_bytes or max_model_len")
        return {"path": path, "kv": kv, "max_len": max_len, "weights": weights}

    def load(self, variant, device, home) -> Hosted:
        plan = self._plan(variant, device, home)
        v = variant.spec
        name, params, path, kv, max_len = variant.name, v["engine"]["params"], plan["path"], plan["kv"], plan["max_len"]
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the model in this process (apply_model)
        from workers.engines.vllm.install import import_llm

        LLM = import_llm(f"variant {name}")
        try:
            llm = LLM(model=str(path), tokenizer=str(path), dtype=v["dtype"], seed=0,
                      distributed_executor_backend="uni", tensor_parallel_size=params.get("tensor_parallel_size", 1),
                      kv_cache_memory_bytes=int(kv), max_model_len=max_len, enforce_eager=True,
                      trust_remote_code=v["trust_remote_code"], enable_prefix_caching=True,
                      disable_log_stats=False)  # per-request timestamps for the probes (ttft, tpot)
        except Exception as exc:
            raise ModelLoadFailed(f"variant {name}: vLLM cannot load {str(path)!r}: {_first_line(exc)}") from None
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=v["trust_remote_code"])
        meta = meta_twin(path, v["dtype"], v["trust_remote_code"])
        handle = VllmHandle(llm, meta, kv, max_len)
        return Hosted(model=meta, tokenizer=tokenizer, path=path, bytes=plan["weights"] + kv, handle=handle)

    def close(self, hosted) -> None:
        handle = hosted.handle
        if handle is None:
            return
        try:
            handle.llm.llm_engine.engine_core.shutdown()
        except Exception:  # already shut down, or another vLLM layout: dropping the object frees it
            pass
        try:
            from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel

            destroy_model_parallel()
            destroy_distributed_environment()
        except Exception:
            pass
        handle.llm = None
        hosted.handle = None
        gc.collect()

    # ---- routing ------------------------------------------------------------------------------
    def route(self, hosted, strategy):
        from workers.engines.vllm.routing import install

        handle = hosted.handle
        with routing_errors():
            handle.session = install(handle.llm, hosted.model, strategy, hosted.tokenizer, handle.session)
        return handle.session

    # ---- evaluation and probes ----------------------------------------------------------------
    def lm(self, loaded, *, progress=None, cancelled=None, options=None):
        from workers.engines.vllm.lm import VllmLM

        return VllmLM(loaded, progress=progress, cancelled=cancelled, options=options or {})

    @contextlib.contextmanager
    def probe_context(self, loaded, config, *, progress=None, cancelled=None):
        """The same runner and row fields as transformers', the steps timed around vLLM's
        ``generate``; ``memory`` reads what vLLM allocated. vLLM compiles and fuses its own steps,
        so the probe's ``compile`` and ``experts_implementation`` options are refused."""
        import torch

        from moe_schema.probes import TimedConfig
        from workers.engines.vllm.steps import VllmProbeContext
        from workers.probes.shape import shape_of
        from workers.probes.steps import device_name, peaks_for

        dtype = str(loaded.model.dtype).removeprefix("torch.")
        device = torch.device("cpu")
        timed = isinstance(config, TimedConfig)
        if timed and config.compile not in (None, "none"):
            raise Unsupported(f"probe option compile={config.compile!r}: engine {self.name} compiles its own "
                              f"steps; use compile: none (or leave it out)")
        if config.experts_implementation is not None:
            raise Unsupported(f"probe option experts_implementation={config.experts_implementation!r}: engine "
                              f"{self.name} runs its own fused experts")
        peaks = peaks_for(config, device, dtype) if timed else None
        ctx = VllmProbeContext(loaded, shape_of(loaded.model), peaks, config.seed, progress, cancelled)
        ctx.experts_implementation = f"{self.name} fused MoE"
        ctx.device_info = {"name": device_name(device), "type": device.type, "dtype": dtype}
        if peaks is not None:
            ctx.device_info.update(peaks.as_dict(), name=device_name(device))
        yield ctx

    def describe(self, loaded) -> dict:
        handle = loaded.handle
        return {"experts_implementation": "vllm fused_moe (CPU)",
                "kv_cache_bytes": handle.kv_cache_bytes, "max_model_len": handle.max_model_len}


class VllmHandle:
    """What the engine keeps per hosted build: the ``LLM``, the meta twin, the installed routing."""

    def __init__(self, llm, meta, kv_cache_bytes: int, max_model_len: int):
        self.llm, self.meta = llm, meta
        self.kv_cache_bytes, self.max_model_len = kv_cache_bytes, max_model_len
        self.session = None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
