"""An lm-eval ``LM`` over a build hosted in vLLM (``workers.engines.vllm.engine``).

Tokenisation is ``EngineLM``'s (lm-eval's ``hf`` rules: ``_encode_pair``, ``tok_encode``, the
rolling windows, left truncation) with the build's Hugging Face tokenizer; vLLM gets token ids
(``TokensPrompt``) and schedules its own batches; the harness's request packing is not used here.

- loglikelihood: the request's window ``(context + continuation)[:-1]`` (cut as ``hf`` cuts it,
  ``batching.window``) as the prompt, with ``prompt_logprobs=0`` (the log-probability and rank of
  every prompt token given the tokens before it: the continuation but its last token) and
  ``logprob_token_ids`` (the continuation's last token, scored at the one sampled position; greedy
  when the greedy sample is that token). So vLLM runs exactly the tokens the transformers engine
  runs for the request, and the routing telemetry counts the same ones (``workers.evaluation.lm``).
- loglikelihood_rolling: the same over ``hf``'s disjoint windows, summed per document.
- generate_until: vLLM's sampler (temperature 0: greedy) for ``max_gen_toks`` tokens, then the
  text cut at the first ``until`` string, as ``hf`` cuts it. vLLM stops a request at its stop string
  or EOS and never feeds back the token it stopped at (CPU: no async scheduling), so the telemetry
  counts the prompt and the generated tokens but the last, as the transformers engine does.

Every request skips reading vLLM's prefix cache (``skip_reading_prefix_cache``; vLLM already skips it
for ``prompt_logprobs``): a prefix read from the cache is not run, so its routing would go uncounted.
A request vLLM preempts (its KV cache full) is computed again from its first token when resumed, and
those tokens are counted again: ``stats["preemptions"]`` (the result's ``eval.preemptions``) says how
many times that happened, and the report says so where the engines' counts differ.
The prompt and the sampled token share ``max_model_len``, so ``max_length`` is ``max_model_len``
minus one. The windows, the scores read back and the sampling settings are in ``arithmetic`` (torch only).
"""

from __future__ import annotations

import torch
from lm_eval.models.utils import postprocess_generated_text

from workers.engines.vllm.arithmetic import (generation_settings, loglikelihood_rows, preemptions,
                                            prompt_logprobs, score)
from workers.evaluation.lm import EngineLM

CHUNK = 64  # requests per vLLM call: progress and cancellation are checked between calls


class VllmLM(EngineLM):
    generation_room = 1  # the window is max_model_len - 1; a prompt and its new tokens share max_model_len

    def __init__(self, loaded, *, progress=None, cancelled=None, options: dict):
        handle = loaded.handle
        super().__init__(loaded.model, loaded.tokenizer, routing_session=loaded.routing_session,
                         progress=progress, cancelled=cancelled, max_batch_tokens=options.get("max_batch_tokens"),
                         prefix_sharing=False, generate_batch_size=options.get("generate_batch_size", 16),
                         max_length=handle.max_model_len - 1)
        self.llm = handle.llm
        self.stats["preemptions"] = 0  # requests vLLM preempted and computed again (counted again)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _run(self, prompts: list[list[int]], params) -> list:
        from vllm.inputs import TokensPrompt

        self.stats["tokens"] += sum(len(p) for p in prompts)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params, use_tqdm=False)
        self.stats["preemptions"] += preemptions(outs)
        return outs

    # ---- log-likelihood --------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kw):
        from vllm import SamplingParams

        rows = loglikelihood_rows(requests, self.max_length)
        results: list[tuple[float, bool]] = []
        self._tick(0, len(requests), "loglikelihood")
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start:start + CHUNK]
            params = [SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=prompt_logprobs(cont),
                                     logprob_token_ids=[cont[-1]], skip_reading_prefix_cache=True, detokenize=False)
                      for _, cont in chunk]
            for (prompt, cont), out in zip(chunk, self._run([p for p, _ in chunk], params)):
                results.append(score(prompt, cont, out))
            self.stats["batches"] += 1
            self._tick(len(results), len(requests), "loglikelihood")
        return self._answered(requests, results)

    # ---- generation ------------------------------------------------------------------------
    def _generate(self, args: list[tuple[str, dict]], eos: str) -> list[str]:
        from vllm import SamplingParams

        contexts, kwargs, until, max_gen, max_ctx, special = self._generation_request(args, eos)
        prompts = [self.tokenizer(c, **special)["input_ids"][-max_ctx:] for c in contexts]
        params = SamplingParams(**generation_settings(kwargs, max_gen, until), detokenize=True,
                                skip_special_tokens=True, skip_reading_prefix_cache=True)
        texts = []
        for out in self._run(prompts, params):
            text = self.tokenizer.decode(list(out.outputs[0].token_ids), skip_special_tokens=True)
            texts.append(postprocess_generated_text(generation=text, stop=until, think_end_token=None))
        return texts
