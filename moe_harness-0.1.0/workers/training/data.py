"""Batches as a pure function of (tokens, seed, step): every build in a comparison sees the same data
in the same order, and a resumed run needs only the step to continue where it stopped.

The corpus is cut into windows of ``seq_len + 1`` tokens at stride ``seq_len``; each epoch visits
them in a permutation drawn from ``(seed, epoch)``.
"""

from __future__ import annotations

import numpy as np


class Batches:
    def __init__(self, tokens: np.ndarray, batch_size: int, seq_len: int, seed: int):
        self.tokens, self.batch_size, self.seq_len, self.seed = tokens, batch_size, seq_len, seed
        self.windows = (len(tokens) - 1) // seq_len
        if self.windows < 1:
            raise ValueError(f"job.corpus: {len(tokens)} tokens is shorter than one sequence of "
                             f"{seq_len + 1} (job.train.seq_len + 1)")
        self._perm: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm:
            self._perm = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.windows)}
        return self._perm[epoch]

    def at(self, step: int) -> np.ndarray:
        """int64 array ``(batch_size, seq_len + 1)`` for ``step``: inputs ``[:, :-1]``, labels ``[:, 1:]``."""
        rows = []
        for i in range(step * self.batch_size, (step + 1) * self.batch_size):
            start = int(self._order(i // self.windows)[i % self.windows]) * self.seq_len
            rows.append(np.asarray(self.tokens[start:start + self.seq_len + 1], dtype=np.int64))
        return np.stack(rows)
