"""The transformers engine's lm-eval ``LM``: ``HarnessLM``, scoring with the harness's own packing.

Tokenisation and requests are ``workers.evaluation.lm.EngineLM``'s (lm-eval's ``hf`` rules).
Scoring is faster than ``hf``'s:

- requests are batched longest-first under a token budget, sized from free memory;
- requests that share a context run it once: one row holds the context and every continuation,
  a block attention mask keeps the continuations apart (single-token continuations are scored
  from the context's last logits and add no tokens at all);
- only the logits that are scored are computed (``logits_to_keep``).

Prefix sharing is exact only when routing is causal (a token's experts do not depend on later
tokens); with a non-causal routing session every request runs as one full row, like ``hf``.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from lm_eval.models.utils import postprocess_generated_text
from lm_eval.models.utils_hf import stop_sequences_criteria
from transformers import StoppingCriteria, StoppingCriteriaList

from workers.evaluation.batching import Group, group_requests, plan_batches, window
from workers.evaluation.lm import EngineLM


class HarnessLM(EngineLM):
    """lm-eval ``LM`` over an already-loaded causal LM and its tokenizer (see the module docstring)."""

    def __init__(self, model, tokenizer, **kwargs):
        super().__init__(model, tokenizer, **kwargs)
        self._keep_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    # ---- log-likelihood --------------------------------------------------------------------
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kw) -> list[tuple[float, bool]]:
        """Score ``[((context, continuation) or None, context_tokens, continuation_tokens), ...]``."""
        windows = [window(ctx, cont, self.max_length) for _, ctx, cont in requests]
        groups = group_requests(windows, share=self.prefix_sharing, max_row=self.max_length)
        batches = plan_batches(groups, self.max_batch_tokens)
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        done, total = 0, len(requests)
        self._tick(done, total, "loglikelihood")
        for batch in batches:
            for index, answer in self._score_batch(batch):
                results[index] = answer
                done += 1
            self.stats["batches"] += 1
            self._tick(done, total, "loglikelihood")
        return self._answered(requests, results)

    def _forward(self, input_ids, keep: int | None, **kw):
        if self._keep_logits and keep is not None:
            kw["logits_to_keep"] = keep
        self.stats["tokens"] += input_ids.numel()
        with torch.no_grad():
            return self.model(input_ids=input_ids, use_cache=False, **kw)

    def _score_batch(self, batch: list[Group]):
        """Yield ``(request index, (logprob, is_greedy))`` for every request of the batch."""
        rows = [g.row() for g in batch]
        width = max(len(tokens) for tokens, _, _ in rows)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        for i, (tokens, _, _) in enumerate(rows):
            ids[i, : len(tokens)] = torch.tensor(tokens)
        kw = {}
        if any(g.packed() for g in batch):
            kw["attention_mask"], kw["position_ids"] = self._block_mask(batch, rows, width)
        # else: right padding and no mask, as lm-eval does (real tokens never attend to pads)
        first = min(len(g.context) - 1 for g in batch)  # first scored position of any row
        with self._counting(_window_counts(batch, rows, width)):
            out = self._forward(ids.to(self.device), width - first, **kw)
        logp = F.log_softmax(out.logits, dim=-1)  # [rows, kept positions, vocab]
        offset = width - logp.shape[1]
        for gi, (g, (_, _, positions)) in enumerate(zip(batch, rows)):
            for member, cont, pos in zip(g.members, g.conts, positions):
                index = torch.tensor(pos, device=logp.device) - offset
                yield member, self._answer(logp[gi, index], cont)

    @contextmanager
    def _counting(self, counted: torch.Tensor):
        """Count the forwards inside as ``counted`` says in the routing telemetry (``RoutingContext``)."""
        context = getattr(self.routing_session, "context", None)
        if context is None or not hasattr(context, "counted"):  # dense, or another engine's session
            yield
            return
        context.counted = counted.to(self.device)  # once here, not in every MoE layer
        try:
            yield
        finally:
            context.counted = None

    def _block_mask(self, batch, rows, width):
        """Additive ``[rows, 1, width, width]`` mask and position ids of packed rows: context causal;
        a continuation sees the context and its own earlier tokens; pads see what precedes them."""
        seg = torch.full((len(rows), width), -1, dtype=torch.long)
        pos = torch.zeros((len(rows), width), dtype=torch.long)
        for i, (g, (tokens, segments, _)) in enumerate(zip(batch, rows)):
            seg[i, : len(tokens)] = torch.tensor(segments)
            n_ctx = len(g.context)
            pos[i, :n_ctx] = torch.arange(n_ctx)
            at = n_ctx
            for cont in g.conts:
                pos[i, at : at + len(cont) - 1] = torch.arange(n_ctx, n_ctx + len(cont) - 1)
                at += len(cont) - 1
        causal = torch.ones(width, width, dtype=torch.bool).tril()
        allowed = causal & ((seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None]))
        dtype = next(self.model.parameters()).dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill_(~allowed, torch.finfo(dtype).min)
        return mask[:, None].to(self.device), pos.to(self.device)

    def _answer(self, logp: torch.Tensor, cont) -> tuple[float, bool]:
        """``(sum of log p(cont), whether greedy decoding gives cont)`` from ``[len(cont), vocab]`` log-probs.
        The per-token log-probs are summed in float64: a float32 sum over a 500-token window rounds
        by ~1e-4 nats, more than the two engines' per-token difference (~1e-6) adds up to."""
        target = torch.tensor(cont, dtype=torch.long, device=logp.device)
        greedy = bool((logp.argmax(dim=-1) == target).all())
        return float(logp.gather(1, target[:, None]).double().sum()), greedy

    def _generate(self, args: list[tuple[str, dict]], eos: str) -> list[str]:
        contexts, kwargs, until, max_gen, max_ctx, special = self._generation_request(args, eos)
        old_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            enc = self.tokenizer(contexts, padding="longest", return_tensors="pt", **special)
        finally:
            self.tokenizer.padding_side = old_side
        ids, mask = enc["input_ids"][:, -max_ctx:], enc["attention_mask"][:, -max_ctx:]
        kwargs.pop("max_length", None)
        if kwargs.get("temperature", 0.0) == 0.0 and kwargs.get("do_sample") in (None, False):
            kwargs["do_sample"] = False
            kwargs.pop("temperature", None)
        self.stats["tokens"] += ids.numel()
        running = torch.ones(ids.shape[0], dtype=torch.long, device=self.device)  # rows still generating: counted
        stop = _CountUntilStop(stop_sequences_criteria(self.tokenizer, until, ids.shape[1], ids.shape[0]),
                               self.model.generation_config.eos_token_id, running)
        with torch.no_grad(), self._counting(running):
            out = self.model.generate(
                input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                max_length=ids.shape[1] + max_gen, stopping_criteria=StoppingCriteriaList([stop]),
                pad_token_id=self.tokenizer.pad_token_id, use_cache=True, **kwargs,
            )
        texts = []
        for row in out[:, ids.shape[1]:].tolist():
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            texts.append(postprocess_generated_text(generation=text, stop=until, think_end_token=None))
        return texts


