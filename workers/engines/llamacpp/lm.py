"""An lm-eval ``LM`` over a build hosted in llama.cpp (``workers.engines.llamacpp.engine``).

Tokenisation is ``EngineLM``'s (lm-eval's ``hf`` rules) with the build's Hugging Face tokenizer;
llama.cpp gets token ids through ``Llama.eval`` and gives back every position's logits
(``logits_all``: ``Llama.scores``).

- loglikelihood: the request's window ``(context + continuation)[:-1]`` (cut as ``hf`` cuts it,
  ``batching.window``); the continuation's log-probabilities are read from the logits at the
  positions before each of its tokens, log-softmax and sum in float64 (as both other engines sum),
  and greedy means each continuation token is its position's argmax. Requests are run in order of
  their tokens, so a window that starts with the one before it (a multiple-choice document's shared
  context) keeps that prefix in llama.cpp's KV cache and runs only what differs (``Llama.eval``
  drops the cache past ``n_tokens``); the answers go back in the requests' order.
- loglikelihood_rolling: the same over ``hf``'s disjoint windows, summed per document.
- generate_until: greedy, token by token (the argmax of the last position's logits), until
  ``max_gen_toks``, EOS or a stop string, then cut at the first stop string as ``hf`` cuts it.
  Sampling (``do_sample`` or a temperature above 0) is refused in one line.
"""

from __future__ import annotations

import numpy as np
import torch
from lm_eval.models.utils import postprocess_generated_text

from workers.errors import Unsupported
from workers.evaluation.batching import window
from workers.evaluation.lm import EngineLM


def log_softmax64(logits: np.ndarray) -> np.ndarray:
    """Rows of logits -> log-probabilities, in float64."""
    x = np.asarray(logits, dtype=np.float64)
    top = x.max(axis=-1, keepdims=True)
    return x - top - np.log(np.exp(x - top).sum(axis=-1, keepdims=True))


def continuation_score(logits: np.ndarray, tokens: list[int], n_cont: int) -> tuple[float, bool]:
    """``(sum of log p, greedy)`` of the last ``n_cont`` of ``tokens`` from ``logits``, the model's
    output at each position of ``tokens[:-1]`` (row i predicts token i + 1)."""
    first = len(tokens) - n_cont  # the continuation's first token
    rows = logits[first - 1:len(tokens) - 1]
    logp = log_softmax64(rows)
    target = np.asarray(tokens[first:], dtype=np.int64)
    picked = logp[np.arange(n_cont), target]
    return float(picked.sum()), bool((rows.argmax(axis=-1) == target).all())


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class LlamacppLM(EngineLM):
    def __init__(self, loaded, *, progress=None, cancelled=None, options: dict):
        handle = loaded.handle
        super().__init__(loaded.model, loaded.tokenizer, routing_session=loaded.routing_session,
                         progress=progress, cancelled=cancelled, max_batch_tokens=options.get("max_batch_tokens"),
                         prefix_sharing=False, generate_batch_size=options.get("generate_batch_size", 16),
                         max_length=handle.n_ctx)
        self.handle = handle
        self.stats["prefix_tokens_reused"] = 0  # tokens llama.cpp kept in its KV cache from the request before

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def _logits(self, tokens: list[int]) -> np.ndarray:
        """llama.cpp's logits at every position of ``tokens``, reusing the KV cache's common prefix."""
        llm = self.handle.llm
        held = list(llm.input_ids[:llm.n_tokens])
        keep = common_prefix(held, tokens)
        keep = min(keep, len(tokens) - 1)  # at least one token runs, so its logits are fresh
        llm.n_tokens = keep
        llm.eval(tokens[keep:])
        self.stats["prefix_tokens_reused"] += keep
        self.stats["tokens"] += len(tokens) - keep
        return llm.scores[:len(tokens)]

    # ---- log-likelihood --------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kw):
        rows = []
        for _, ctx, cont in requests:
            context, continuation = window(ctx, cont, self.max_length)
            rows.append((list(context) + list(continuation), len(continuation)))
        order = sorted(range(len(rows)), key=lambda i: rows[i][0])
        results: list[tuple[float, bool] | None] = [None] * len(rows)
        self._tick(0, len(requests), "loglikelihood")
        for done, i in enumerate(order, 1):
            tokens, n_cont = rows[i]
            run = tokens[:-1]  # the last token is scored, never fed
            if len(run) == 0:
                raise ValueError("a loglikelihood request with no context token cannot be scored")
            results[i] = continuation_score(self._logits(run), tokens, n_cont)
            self.stats["batches"] += 1
            if done % 16 == 0 or done == len(order):
                self._tick(done, len(requests), "loglikelihood")
        return self._answered(requests, results)

    # ---- generation ------------------------------------------------------------------------
    def _generate(self, args: list[tuple[str, dict]], eos: str) -> list[str]:
        contexts, kwargs, until, max_gen, max_ctx, special = self._generation_request(args, eos)
        if kwargs.get("do_sample") or float(kwargs.get("temperature", 0.0) or 0.0) > 0.0:
            raise Unsupported("engine llamacpp generates greedily; this task samples (do_sample or temperature > 0)")
        eot = self.eot_token_id
        texts = []
        for context in contexts:
            tokens = list(self.tokenizer(context, **special)["input_ids"][-max_ctx:])
            new: list[int] = []
            logits = self._logits(tokens)[-1]
            while len(new) < max_gen:
                token = int(np.argmax(logits))
                new.append(token)
                if token == eot:
                    break
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                if any(u and u in text for u in until) or len(new) == max_gen:
                    break
                logits = self._logits(tokens + new)[-1]
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            texts.append(postprocess_generated_text(generation=text, stop=until, think_end_token=None))
        return texts
