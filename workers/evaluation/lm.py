"""What every engine's lm-eval ``LM`` shares: ``EngineLM``, over a build the worker already holds.

Tokenisation follows lm-eval's ``hf`` backend exactly (``_encode_pair`` from ``TemplateLM``, the
same ``tok_encode``, the same rolling windows and left truncation), so every per-request
log-likelihood matches ``hf`` to float precision on every engine. Each engine scores requests its
own way (``workers/engines/<engine>/lm.py``: ``_loglikelihood_tokens`` and ``_generate``).

Routing telemetry counts the tokens every request feeds the model, as if it ran alone, whatever
the batching (the same definition on every engine, so engines can be compared layer by layer):

- a loglikelihood request: its window ``(context + continuation)[:-1]`` (``batching.window``),
  each token once, so a context shared by n requests counts n times; padding never;
- a generation request: its prompt (after left truncation) and every generated token but the
  last, the one at which it stopped (a stop sequence completed, EOS, or ``max_gen_toks``): a row
  that stopped counts nothing more while the rest of its batch goes on; padding never.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import (
    _add_special_kwargs,
    configure_pad_token,
    handle_stop_sequences,
    has_bos_prefix,
    normalize_gen_kwargs,
    resolve_max_length,
)

from workers.errors import JobCancelled

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


class EngineLM(TemplateLM, ABC):
    """lm-eval ``LM`` over a build an engine hosts (``model``: its transformers model, or the
    engine's meta-device twin) and its tokenizer: what every engine's LM shares (lm-eval's ``hf``
    tokenisation, rolling windows, generation requests, shards, progress, statistics). An engine
    implements ``_loglikelihood_tokens`` and ``_generate``.

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
        return self._shard(requests, lambda rs: super(EngineLM, self).loglikelihood(rs, True), (0.0, False))

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

    @abstractmethod
    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kw) -> list[tuple[float, bool]]:
        """Score ``[((context, continuation) or None, context_tokens, continuation_tokens), ...]``
        → ``[(sum of log p(continuation), whether greedy decoding gives it), ...]``, in order::

            lm._loglikelihood_tokens([(("The sky is", " blue"), [464, 6766, 318], [4171])])
            # [(-3.2, True)]

        Count ``self.stats["tokens"]``/``["batches"]``, call ``self._tick`` between batches, and end
        with ``return self._answered(requests, results)``."""

    def _answered(self, requests, results: list) -> list:
        """What every engine's ``_loglikelihood_tokens`` ends with: the requests counted, each keyed
        answer handed to lm-eval's cache hook; ``results`` returned."""
        self.stats["requests"] += len(requests)
        for (key, _, _), answer in zip(requests, results):
            if key is not None:
                self.cache_hook.add_partial("loglikelihood", key, answer)
        return results

    @abstractmethod
    def _generate(self, args: list[tuple[str, dict]], eos: str) -> list[str]:
        """Generate for one batch of ``(context, gen_kwargs)`` with equal kwargs, as ``hf`` does
        (start from ``self._generation_request(args, eos)``; cut each text at its stop sequence)::

            lm._generate([("Q: 2+2? A:", {"until": ["\\n"], "max_gen_toks": 8})], "</s>")  # [" 4"]
        """

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

