"""``corpus.tokenizer: word`` on a ``profile: bios`` corpus: one token per word, every corpus document
round-trips, a build trained on it saves the word tokenizer (a transformers fast tokenizer), its
capacity is scored over the whole population, and lm-eval scores it through the harness's LM with the
same bits per byte as lm-eval's own ``hf`` backend (within 1e-4)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from moe_schema import bios
from moe_schema.corpus import CorpusError, check_corpus
from moe_schema.tokens import BOS_ID, EOS_ID

CORPUS = {"kind": "knowledge", "profile": "bios", "tokenizer": "word", "entities": 20, "tokens": 20 * 57 * 6,
          "heldout_docs": 6}
JOB = {
    "kind": "train",
    "variant": {"name": "word-olmo", "model": "word-olmo", "routing": None,
                "build": {"config": {"model_type": "olmo", "hidden_size": 16, "intermediate_size": 32,
                                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
                                     "max_position_embeddings": 128, "vocab_size": bios.word_vocab_size()},
                          "seed": 0}},
    "corpus": CORPUS,
    "train": {"tokens": 12 * 4 * 64, "batch_size": 4, "seq_len": 64, "warmup_steps": 2, "heldout_points": 2,
              "heldout_docs": 3, "lr": 0.01},
    "seed": 0,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_in_process):
    home = tmp_path_factory.mktemp("word_home")
    return home, train_in_process(JOB, home)


def test_every_corpus_document_round_trips(trained):
    from transformers import AutoTokenizer

    from workers.corpora import bios as gen
    from workers.corpora.load import prepare, word_encoder

    home, _ = trained
    corpus = prepare(CORPUS, home)
    tok = AutoTokenizer.from_pretrained(str(corpus.path / "tokenizer"))
    assert len(tok) == bios.word_vocab_size() and (tok.bos_token_id, tok.eos_token_id) == (BOS_ID, EOS_ID)
    docs: list[str] = []
    encode = word_encoder(corpus.path / "tokenizer")

    def capture(batch):
        docs.extend(batch)
        return encode(batch)

    tokens, persons, stats = gen.generate(check_corpus(CORPUS), capture)
    assert np.array_equal(tokens, np.asarray(corpus.tokens))  # the cached corpus is this one
    bounds = np.flatnonzero(tokens == EOS_ID)
    starts = np.flatnonzero(tokens == BOS_ID)
    corpus_docs = docs[64:]  # the first 64 rendered were the length sample
    assert len(bounds) == len(starts) == stats["documents"] == len(corpus_docs)
    for doc, s, e in zip(corpus_docs, starts, bounds):
        ids = tokens[s + 1:e].tolist()
        assert len(ids) == len(doc.split(" "))  # one token per word
        assert tok.unk_token_id not in ids
        assert tok.decode(ids) == doc
    # uniform popularity: every person is the subject of the same number of biographies
    per = stats["documents"] // 20
    counts = [sum(d.startswith(gen.full_name(persons, i)) or f" {gen.full_name(persons, i)} " in d
                  for d in corpus_docs) for i in range(20)]
    assert counts == [per] * 20 and set(stats["exposures"].tolist()) == {per}


def test_trained_build_keeps_the_word_tokenizer_and_its_capacity(trained):
    from transformers import AutoTokenizer

    _, result = trained
    tok = AutoTokenizer.from_pretrained(result["build"]["checkpoint"])
    assert len(tok) == bios.word_vocab_size()
    assert result["corpus"]["tokenizer"] == "word"
    cap = result["capacity"]
    assert cap["persons"] == 20 and cap["tokenizer"] == "word"
    assert set(cap["loss_nats"]) == set(bios.ORDER) | {"name"}
    assert all(v > 0 for v in cap["loss_nats"].values())
    assert len(result["train"]["heldout_curve"]) == 2  # held-out text encoded with the word tokenizer


def test_word_tokenized_bits_per_byte_match_lm_eval_hf_backend(trained, heldout_matches_hf):
    heldout_matches_hf(trained[1], docs=6)


def test_too_small_a_vocabulary_is_refused(tmp_path):
    from workers.errors import JobError
    from workers.host import Host
    from workers.training.job import run as train

    config = {**JOB["variant"]["build"]["config"], "vocab_size": 300}
    job = {**JOB, "variant": {**JOB["variant"], "build": {"config": config, "seed": 0}}}
    with pytest.raises(JobError, match=r"vocab_size: 300 is smaller than the corpus's word tokenizer"):
        train(job, Host("cpu", home=tmp_path), lambda *a: None, threading.Event())


@pytest.mark.parametrize("spec,message", [
    ({"tokenizer": "word"}, r"corpus.tokenizer: 'word' needs profile: bios"),
    ({"profile": "bios", "zipf": 1.0}, r"corpus.zipf: profile bios gives every person the same number"),
    ({"profile": "bios", "attributes": ["city"]}, r"corpus.attributes: profile bios has its own"),
    ({"tokenizer": "wrod", "profile": "bios"}, r"corpus.tokenizer: unknown corpus tokenizer 'wrod' \(did you mean 'word'\?\)"),
])
def test_bad_corpus_options_are_one_line_errors(spec, message):
    with pytest.raises(CorpusError, match=message):
        check_corpus({"kind": "knowledge", **spec}, where="corpus")
