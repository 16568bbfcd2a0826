"""The probes' timed steps on llama.cpp, through its batch API (``llama_batch`` + ``llama_decode``).

Each probe point gets a llama.cpp context of its own over the hosted model's weights (a memory
map, not a copy), sized for its batch: ``n_seq_max`` = the batch, each row its own sequence, and
``n_ctx`` room for every row's tokens. So batch 1 and batch 16 run the same code, the way
llama.cpp's own server decodes parallel requests.

- prefill: one ``llama_decode`` of ``batch`` rows of ``length`` tokens, the KV cache cleared first,
  logits for each row's last token only (what a server computes): one sample per call.
- decode: ``context`` tokens prefilled per row, then ``new_tokens`` steps of one token per row, each
  step the argmax of the row's last logits (greedy, as the other engines feed): one sample per step.

The roofline's bytes per parameter are the GGUF's own (``gguf_cache.tensor_bytes``: a q4_0 tensor
is 4.5 bits per weight, not 4); the KV cache's are its type's (f32: 4, f16: 2). llama.cpp exposes
no expert choice, so the census is None and the roofline assumes uniform routing.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import time

import attrs
import numpy as np
import torch

from workers.errors import Unsupported
from workers.probes.steps import ProbeContext


class BatchRunner:
    """A llama.cpp context for ``rows`` sequences of up to ``tokens`` tokens each, over a loaded model."""

    def __init__(self, handle, rows: int, tokens: int):
        import llama_cpp
        from llama_cpp import _internals

        self._llama_cpp = llama_cpp
        params = llama_cpp.llama_context_default_params()
        params.n_seq_max = rows
        params.n_ctx = rows * _round_up(tokens, 256)
        params.n_batch = params.n_ubatch = max(rows * tokens, rows)
        params.n_threads = params.n_threads_batch = handle.threads
        kv = llama_cpp.GGML_TYPE_F32 if handle.kv_cache == "f32" else llama_cpp.GGML_TYPE_F16
        params.type_k = params.type_v = kv
        self.ctx = _internals.LlamaContext(model=handle.llm._model, params=params, verbose=False)
        self.batch = _internals.LlamaBatch(n_tokens=params.n_batch, embd=0, n_seq_max=rows, verbose=False)
        self.rows, self.n_vocab = rows, handle.llm.n_vocab()
        self.outputs: list[int] = []  # batch indices of the tokens whose logits the last decode kept

    def clear(self) -> None:
        self._llama_cpp.llama_memory_clear(self.ctx.memory, True)

    def decode(self, tokens: list[list[int]], start: int, logits_last: bool = True) -> None:
        """One ``llama_decode`` of each row's ``tokens`` at positions ``start``.. (row r is sequence r)."""
        b = self.batch.batch
        n, self.outputs = 0, []
        for seq, row in enumerate(tokens):
            for i, tok in enumerate(row):
                b.token[n], b.pos[n], b.n_seq_id[n] = int(tok), start + i, 1
                b.seq_id[n][0] = seq
                b.logits[n] = logits_last and i == len(row) - 1
                if b.logits[n]:
                    self.outputs.append(n)
                n += 1
        b.n_tokens = n
        self.ctx.decode(self.batch)

    def next_tokens(self) -> list[int]:
        """The argmax of each row's last logits (``llama_get_logits_ith`` of that token's batch index)."""
        out = []
        for index in self.outputs:
            ptr = self.ctx.get_logits_ith(index)
            logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,))
            out.append(int(logits.argmax()))
        return out

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


