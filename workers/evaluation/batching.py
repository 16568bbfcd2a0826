"""Plan the forward passes for a list of log-likelihood requests (torch-free, pure bookkeeping).

A request is ``(context tokens, continuation tokens)``, already cut to the model's window the way
lm-eval's ``hf`` backend cuts it (see :func:`window`). Requests with the same context form a
:class:`Group` and share one row ("prefix sharing"): the context once, then every continuation
but its last token, each attending to the context and to itself only (a block attention mask,
positions restarting after the context). A group of one is the row ``context + continuation[:-1]``,
exactly lm-eval's. A single-token continuation adds nothing to its group's row: the context's
last logits score it.

Batches are filled longest-first under a budget of padded tokens, not a fixed request count.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def window(context: list[int], continuation: list[int], max_length: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """lm-eval's causal cut: keep the last ``max_length + 1`` tokens of context + continuation,
    score the continuation, condition on what is left of the context (at least one token)."""
    if not context or not continuation:
        raise ValueError("a log-likelihood request needs a non-empty context and continuation")
    if len(continuation) > max_length:
        raise ValueError(f"continuation of {len(continuation)} tokens exceeds max_length {max_length}")
    kept = (list(context) + list(continuation))[-(max_length + 1):]
    return tuple(kept[: len(kept) - len(continuation)]), tuple(continuation)


@dataclass
class Group:
    """Requests sharing one context: ``members`` index the request list, ``conts`` their continuations."""

    context: tuple[int, ...]
    members: list[int] = field(default_factory=list)
    conts: list[tuple[int, ...]] = field(default_factory=list)

    def row(self) -> tuple[list[int], list[int], list[list[int]]]:
        """``(tokens, segment ids, scored positions per member)`` of this group's packed row.

        Segment 0 is the context, segment j + 1 member j's continuation (all but its last token).
        Member j's continuation token t is predicted by the logits at ``positions[j][t]``.
        """
        tokens, segments = list(self.context), [0] * len(self.context)
        positions = []
        for j, cont in enumerate(self.conts):
            start = len(tokens)
            positions.append([len(self.context) - 1] + list(range(start, start + len(cont) - 1)))
            tokens += cont[:-1]
            segments += [j + 1] * (len(cont) - 1)
        return tokens, segments, positions

    def row_len(self) -> int:
        return len(self.context) + sum(len(c) - 1 for c in self.conts)

    def packed(self) -> bool:
        """Whether the row needs the block mask (two or more continuations with tokens in it)."""
        return sum(len(c) > 1 for c in self.conts) > 1


def group_requests(requests: list[tuple[tuple[int, ...], tuple[int, ...]]], share: bool,
                   max_row: int | None = None) -> list[Group]:
    """Group windowed requests by context (``share``), else one group per request.

    Sharing pays when the context is long next to what a continuation adds, so a request whose
    continuation adds more tokens to the row than its context has (e.g. a rolling-perplexity
    window) stays alone, and a packed row grows to at most ``max_row`` tokens (then the context
    opens another row).
    """
    open_rows: dict[tuple, Group] = {}
    out: list[Group] = []
    for i, (ctx, cont) in enumerate(requests):
        g = open_rows.get(ctx)  # always None without share: nothing is left open then
        alone = not share or len(cont) - 1 > len(ctx)
        if g is None or alone or (max_row is not None and g.row_len() + len(cont) - 1 > max_row):
            g = Group(ctx)
            out.append(g)
            if not alone:
                open_rows[ctx] = g
        g.members.append(i)
        g.conts.append(cont)
    return out


def batch_cost(groups: list[Group]) -> int:
    """Padded tokens of a batch."""
    return len(groups) * max(g.row_len() for g in groups)


def plan_batches(groups: list[Group], max_tokens: int, max_rows: int = 256,
                 max_mask_cells: int = 1 << 25) -> list[list[Group]]:
    """Sort groups longest-first and cut them into batches of at most ``max_tokens`` padded tokens
    and, where rows are packed, a block mask of at most ``max_mask_cells`` (rows x width^2) cells
    (a group alone over the budget still gets a batch of its own)."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    order = sorted(groups, key=lambda g: (-g.row_len(), g.context))
    batches: list[list[Group]] = []
    current: list[Group] = []
    for g in order:
        trial = current + [g]
        width = max(x.row_len() for x in trial)
        mask_cells = len(trial) * width * width if any(x.packed() for x in trial) else 0
        if current and (batch_cost(trial) > max_tokens or len(trial) > max_rows or mask_cells > max_mask_cells):
            batches.append(current)
            trial = [g]
        current = trial
    if current:
        batches.append(current)
    return batches
