"""Held-out loss along training: a fixed small batch of the knowledge corpus's held-out biographies,
scored at a handful of log-spaced token counts while a train job runs.

Why: training loss is measured on the training text, so it cannot tell knowledge that generalises to
a fresh sentence from memorised strings, nor say how many tokens a build needed to reach a loss.
The batch is the first ``docs`` documents of each held-out kind (``seen``: fresh biographies of
trained entities; ``unseen``: entities never mentioned; see ``workers.corpora.tasks``), each scored
like lm-eval's rolling log-likelihood: its prefix token first (the tokenizer's BOS, else EOS, as
lm-eval's backends choose), then every byte predicted. The loss is
the mean cross-entropy in nats per predicted token (= per byte: divide by ln 2 for bits per byte).
Scoring runs under ``no_grad`` in eval mode (aux_free's bias does not move) and the caller keeps its
time out of the training clock.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from workers.corpora.knowledge import EOS_ID

KINDS = ("seen", "unseen")


def curve_steps(steps: int, points: int) -> list[int]:
    """``points`` log-spaced steps from about ``steps / 100`` to ``steps`` (the last is always
    ``steps``; fewer when rounding makes steps coincide)."""
    if points <= 0 or steps <= 0:
        return []
    if points == 1:
        return [steps]
    first = max(1.0, steps / 100)
    out = sorted({int(round(x)) for x in np.geomspace(first, steps, points)} | {steps})
    return [s for s in out if 1 <= s <= steps]


def heldout_documents(meta: dict, docs: int) -> dict[str, list[str]] | None:
    """The first ``docs`` held-out texts of each kind from a knowledge corpus's meta; None without them."""
    tasks = meta.get("tasks") or {}
    out = {}
    for kind in KINDS:
        path = tasks.get(f"longtail_heldout_{kind}")
        if path is None:
            return None
        lines = Path(path.replace(".yaml", ".jsonl")).read_text().splitlines()
        out[kind] = [json.loads(line)["text"] for line in lines[:docs]]
    return out


def _bytes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def make_batch(texts: list[str], max_len: int, prefix_id: int = EOS_ID, encode=_bytes) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, mask)``: each row the prefix token + the document's bytes, right-padded (causal
    attention: padding on the right changes no earlier position); ``mask`` marks the predicted
    positions (every byte, none of the padding), all cut to ``max_len`` tokens."""
    rows = [np.concatenate([[prefix_id], encode(t)])[:max_len]
            .astype(np.int64) for t in texts]
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), EOS_ID, dtype=np.int64)
    mask = np.zeros((len(rows), width - 1), dtype=bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r) - 1] = True
    return ids, mask


class HeldoutEval:
    """Scores the fixed held-out batch on a model; ``None`` from :meth:`create` without held-out text."""

    def __init__(self, batches: dict, device):
        import torch

        self.batches = {k: (torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
                        for k, (ids, mask) in batches.items()}

    @classmethod
    def create(cls, meta: dict, docs: int, max_len: int, device, prefix_id: int = EOS_ID,
               encode=_bytes) -> HeldoutEval | None:
        """``encode(text) -> ids``: the corpus tokenizer's (bytes unless the corpus says otherwise)."""
        texts = heldout_documents(meta, docs)
        if not texts or not all(texts.values()):
            return None
        return cls({k: make_batch(v, max_len, prefix_id, encode) for k, v in texts.items()}, device)

    def loss(self, model, autocast: dict) -> dict[str, float]:
        """``{kind: mean nats per predicted token}``; the model is left in the mode it was in."""
        import torch
        import torch.nn.functional as F

        was_training = model.training
        model.eval()
        out = {}
        try:
            with torch.no_grad(), torch.autocast(**autocast):
                for kind, (ids, mask) in self.batches.items():
                    logits = model(input_ids=ids[:, :-1]).logits.float()
                    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1),
                                          reduction="none").reshape(mask.shape)
                    out[kind] = float((nll * mask).sum() / mask.sum())
        finally:
            model.train(was_training)
        if any(not math.isfinite(v) for v in out.values()):
            out = {k: (v if math.isfinite(v) else None) for k, v in out.items()}
        return out
