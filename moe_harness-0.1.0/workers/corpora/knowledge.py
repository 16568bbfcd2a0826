"""The synthetic knowledge corpus: made-up people, their facts, and Zipf-distributed biographies.

Entity ``i`` has popularity rank ``i``: a biography mentions it with probability ∝ ``1/(i+1)^zipf``.
Each biography states every attribute of one entity once, in a random order, each sentence drawn
from several paraphrase templates (Allen-Zhu & Li's "bioS multi+permute"), so a fact is seen in
several forms. Sampling is vectorised with numpy; the text is encoded to bytes (the byte tokenizer's
ids) in one go, each document as ``BOS bytes EOS``: lm-eval scores a held-out document after the
tokenizer's BOS, so training shows the model that token before every document (``FORMAT`` 2;
format 1 had no BOS, and the model met an untrained token at the start of every held-out text).
"""

from __future__ import annotations

import numpy as np

from moe_schema.knowledge import ATTRIBUTES, FORMAT  # noqa: F401  (the vocabulary both sides read)
from moe_schema.tokens import BOS_ID, EOS_ID


_FIRST = ("Ada", "Bram", "Cleo", "Dov", "Edda", "Finn", "Gwen", "Hugo", "Ines", "Jory", "Kaia", "Lev", "Mira",
          "Nils", "Orla", "Pim", "Quin", "Rhea", "Sven", "Tova", "Ugo", "Vera", "Wes", "Xan", "Yara", "Zeno")
_SYLLABLES = ("ka", "lo", "mir", "ten", "vos", "dra", "bel", "quo", "ran", "sel", "tor", "ul", "fen", "gar",
              "hal", "jin", "ke", "lum", "nor", "pel", "rik", "sta", "vin", "wes")


def _name(i: int) -> str:
    """The name of entity index ``i``: "First Surname", the surname spelling a base-24 number of ``i // 26``,
    so distinct indices give distinct names."""
    first, j = _FIRST[i % len(_FIRST)], i // len(_FIRST)
    base = len(_SYLLABLES) ** 3
    if j < base:  # a bijection on 0..base-1 (7919 is prime to 24^3) spreads the syllables
        j = (j * 7919 + 1234) % base
    parts = []
    for _ in range(3):
        parts.append(_SYLLABLES[j % len(_SYLLABLES)])
        j //= len(_SYLLABLES)
    while j:
        parts.append(_SYLLABLES[j % len(_SYLLABLES)])
        j //= len(_SYLLABLES)
    return f"{first} {''.join(parts).capitalize()}"


def entity_names(n: int, seed: int) -> list[str]:
    """``n`` distinct names (indices ``0..n-1`` in a seeded order, so popularity rank is not alphabetical)."""
    rng = np.random.default_rng([seed, 1])
    return [_name(int(i)) for i in rng.permutation(n)]


def unseen_entities(n: int, count: int, attributes: list[str], seed: int) -> dict:
    """``count`` entities the corpus never mentions: names of indices ``n..n+count-1`` (none of the
    ``n`` trained names) with their own random facts, for held-out text of language alone."""
    rng = np.random.default_rng([seed, 5])
    values = {a: rng.integers(len(ATTRIBUTES[a][0]), size=count) for a in attributes}
    return {"names": [_name(i) for i in range(n, n + count)], "values": values}


def make_entities(n: int, attributes: list[str], seed: int) -> dict:
    """Names and value indices: ``{"names": [...], "values": {attr: int array of length n}}``."""
    rng = np.random.default_rng([seed, 2])
    values = {a: rng.integers(len(ATTRIBUTES[a][0]), size=n) for a in attributes}
    return {"names": entity_names(n, seed), "values": values}


def popularity(n: int, zipf: float) -> np.ndarray:
    """Probability that a biography is about entity ``i`` (rank ``i``): ∝ 1 / (i+1)^zipf."""
    weights = 1.0 / np.arange(1, n + 1, dtype=np.float64) ** zipf
    return weights / weights.sum()


def render(entities: dict, entity_ids: np.ndarray, attributes: list[str], rng: np.random.Generator) -> list[str]:
    """One biography per entity id: every attribute once, order and templates at random."""
    d, a = len(entity_ids), len(attributes)
    order = rng.permuted(np.tile(np.arange(a), (d, 1)), axis=1)
    templates = rng.integers(len(next(iter(ATTRIBUTES.values()))[1]), size=(d, a))
    names = entities["names"]
    value_text = [ATTRIBUTES[x][0] for x in attributes]
    value_idx = [entities["values"][x] for x in attributes]
    template_text = [ATTRIBUTES[x][1] for x in attributes]
    docs = []
    for row, e in enumerate(entity_ids.tolist()):
        name = names[e]
        docs.append(" ".join(
            template_text[k][templates[row, k]].format(name=name, v=value_text[k][value_idx[k][e]])
            for k in order[row].tolist()))
    return docs


def encode(docs: list[str]) -> np.ndarray:
    """Byte-tokenize documents into one uint16 array, each as ``BOS bytes EOS``."""
    if not docs:
        return np.zeros(0, dtype=np.uint16)
    raw = ("\x00".join(docs) + "\x00").encode("utf-8")
    if raw.count(0) != len(docs):
        raise ValueError("a document holds a NUL character")
    tokens = np.frombuffer(raw, dtype=np.uint8).astype(np.uint16)
    ends = np.flatnonzero(tokens == 0)
    tokens[ends] = EOS_ID
    starts = np.concatenate([[0], ends[:-1] + 1])
    return np.insert(tokens, starts, BOS_ID)


def generate(spec: dict) -> tuple[np.ndarray, dict, dict]:
    """``(tokens, entities, stats)`` for a checked knowledge spec (``moe_schema.corpus``).

    The number of biographies is chosen so the corpus holds about ``spec["tokens"]`` tokens;
    ``stats["exposures"]`` counts the biographies of each entity (each states every fact once).
    """
    n, attributes = spec["entities"], spec["attributes"]
    entities = make_entities(n, attributes, spec["seed"])
    rng = np.random.default_rng([spec["seed"], 3])
    sample = render(entities, rng.integers(n, size=64), attributes, rng)
    mean_len = np.mean([len(s.encode()) + 2 for s in sample])  # + BOS and EOS
    num_docs = max(1, int(np.ceil(spec["tokens"] / mean_len)))
    entity_ids = rng.choice(n, size=num_docs, p=popularity(n, spec["zipf"]))
    tokens = encode(render(entities, entity_ids, attributes, rng))
    exposures = np.bincount(entity_ids, minlength=n)
    return tokens, entities, {"documents": num_docs, "exposures": exposures}
