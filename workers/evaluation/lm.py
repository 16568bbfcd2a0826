"""An lm-eval ``LM`` over a model the worker already holds in memory.

Tokenisation follows lm-eval's ``hf`` backend exactly (``_encode_pair`` from ``TemplateLM``, the
same ``tok_encode``, the same rolling windows and left truncation), so every per-request
log-likelihood matches ``hf`` to float precision. Scoring is faster:

- requests are batched longest-first under a token budget, sized from free memory;
- requests that share a context run it once: one row holds the context and every continuation,
  a block attention mask keeps the continuations apart (single-token continuations are scored
  from the context's last logits and add no tokens at all);
- only the logits that are scored are computed (``logits_to_keep``).

Prefix sharing is exact only when routing is causal (a token's experts do not depend on later
tokens); with a non-causal routing session every request runs as one full row, like ``hf``.

Routing telemetry counts the tokens every request feeds the model, as if it ran alone, whatever
the batching (the same definition on every engine, so engines can be compared layer by layer):

- a loglikelihood request: its window ``(context + continuation)[:-1]`` (``batching.window``),
  each token once, so a context shared by n requests counts n times; padding never;
- a generation request: its prompt (after left truncation) and every generated token but the
  last, the one at which it stopped (a stop sequence completed, EOS, or ``max_gen_toks``): a row
  that stopped counts nothing more while the rest of its batch goes on; padding never.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import (
    _add_special_kwargs,
    configure_pad_token,
    handle_stop_sequences,
    has_bos_prefix,
    normalize_gen_kwargs,
    postprocess_generated_text,
    resolve_max_length,
)
from lm_eval.models.utils_hf import stop_sequences_criteria
from transformers import StoppingCriteria, StoppingCriteriaList

from workers.errors import JobCancelled
from workers.evaluation.batching import Group, group_requests, plan_batches, window

Progress = Callable[[int, int, str], None]


def auto_batch_tokens(model, device: torch.device, fraction: float = 0.2) -> int:
    """A per-batch token budget from the device's free memory and the model's per-token footprint."""
    cfg = getattr(model.config, "text_config", None) or model.config
    hidden = int(getattr(cfg, "hidden_size", 1024))
    inter = int(getattr(cfg, "intermediate_size", 4 * hidden) or 4 * hidden)
    vocab = int(getattr(cfg, "vocab_size", 32000))
    layers = int(getattr(cfg, "num_hidden_layers", 12))
    elem = next(model.parameters()).element_size()
    # live activations of one layer + the KV cache of all layers + a row of logits, per token
    per_token = elem * (6 * hidden + 2 * inter + 2 * layers * hidden + 2 * vocab)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        cap = 65536
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        cap = 2048  # CPU: bigger batches are slower once the matmuls are large (measured)
    return int(max(256, min(cap, free * fraction // per_token)))


class HarnessLM(TemplateLM):
    """lm-eval ``LM`` over an already-loaded causal LM and its tokenizer.

    ``progress(done, total, note)`` is called after every batch; setting ``cancelled`` stops the
    work between batches with :class:`JobCancelled`.
    """

    def __init__(
        self,
        model,
        tokenizer,
        *,
        routing_session=None,
        progress: Progress | None = None,
        cancelled: threading.Event | None = None,
        max_batch_tokens: int | None = None,
        prefix_sharing: bool = True,
        generate_batch_size: int = 16,
        max_length: int | None = None,
        add_bos_token: bool | None = None,
    ):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = configure_pad_token(tokenizer, model_config=model.config)
        self.routing_session = routing_session
        self.progress = progress
        self.cancelled = cancelled
        self._device = next(model.parameters()).device
        self.causal_routing = bool(getattr(routing_session, "causal", True))
        # the block mask needs an attention that takes a custom 4-D mask (sdpa, eager)
        attn = getattr(model.config, "_attn_implementation", None) or "eager"
        self.prefix_sharing = prefix_sharing and self.causal_routing and attn in ("sdpa", "eager")
        self.max_batch_tokens = max_batch_tokens or auto_batch_tokens(model, self._device)
        self.generate_batch_size = generate_batch_size
        self.add_bos_token = add_bos_token
        self._max_length = max_length
        self._keep_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.stats = {"requests": 0, "batches": 0, "tokens": 0, "lm_s": 0.0, "lm_cpu_s": 0.0}
        # lm_s / lm_cpu_s: wall / process CPU seconds spent answering requests
        self.n_requests = 0  # lm-eval requests answered by the model
        self.only_docs: Callable[[int], bool] | None = None  # a shard: which doc ids to evaluate

    def _shard(self, requests, fn, filler):
        """Run ``fn`` on the requests of this shard's documents; the others get ``filler``."""
        if self.only_docs is None:
            picked = list(range(len(requests)))
        else:
            picked = [i for i, r in enumerate(requests) if self.only_docs(r.doc_id)]
        out = [filler] * len(requests)
        start, cpu = time.perf_counter(), time.process_time()
        for i, value in zip(picked, fn([requests[i] for i in picked]) if picked else []):
            out[i] = value
        self.stats["lm_s"] += time.perf_counter() - start
        self.stats["lm_cpu_s"] += time.process_time() - cpu
        self.n_requests += len(picked)
        return out

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        return self._shard(requests, lambda rs: super(HarnessLM, self).loglikelihood(rs, True), (0.0, False))

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        return self._shard(requests, self._rolling, 0.0)

    def generate_until(self, requests, disable_tqdm: bool = False):
        return self._shard(requests, self._generate_until, "")

    # ---- what lm-eval asks of a TemplateLM -------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        if self.tokenizer.bos_token_id is not None:
            return self.tokenizer.bos_token_id
        return self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self._max_length or resolve_max_length(self.model.config, self.tokenizer)

    @property
    def max_gen_toks(self) -> int:
        return 256

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "tokenizer")).replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, left_truncate_len=None, **kw):
        """Same rules as ``HFLM.tok_encode``."""
        special = _add_special_kwargs(add_special_tokens, self.add_bos_token)
        if add_special_tokens is None and has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            special["add_special_tokens"] = False
        enc = self.tokenizer.encode(string, **special)
        return enc[-left_truncate_len:] if left_truncate_len else enc

    # ---- progress and cancellation ---------------------------------------------------------
    def _tick(self, done: int, total: int, note: str) -> None:
        if self.cancelled is not None and self.cancelled.is_set():
            raise JobCancelled(f"evaluation cancelled after {done}/{total} {note} requests")
        if self.progress is not None:
            self.progress(done, total, note)

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
        self.stats["requests"] += total
        for (key, _, _), answer in zip(requests, results):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, answer)
        return results

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

    def _rolling(self, requests) -> list[float]:
        """Whole-document log-likelihood over disjoint windows, as ``HFLM.loglikelihood_rolling``."""
        windows, owners = [], []
        for i, req in enumerate(requests):
            (string,) = req.args
            for ctx, cont in map(
                lm_utils.make_disjoint_window,
                lm_utils.get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1,
                ),
            ):
                windows.append((None, ctx, cont))
                owners.append(i)
        scores = self._loglikelihood_tokens(windows)
        totals = [0.0] * len(requests)
        for i, (lp, _) in zip(owners, scores):
            totals[i] += lp
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # ---- generation ------------------------------------------------------------------------
    def _generate_until(self, requests) -> list[str]:
        """Greedy (or sampled) generation, batched by equal generation kwargs, as ``HFLM.generate_until``."""
        if not self.causal_routing:  # the session names its strategy (it has no `name`: its label)
            self.routing_session.check_causal("generation")
        eos = self.tokenizer.decode(self.eot_token_id, skip_special_tokens=False)
        order = sorted(range(len(requests)), key=lambda i: -len(self.tok_encode(requests[i].args[0])))
        by_kwargs: dict[str, list[int]] = {}
        for i in order:
            by_kwargs.setdefault(repr(sorted(requests[i].args[1].items())), []).append(i)
        results: list[str | None] = [None] * len(requests)
        done = 0
        self._tick(done, len(requests), "generate_until")
        for indices in by_kwargs.values():
            for start in range(0, len(indices), self.generate_batch_size):
                chunk = indices[start : start + self.generate_batch_size]
                for i, text in zip(chunk, self._generate([requests[i].args for i in chunk], eos)):
                    results[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                done += len(chunk)
                self.stats["batches"] += 1
                self._tick(done, len(requests), "generate_until")
        self.stats["requests"] += len(requests)
        return results

    #: positions beyond ``max_length`` that a generation's prompt and new tokens share (0 here; vLLM's
    #: window is ``max_model_len - 1``, its prompt and new tokens share all of ``max_model_len``)
    generation_room = 0

    def _generation_request(self, args: list[tuple[str, dict]], eos: str):
        """What both engines' ``_generate`` start from: the batch's contexts, its generation kwargs
        (lm-eval's normalisation), stop sequences, new-token budget, prompt budget (left truncation)
        and tokenizer options (no second BOS where the context carries one)."""
        contexts = [a[0] for a in args]
        kwargs = normalize_gen_kwargs(dict(args[0][1]), self.max_gen_toks)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        max_gen = kwargs.pop("max_gen_toks")
        max_ctx = self.max_length + self.generation_room - max_gen
        if max_ctx <= 0:
            raise ValueError(f"max_gen_toks {max_gen} leaves no room in max_length {self.max_length}")
        special = {}
        if has_bos_prefix(contexts[0], getattr(self.tokenizer, "bos_token", None)):
            special = {"add_special_tokens": False}
        elif self.add_bos_token is not None:
            special = {"add_special_tokens": self.add_bos_token}
        return contexts, kwargs, until, max_gen, max_ctx, special

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
