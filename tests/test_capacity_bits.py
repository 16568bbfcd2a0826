"""Bits stored, Allen-Zhu & Li's way, on constructed models whose answer is known: an oracle stores
exactly the corpus's bits, a model uniform over each attribute's values stores 0, one that knows half
the persons stores half. The scoring (``workers.training.capacity``) and the arithmetic
(``moe_schema.capacity.bits_stored``) are both exercised; no training."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from moe_schema import bios  # noqa: E402
from moe_schema.capacity import bits_stored  # noqa: E402
from workers.builds.tokenizer import word_vocab  # noqa: E402
from workers.corpora.bios import PARTS, make_persons  # noqa: E402
from workers.training.capacity import measure, scored_biographies  # noqa: E402

N, SEED = 12, 3
VOCAB = word_vocab(bios.vocabulary())
V = max(VOCAB.values()) + 1
PART_IDS = {part: [VOCAB[w] for w in words] for part, words in PARTS.items()}
NAME_IDS = [[VOCAB[w] for w in group] for group in (bios.FIRST, bios.MIDDLE, bios.LAST)]


class Table:
    """A constructed model: for each biography, fixed logits per position (looked up by its ids)."""

    def __init__(self, persons: dict, tokenizer: str, knows):
        rows, spans = scored_biographies(persons, SEED, tokenizer)
        self.logits = {}
        for i, (row, span) in enumerate(zip(rows, spans)):
            out = torch.zeros(len(row) - 1, V)
            for t in range(1, len(row)):
                out[t - 1, row[t]] = 1e4  # the oracle: every next token with probability 1
            if not knows(i):
                self._uniform(out, row, span)
            self.logits[tuple(row[:-1])] = out

    @staticmethod
    def _uniform(out, row, span):
        """Uniform over the values each value token could take (and over name parts for the name)."""
        for attr in bios.ORDER:
            parts = list(bios.ATTRIBUTES[attr]["parts"]) or [None]
            for pos, part in zip(span[attr], parts):
                out[pos - 1] = -1e4
                choices = PART_IDS[part] if part else [row[pos]]  # employer city: one possible value
                out[pos - 1, choices] = 0.0
        for pos, ids in zip(span["name"], NAME_IDS):
            out[pos - 1] = -1e4
            out[pos - 1, ids] = 0.0

    def __call__(self, ids):
        batch = []
        for r in ids.tolist():
            key = tuple(r)
            while key not in self.logits:  # strip right padding
                key = key[:-1]
            x = self.logits[key]
            batch.append(torch.cat([x, torch.zeros(len(r) - len(x), V)]))
        return torch.stack(batch)


@pytest.fixture(scope="module")
def persons():
    return make_persons(N, SEED)


def _bits(persons, knows):
    measured = measure(Table(persons, "word", knows), persons, SEED, "word", batch_size=5)
    return bits_stored(measured, {"total": 1000, "total_no_embed": 100})


def test_oracle_stores_exactly_the_corpus_bits(persons):
    got = _bits(persons, lambda i: True)
    assert got["fact_bits"] == pytest.approx(N * bios.bits_per_person(), rel=1e-12)
    assert got["value_bits"] == pytest.approx(got["fact_bits"], abs=1e-6)
    assert got["name_bits"] == pytest.approx(N * math.log2(bios.NAME_SPACE - N), abs=1e-6)
    assert got["bits"] == pytest.approx(got["value_bits"] + got["name_bits"])
    # this oracle sees the whole row, so it "knows" whose biography starts after BOS: N log2 N bits above
    # the name ceiling, which a causal model (uniform over the N names at best) cannot pass
    assert got["bits"] - got["max_bits"] == pytest.approx(N * math.log2(N), abs=1e-6)
    assert got["bits_per_param_total"] == pytest.approx(got["bits"] / 1000)
    assert got["bits_per_param_total_no_embed"] == pytest.approx(got["bits"] / 100)


def test_uniform_model_stores_nothing(persons):
    got = _bits(persons, lambda i: False)
    assert got["value_bits"] == pytest.approx(0.0, abs=1e-3)
    for attr, b in got["by_attribute"].items():
        assert b == pytest.approx(0.0, abs=1e-3), attr
    # names uniform over the 160M name space: N log2((N0 - N) / N0), a hair below 0
    assert got["name_bits"] == pytest.approx(N * math.log2((bios.NAME_SPACE - N) / bios.NAME_SPACE), abs=1e-3)


def test_knowing_half_the_persons_stores_half(persons):
    got = _bits(persons, lambda i: i % 2 == 0)
    assert got["value_bits"] == pytest.approx(got["fact_bits"] / 2, abs=1e-3)


def test_spans_cover_each_value_once(persons):
    """Each biography marks 3 date tokens, one token per other value, 3 name tokens (word tokenizer);
    with bytes, each value's bytes: the same text either way."""
    rows, spans = scored_biographies(persons, SEED, "word")
    inverse = {i: w for w, i in VOCAB.items()}
    for i, span in enumerate(spans):
        assert [len(span[a]) for a in bios.ORDER] == [3, 1, 1, 1, 1, 1] and len(span["name"]) == 3
        f, m, last = persons["names"][i]
        assert [inverse[rows[i][p]] for p in span["name"]] == [bios.FIRST[f], bios.MIDDLE[m], bios.LAST[last]]
        assert inverse[rows[i][span["major"][0]]] == bios.MAJORS[persons["values"]["major"][i]]
    brows, bspans = scored_biographies(persons, SEED, "byte")
    for i in range(N):
        text = bytes(brows[i][1:-1]).decode()
        assert " ".join(inverse[t] for t in rows[i][1:-1]) == text
        year = persons["values"]["year"][i]
        assert bytes(brows[i][p] for p in bspans[i]["birth_date"]).decode().endswith(bios.YEARS[year])


def test_bits_per_person_arithmetic():
    """46.59 bits names aside: log2(12*28*200) + log2 200 + log2 300 + log2 100 + log2 263."""
    expected = sum(math.log2(x) for x in (12 * 28 * 200, 200, 300, 100, 263))
    assert bios.bits_per_person() == pytest.approx(expected) == pytest.approx(46.5916, abs=1e-4)
    assert bios.value_counts()["employer_city"] == 1
