"""The ``bios`` profile's corpus (``moe_schema.bios``): persons, and one freshly rendered biography per
exposure, every person equally often.

A biography is six sentences, one per attribute, in a random order, each from one of four templates
drawn at random, each naming the person in full (Allen-Zhu & Li's bioS "multi + permute + fullname").
Words are separated by single spaces (punctuation too: "born on May 3 , 1950 ."), so the word
tokenizer gives one token per word and decodes back to the same text.

``persons``: ``{"names": [(first, middle, last) indices], "values": {part: int array}}`` with parts
``month, day, year, city, university, major, employer``; the employer's city follows the employer.
"""

from __future__ import annotations

import numpy as np

from moe_schema import bios

PARTS = {part: words for attr in bios.ATTRIBUTES.values() for part, words in attr["parts"].items()}


def make_persons(n: int, seed: int, offset: int = 0) -> dict:
    """``n`` persons with distinct names (drawn from the 160M name space) and uniform random values;
    ``offset`` > 0 draws a disjoint set of names (held-out persons never trained on)."""
    rng = np.random.default_rng([seed, 11, offset])
    sizes = (len(bios.FIRST), len(bios.MIDDLE), len(bios.LAST))
    codes: dict[int, None] = {}
    taken = set(make_persons(offset, seed)["codes"]) if offset else set()
    while len(codes) < n:
        for c in rng.integers(bios.NAME_SPACE, size=2 * (n - len(codes)) + 8).tolist():
            if c not in taken and len(codes) < n:
                codes.setdefault(c, None)
    code = np.fromiter(codes, dtype=np.int64, count=n)
    names = np.stack([code // (sizes[1] * sizes[2]), (code // sizes[2]) % sizes[1], code % sizes[2]], axis=1)
    values = {part: rng.integers(len(words), size=n) for part, words in PARTS.items()}
    return {"codes": code.tolist(), "names": names, "values": values}


def full_name(persons: dict, i: int) -> str:
    f, m, last = persons["names"][i]
    return f"{bios.FIRST[f]} {bios.MIDDLE[m]} {bios.LAST[last]}"


def fields(persons: dict, i: int) -> dict[str, str]:
    """Every template field of person ``i``: name, value parts and the employer's city."""
    out = {part: PARTS[part][persons["values"][part][i]] for part in PARTS}
    out["employer_city"] = bios.CITIES[bios.EMPLOYER_CITY[persons["values"]["employer"][i]]]
    out["name"] = full_name(persons, i)
    return out


def sentence_plan(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """For ``count`` biographies: the attribute order (a permutation per row) and template per attribute."""
    a = len(bios.ORDER)
    order = rng.permuted(np.tile(np.arange(a), (count, 1)), axis=1)
    templates = rng.integers(len(bios.ATTRIBUTES[bios.ORDER[0]]["templates"]), size=(count, a))
    return order, templates


def render(persons: dict, ids: np.ndarray, rng: np.random.Generator) -> list[str]:
    order, templates = sentence_plan(len(ids), rng)
    texts = [bios.ATTRIBUTES[a]["templates"] for a in bios.ORDER]
    docs = []
    for row, i in enumerate(ids.tolist()):
        f = fields(persons, i)
        docs.append(" ".join(texts[k][templates[row, k]].format(**f) for k in order[row].tolist()))
    return docs


def biographies_per_person(spec: dict, mean_tokens: float) -> int:
    """Biographies of each person so the corpus holds about ``spec["tokens"]`` tokens (at least 1)."""
    return max(1, int(round(spec["tokens"] / (mean_tokens * spec["entities"]))))


def generate(spec: dict, encode, vocab: dict[str, int] | None = None) -> tuple[np.ndarray, dict, dict]:
    """``(tokens, persons, stats)``: ``encode(docs) -> uint16 tokens`` (BOS doc EOS each) is the
    corpus tokenizer's; with ``vocab`` (the word tokenizer's) the corpus is built as ids directly
    (``render_ids``: the same tokens, fast). Every person gets the same number of biographies, in a
    shuffled order."""
    n = spec["entities"]
    persons = make_persons(n, spec["seed"])
    rng = np.random.default_rng([spec["seed"], 3])
    sample = render(persons, rng.integers(n, size=64), rng)
    mean_tokens = len(encode(sample)) / len(sample)
    per = biographies_per_person(spec, mean_tokens)
    ids = rng.permutation(np.repeat(np.arange(n), per))
    if vocab is not None:
        from moe_schema.tokens import BOS_ID, EOS_ID

        tokens = render_ids(persons, ids, rng, vocab, BOS_ID, EOS_ID)
    else:
        tokens = encode(render(persons, ids, rng))
    return tokens, persons, {"documents": len(ids), "exposures": np.full(n, per, dtype=np.int64),
                             "tokens_per_document": len(tokens) / len(ids)}


def heldout_documents(persons: dict, spec: dict) -> dict[str, list[dict]]:
    """Fresh biographies of ``heldout_docs`` trained persons (``seen``) and of as many never-named
    persons (``unseen``), in the rows ``workers.corpora.tasks`` writes."""
    n, count = spec["entities"], spec["heldout_docs"]
    rng = np.random.default_rng([spec["seed"], 6])
    seen_ids = np.sort(rng.choice(n, size=min(count, n), replace=False))
    seen = [{"text": t, "entity": int(e), "bucket": None, "exposures": None}
            for e, t in zip(seen_ids.tolist(), render(persons, seen_ids, rng))]
    fresh = make_persons(count, spec["seed"], offset=n)
    unseen = [{"text": t, "entity": None, "bucket": None, "exposures": 0}
              for t in render(fresh, np.arange(count), rng)]
    return {"seen": seen, "unseen": unseen}


def save_persons(path, persons: dict) -> None:
    np.savez(path, names=persons["names"], **{f"value_{k}": v for k, v in persons["values"].items()})


def load_persons(path) -> dict:
    with np.load(path) as z:
        return {"names": z["names"], "values": {k.removeprefix("value_"): z[k] for k in z.files
                                                if k.startswith("value_")}}


def _person_ids(persons: dict, vocab: dict[str, int]) -> dict[str, np.ndarray]:
    """Each template field's token id per person (word tokenizer: one token per word)."""
    out = {}
    for k, (col, words) in enumerate((("first", bios.FIRST), ("middle", bios.MIDDLE), ("last", bios.LAST))):
        table = np.array([vocab[w] for w in words], dtype=np.int64)
        out[col] = table[np.asarray(persons["names"])[:, k]]
    for part, words in PARTS.items():
        out[part] = np.array([vocab[w] for w in words], dtype=np.int64)[persons["values"][part]]
    city = np.array([vocab[bios.CITIES[c]] for c in bios.EMPLOYER_CITY], dtype=np.int64)
    out["employer_city"] = city[persons["values"]["employer"]]
    return out


def _template_items(template: str, vocab: dict[str, int]) -> list:
    """A template as token items: an int (a template word's id) or a field name (name: 3 fields)."""
    items: list = []
    for word in template.split(" "):
        if word.startswith("{") and word.endswith("}"):
            items += ["first", "middle", "last"] if word == "{name}" else [word[1:-1]]
        else:
            items.append(vocab[word])
    return items


def render_ids(persons: dict, ids: np.ndarray, rng: np.random.Generator, vocab: dict[str, int],
               bos: int, eos: int) -> np.ndarray:
    """The word-tokenized corpus of ``render(persons, ids, rng)`` built directly as token ids, each
    document ``BOS words EOS`` (the same rng draws, so the same biographies, token for token), in
    vectorised numpy: millions of biographies in seconds where rendering text takes minutes."""
    order, templates = sentence_plan(len(ids), rng)
    fields = {k: v[ids] for k, v in _person_ids(persons, vocab).items()}
    items = [[_template_items(t, vocab) for t in bios.ATTRIBUTES[a]["templates"]] for a in bios.ORDER]
    lengths = np.array([[len(x) for x in per] for per in items])  # [attribute, template]
    d = len(ids)
    rows = np.arange(d)
    sentence_len = lengths[order, templates[rows[:, None], order]]  # [doc, position]
    doc_len = sentence_len.sum(1) + 2
    start = np.concatenate([[0], np.cumsum(doc_len)[:-1]])
    out = np.empty(int(doc_len.sum()), dtype=np.uint16)
    out[start] = bos
    out[start + doc_len - 1] = eos
    offset = start + 1
    for s in range(order.shape[1]):
        attr = order[:, s]
        tmpl = templates[rows, attr]
        for a in range(len(bios.ORDER)):
            for t, its in enumerate(items[a]):
                sel = np.flatnonzero((attr == a) & (tmpl == t))
                if not sel.size:
                    continue
                at = offset[sel]
                for j, item in enumerate(its):
                    out[at + j] = item if isinstance(item, int) else fields[item][sel]
        offset = offset + sentence_len[:, s]
    return out
