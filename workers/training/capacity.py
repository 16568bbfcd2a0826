"""Knowledge capacity of a trained build on a ``bios`` corpus, measured Allen-Zhu & Li's way
(arXiv 2404.05405; for bioS the measure is their Definition 4.3) over the WHOLE population.

For every person one biography is rendered afresh (same distribution as training: random sentence
order and templates) and scored once: the cross-entropy (nats, full-vocabulary softmax, the model's
own next-token distribution) of

- each attribute's value tokens given everything before them (a birth date's month, day and year
  tokens; one token per value with ``tokenizer: word``, the value's bytes with ``byte``), summed
  per attribute over the population: the paper's ``p2`` (times N);
- the name tokens of the biography's first sentence, right after BOS: the paper's ``p1`` (times N).

The arithmetic (``moe_schema.capacity.bits_stored``) is pure python; here is only the scoring.
``model(input_ids) -> logits``: any callable giving ``[batch, seq, vocab]`` logits, so unit tests use
constructed models with known answers.
"""

from __future__ import annotations

import numpy as np

from moe_schema import bios as profile
from moe_schema.tokens import BOS_ID, EOS_ID, PAD_ID
from workers.corpora import bios

SEED_TAG = 21  # the measurement's biographies: rng [corpus seed, 21], apart from training's draws


def word_encoder(tokenizer: str):
    """``encode(word, first) -> list of ids`` of one word of a biography (``first``: no space before)."""
    if tokenizer == "word":
        from workers.builds.tokenizer import word_vocab

        vocab = word_vocab(profile.vocabulary())
        return lambda word, first: [vocab[word]]
    return lambda word, first: list((word if first else " " + word).encode("utf-8"))


def scored_biographies(persons: dict, seed: int, tokenizer: str) -> tuple[list[list[int]], list[dict]]:
    """One biography per person: its ids (BOS first) and, per attribute and ``name``, the positions
    of its value tokens (for ``name``: the first sentence's name tokens)."""
    n = len(persons["names"])
    rng = np.random.default_rng([seed, SEED_TAG])
    order, templates = bios.sentence_plan(n, rng)
    encode = word_encoder(tokenizer)
    texts = [profile.ATTRIBUTES[a]["templates"] for a in profile.ORDER]
    value_fields = {a: set(profile.ATTRIBUTES[a]["parts"]) or {a} for a in profile.ORDER}
    rows, spans = [], []
    for i in range(n):
        f = bios.fields(persons, i)
        ids, where = [BOS_ID], {a: [] for a in profile.ORDER}
        where["name"] = []
        for s, k in enumerate(order[i].tolist()):
            attr = profile.ORDER[k]
            for word in texts[k][templates[i, k]].split(" "):
                field = word[1:-1] if word.startswith("{") and word.endswith("}") else None
                text = f[field] if field else word
                for w in text.split(" "):
                    tok = encode(w, len(ids) == 1)
                    pos = list(range(len(ids), len(ids) + len(tok)))
                    if field == "name" and s == 0:
                        where["name"] += pos
                    elif field in value_fields[attr]:
                        where[attr] += pos
                    ids += tok
        rows.append(ids + [EOS_ID])
        spans.append(where)
    return rows, spans


def losses(model, rows: list[list[int]], spans: list[dict], batch_size: int = 128,
           device="cpu") -> dict[str, float]:
    """Summed cross-entropy (nats) over the population of each attribute's value tokens and of
    ``name``. Runs under ``no_grad``."""
    import torch

    keys = list(spans[0])
    total = {k: 0.0 for k in keys}
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            width = max(len(r) for r in chunk)
            ids = torch.full((len(chunk), width), PAD_ID, dtype=torch.long)
            for b, r in enumerate(chunk):
                ids[b, :len(r)] = torch.tensor(r)
            ids = ids.to(device)
            logp = torch.log_softmax(model(ids[:, :-1]).float(), dim=-1)
            for b in range(len(chunk)):
                sp = spans[start + b]
                for k in keys:
                    if sp[k]:
                        pos = torch.tensor(sp[k], device=ids.device)
                        total[k] -= float(logp[b, pos - 1, ids[b, pos]].sum())
    return total


def measure(model, persons: dict, seed: int, tokenizer: str, device="cpu", batch_size: int = 128) -> dict:
    """The scoring the train job records in ``result["capacity"]``: losses summed over all persons."""
    rows, spans = scored_biographies(persons, seed, tokenizer)
    return {"persons": len(rows), "tokenizer": tokenizer, "loss_nats": losses(model, rows, spans, batch_size, device),
            "value_counts": profile.value_counts(), "name_space": profile.NAME_SPACE,
            "tokens_per_biography": sum(len(r) for r in rows) / len(rows)}
