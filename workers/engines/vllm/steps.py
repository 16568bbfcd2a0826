"""The probes' timed steps on the vLLM engine, measured as a user of a served model measures them.

- prefill (time to first token): ``llm.generate`` of ``batch`` prompts of ``length`` tokens for one
  output token, the prefix cache reset first so every prompt token is computed: one sample per call.
  ``ttft_s``: vLLM's own first-token latency of the requests (arrival to first token), mean over
  the batch, median over repeats.
- decode (time per output token): per repeat, the same prompts for ``1 + new_tokens`` output
  tokens (``ignore_eos``, so the count is exact) from a reset prefix cache; vLLM's per-request
  timestamps give (last token - first token) / ``new_tokens``: one sample of seconds per decode
  step of the batch (mean over its requests).

Wall-clock and vLLM's engine timestamps around whole ``generate`` calls, so vLLM's scheduling and
sampling are in the figures (what a user gets); the transformers engine times the model's forward
alone. The rows carry the same keys as transformers' (``workers.probes.steps.timed_row``) plus
``ttft_s`` / ``tpot_s``. The roofline's experts touched come from the routing function's own
census (``routing``).
"""

from __future__ import annotations

import gc
import time

import torch

from workers.probes.steps import ProbeContext
from workers.probes.timer import percentile


class VllmProbeContext(ProbeContext):
    def __init__(self, loaded, shape, peaks, seed, progress, cancelled):
        super().__init__(loaded.model, loaded.tokenizer, shape, peaks, seed, progress, cancelled, torch.device("cpu"))
        self.llm = loaded.handle.llm
        self.handle = loaded.handle
        self.session = loaded.routing_session
        self._extra: dict = {}

    def _generate(self, ids: torch.Tensor, tokens: int) -> tuple[float, list]:
        """Seconds for one ``generate`` of these rows for ``tokens`` output tokens, nothing cached,
        and the requests' outputs (their ``metrics``: vLLM's timestamps)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=tokens, min_tokens=tokens, ignore_eos=True, temperature=0.0,
                                detokenize=False)
        prompts = [TokensPrompt(prompt_token_ids=row) for row in ids.tolist()]
        self.llm.reset_prefix_cache()
        start = time.perf_counter()
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        return time.perf_counter() - start, outputs

    def _census(self, fn):
        if self.session is None or not self.session.gates:
            fn()
            return None
        self.session.census(True)
        try:
            fn()
            return self.session.census_summary()
        finally:
            self.session.census(False)

    def prefill(self, batch, length, warmup, repeats):
        ids = self.prompts(batch, length)
        census = self._census(lambda: self._generate(ids, 1))
        samples, first = [], []
        for i in range(warmup + repeats):
            t, outputs = self._generate(ids, 1)
            if i >= warmup:
                samples.append(t)
                first.append(_mean(o.metrics.first_token_latency for o in outputs))
        self._extra[("prefill", batch, length)] = {"ttft_s": percentile(first, 50), "tpot_s": None}
        return samples, census

    def decode(self, batch, context, new_tokens, warmup, repeats):
        ids = self.prompts(batch, context)
        census = None
        if self.session is not None and self.session.gates:
            self.session.census(True)
            try:
                self._generate(ids, 1 + new_tokens)
                census = self.session.census_summary(skip=1)  # the first forward is the prefill
            finally:
                self.session.census(False)
        first, per_step = [], []
        for i in range(warmup + repeats):
            _, outputs = self._generate(ids, 1 + new_tokens)
            if i >= warmup:
                first.append(_mean(o.metrics.first_token_latency for o in outputs))
                per_step.append(_mean((o.metrics.last_token_ts - o.metrics.first_token_ts) / new_tokens
                                      for o in outputs))
        self._extra[("decode", batch, context)] = {"ttft_s": percentile(first, 50),
                                                   "tpot_s": percentile(per_step, 50)}
        return per_step, census

    def extra(self, phase, batch, length, samples):
        return self._extra.get((phase, batch, length), {"ttft_s": None, "tpot_s": None})

    # ---- memory (workers.probes.memory) --------------------------------------------------------
    def memory_point(self, batch: int, length: int) -> tuple[int, int, int | None, str]:
        """(weights bytes, KV cache bytes held, activation peak bytes or None, method) of a prefill."""
        from workers.probes.memory import _reset_rss_peak, _status_kb

        def weights(model):
            tensors = {id(t): t for t in [*model.parameters(), *model.buffers()]}
            return sum(t.numel() * t.element_size() for t in tensors.values())

        held = self.llm.apply_model(weights)[0]
        ids = self.prompts(batch, length)
        gc.collect()
        before = (_status_kb("VmRSS") or 0) * 1024
        can_reset = _reset_rss_peak()
        self._generate(ids, 1)
        if can_reset and _status_kb("VmHWM") is not None:
            peak = max(_status_kb("VmHWM") * 1024 - before, 0)
            return held, self.handle.kv_cache_bytes, peak, "measured: peak RSS (VmHWM) rise over one generate; approximate"
        return held, self.handle.kv_cache_bytes, None, "unavailable: /proc/self/clear_refs cannot be written"



def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)