class LlamacppProbeContext(ProbeContext):
    weights_method = "computed: the GGUF's tensor bytes (its quantized formats' real bytes)"
    kv_method = "allocated: llama.cpp's KV cache for the batch (n_ctx x layers x KV heads x head size x its type)"

    def __init__(self, loaded, shape, peaks, seed, progress, cancelled):
        super().__init__(loaded.model, loaded.tokenizer, shape, peaks, seed, progress, cancelled, torch.device("cpu"))
        self.handle = loaded.handle
        self._runners: dict = {}

    def _runner(self, rows: int, tokens: int) -> BatchRunner:
        key = (rows, tokens)
        if key not in self._runners:
            for old in self._runners.values():
                old.close()
            self._runners = {key: BatchRunner(self.handle, rows, tokens)}
        return self._runners[key]

    def prefill(self, batch, length, warmup, repeats):
        ids = self.prompts(batch, length).tolist()
        runner = self._runner(batch, length)
        samples = []
        for i in range(warmup + repeats):
            self.check_cancelled()
            runner.clear()
            start = time.perf_counter()
            runner.decode(ids, 0)
            if i >= warmup:
                samples.append(time.perf_counter() - start)
        return samples, None

    def decode(self, batch, context, new_tokens, warmup, repeats):
        ids = self.prompts(batch, context).tolist()
        runner = self._runner(batch, context + new_tokens)
        samples = []
        for i in range(warmup + repeats):
            self.check_cancelled()
            runner.clear()
            runner.decode(ids, 0)
            step = runner.next_tokens()
            for t in range(new_tokens):
                start = time.perf_counter()
                runner.decode([[tok] for tok in step], context + t)
                step = runner.next_tokens()
                if i >= warmup:
                    samples.append(time.perf_counter() - start)
        return samples, None

    def facts(self) -> dict:
        facts = super().facts()
        facts["torch_threads"] = None
        facts["llamacpp_threads"] = self.handle.threads
        return facts

    # ---- memory (workers.probes.memory) --------------------------------------------------------
    def memory_point(self, batch: int, length: int) -> tuple[int, int, int | None, str]:
        """(weights bytes, KV cache bytes allocated, activation peak bytes or None, method) of a prefill."""
        from workers.probes.memory import _reset_rss_peak, _status_kb

        for old in self._runners.values():
            old.close()
        self._runners = {}
        gc.collect()
        before = (_status_kb("VmRSS") or 0) * 1024
        can_reset = _reset_rss_peak()
        runner = self._runner(batch, length)
        kv = int(self.shape.kv_bytes_per_token() * runner.rows * _round_up(length, 256))
        runner.decode(self.prompts(batch, length).tolist(), 0)
        weights = int(self.handle.sizes["total_bytes"])
        if can_reset and _status_kb("VmHWM") is not None:
            peak = max(_status_kb("VmHWM") * 1024 - before - kv, 0)
            return weights, kv, peak, "measured: peak RSS (VmHWM) rise over one prefill, less the KV cache; approximate"
        return weights, kv, None, "unavailable: /proc/self/clear_refs cannot be written"

    def close(self) -> None:
        for runner in self._runners.values():
            runner.close()
        self._runners = {}


@contextlib.contextmanager
def open_probe_context(engine, loaded, config, *, progress=None, cancelled=None):
    """The probe context for ``config``: options this engine cannot honour refused in one line; the
    model's shape with the GGUF's bytes per parameter and the KV cache's bytes per element."""
    from moe_schema.probes import TimedConfig
    from workers.probes.shape import shape_of
    from workers.probes.steps import device_name, peaks_for

    timed = isinstance(config, TimedConfig)
    if config.name == "routing":
        raise Unsupported(f"probe 'routing': engine {engine.name} exposes no per-token expert choice "
                          f"(routing telemetry is unavailable on llama.cpp)")
    if timed and config.compile not in (None, "none"):
        raise Unsupported(f"probe option compile={config.compile!r}: engine {engine.name} runs its own kernels; "
                          f"use compile: none (or leave it out)")
    if config.experts_implementation is not None:
        raise Unsupported(f"probe option experts_implementation={config.experts_implementation!r}: engine "
                          f"{engine.name} runs its own expert kernels")
    handle = loaded.handle
    shape = shape_of(loaded.model)
    params = shape.total_params or 1
    shape = attrs.evolve(shape, bytes_per_param=handle.sizes["total_bytes"] / params,
                         kv_bytes=4.0 if handle.kv_cache == "f32" else 2.0)
    peaks = peaks_for(config, torch.device("cpu"), "float32") if timed else None  # llama.cpp's CPU math: f32 sums
    ctx = LlamacppProbeContext(loaded, shape, peaks, config.seed, progress, cancelled)
    ctx.experts_implementation = f"llama.cpp ({handle.quant})"
    ctx.device_info = {"name": device_name(torch.device("cpu")), "type": "cpu", "dtype": handle.quant,
                       "threads": handle.threads}
    if peaks is not None:
        ctx.device_info.update(peaks.as_dict(), name=device_name(torch.device("cpu")))
    try:
        yield ctx
    finally:
        ctx.close()
