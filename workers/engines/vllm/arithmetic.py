"""The vLLM engine's arithmetic, with torch only (no vLLM): what ``lm`` and ``routing`` compute
around vLLM's calls, so that the default tests (and mutation testing) reach it on a machine
without vLLM; ``tox -e vllm`` runs it through the real engine.

- ``loglikelihood_rows``: each request's window (cut as lm-eval's ``hf`` cuts it) as vLLM's prompt,
  the continuation but its last token; ``score``: its log-likelihood and greediness read back from
  the prompt's logprobs and the one sampled token; ``generation_settings``: ``generate_until``'s
  sampling (greedy unless the task samples); ``preemptions``: requests vLLM computed again.
- ``TokenIds``: a step's flattened input ids and positions (the hooks that ``hash`` reads);
  ``routing_function``: one layer's router calling a strategy's rule and counting its telemetry and
  census; ``census_summary``: the probes' experts touched per forward; ``layer_number``.
"""

from __future__ import annotations

import re

import torch

from workers.evaluation.batching import window
from workers.experts.sentinel import fill_empty_slots


def loglikelihood_rows(requests, max_length: int) -> list[tuple[list[int], list[int]]]:
    """``(prompt, continuation)`` per lm-eval request ``(key, context, continuation)``: the prompt is
    the window ``(context + continuation)[:-1]`` (its last token is sampled, not prompted)."""
    rows = []
    for _, ctx, cont in requests:
        context, continuation = window(ctx, cont, max_length)
        rows.append((list(context) + list(continuation[:-1]), list(continuation)))
    return rows


def prompt_logprobs(continuation: list[int]) -> int | None:
    """vLLM's ``prompt_logprobs`` for a row: 0 (the prompt token's own) where the continuation has
    tokens in the prompt, None for a one-token continuation (only the sampled position is read)."""
    return 0 if len(continuation) > 1 else None


def score(prompt: list[int], continuation: list[int], out) -> tuple[float, bool]:
    """``(log-likelihood, greedy)`` of one row from vLLM's output: the continuation's tokens in the
    prompt (``out.prompt_logprobs[position][token]``: logprob and rank) and its last token at the
    sampled position (``out.outputs[0]``: ``logprobs[0][token]`` and the greedy ``token_ids[0]``)."""
    total, greedy = 0.0, True
    first = len(prompt) - (len(continuation) - 1)  # the continuation's first token in the prompt
    for position in range(first, len(prompt)):
        entry = out.prompt_logprobs[position][prompt[position]]
        total += float(entry.logprob)
        greedy = greedy and entry.rank == 1
    sampled = out.outputs[0]
    total += float(sampled.logprobs[0][continuation[-1]].logprob)
    greedy = greedy and sampled.token_ids[0] == continuation[-1]
    return total, greedy


def generation_settings(kwargs: dict, max_gen: int, until: list[str]) -> dict:
    """``SamplingParams`` keywords of ``generate_until``: greedy (temperature 0) unless the task
    samples (``do_sample``, or a temperature above 0); ``top_k`` 0 or unset is vLLM's -1 (off)."""
    sampled = kwargs.get("do_sample") or kwargs.get("temperature", 0.0) > 0.0
    return dict(max_tokens=max_gen, temperature=float(kwargs.get("temperature", 1.0)) if sampled else 0.0,
                top_p=float(kwargs.get("top_p") or 1.0), top_k=int(kwargs.get("top_k") or 0) or -1,
                stop=[u for u in until if u])


def preemptions(outs) -> int:
    """How many times vLLM preempted these requests (each computed again from its first token)."""
    return sum(int(getattr(o.metrics, "num_preemptions", 0) or 0) for o in outs)


class TokenIds:
    """The current step's flattened input ids (a pre-hook on the input embedding) and positions
    (a pre-hook on the model's forward, ``positions``)."""

    def __init__(self):
        self.ids: torch.Tensor | None = None
        self.positions: torch.Tensor | None = None

    def token_ids(self, n: int) -> torch.Tensor | None:
        ids = self.ids
        return ids.reshape(-1) if ids is not None and ids.numel() == n else None

    def token_positions(self, n: int) -> torch.Tensor | None:
        positions = self.positions
        return positions.reshape(-1) if positions is not None and positions.numel() == n else None

    def hook(self, module, args):
        if args and isinstance(args[0], torch.Tensor) and not args[0].is_floating_point():
            self.ids = args[0]

    def model_hook(self, module, args, kwargs):
        positions = kwargs.get("positions", args[1] if len(args) > 1 else None)
        self.positions = positions if isinstance(positions, torch.Tensor) and positions.dim() == 1 else None


def routing_function(strategy, gate):
    """The ``custom_routing_function`` of one layer: ``strategy.rule(gate, logits)``, its picks
    counted in ``gate.counts`` (and, while the probes record it, ``gate.census``: distinct experts,
    picks, tokens), empty slots filled with the token's first expert at weight 0."""

    def route(hidden_states, gating_output, topk, renormalize):
        weights, index = strategy.rule(gate, gating_output)
        gate.counts.record(index, None, None, 0)
        if gate.census is not None:
            valid = index[index < gate.num_experts]
            gate.census.append((int(valid.unique().numel()), int(valid.numel()), int(index.shape[0])))
        if strategy.padded:
            index, weights = fill_empty_slots(index, weights, gate.num_experts)
        return weights.to(torch.float32).contiguous(), index.to(torch.int32).contiguous()

    return route


def census_summary(recorded: list[list | None], skip: int = 0) -> dict | None:
    """``ExpertCensus.summary``'s shape from each layer's census records ``(distinct experts, picks,
    tokens)`` per forward, without the first ``skip`` forwards (a decode's prefill), over the
    forwards every layer recorded; None with no layer or no such forward."""
    if not recorded:
        return None
    recorded = [(r or [])[skip:] for r in recorded]
    passes = min(len(r) for r in recorded)
    if not passes:
        return None
    per_layer = [sum(x[0] for x in r[:passes]) / passes for r in recorded]
    picks = sum(x[1] for r in recorded for x in r[:passes])
    tokens = sum(x[2] for r in recorded for x in r[:passes])
    return {"experts_touched": sum(per_layer) / len(per_layer), "experts_touched_per_layer": per_layer,
            "experts_per_token": picks / tokens if tokens else None, "passes": passes}


def layer_number(name: str, position: int) -> int:
    """A fused-MoE module's layer: the number after ``layers.`` in its name, else its position."""
    match = re.search(r"layers\.(\d+)\.", name + ".")
    return int(match.group(1)) if match else position