def _window_counts(batch: list[Group], rows, width: int) -> torch.Tensor:
    """(rows, width) telemetry counts of a loglikelihood batch: a group's context once per member
    (each request's window holds it), a continuation's tokens once, padding never."""
    counted = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (g, (tokens, segments, _)) in enumerate(zip(batch, rows)):
        seg = torch.tensor(segments, dtype=torch.long)
        counted[i, : len(tokens)] = torch.where(seg == 0, len(g.members), 1)
    return counted


class _CountUntilStop(StoppingCriteria):
    """lm-eval's stop-sequence criteria, unchanged (a batch stops when every row has met one), and
    the telemetry's per-row stop: a row that has met its stop sequence, or whose last token is EOS,
    is marked 0 in ``running``, so the token it stopped at and what the batch feeds it afterwards
    are not counted (vLLM stops each request there)."""

    def __init__(self, criteria: StoppingCriteriaList, eos, running: torch.Tensor):
        self.criteria = list(criteria)
        self.eos = torch.tensor([eos] if isinstance(eos, int) else list(eos or []), dtype=torch.long)
        self.running = running

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        is_done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        stopped = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        for criterion in self.criteria:
            is_done = is_done | criterion(input_ids, scores, **kwargs)
            tracker = getattr(criterion, "done_tracker", None)  # lm-eval's MultiTokenEOSCriteria: per row
            stopped |= torch.tensor(tracker, dtype=torch.bool) if tracker is not None else is_done.cpu()
        if self.eos.numel():
            stopped |= torch.isin(input_ids[:, -1].cpu(), self.eos)
        self.running.mul_((~stopped).long().to(self.running.device))
        return is_done
