"""workers.corpora: the synthetic knowledge corpus, its lm-eval tasks, local files, the capacity estimate."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from moe_schema import capacity
from workers.corpora.knowledge import ATTRIBUTES, BOS_ID, EOS_ID
from workers.corpora.load import prepare
from moe_schema.corpus import CorpusError, check_corpus

SPEC = {"kind": "knowledge", "entities": 300, "tokens": 120_000, "zipf": 1.0, "seed": 3, "eval_per_bucket": 20}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return prepare(SPEC, tmp_path_factory.mktemp("corpora"))


def test_knowledge_corpus_shape_and_zipf(corpus):
    meta = corpus.meta
    assert corpus.tokens.dtype == np.uint16 and abs(len(corpus.tokens) - 120_000) < 5_000
    assert int((np.asarray(corpus.tokens) == EOS_ID).sum()) == meta["documents"]
    b = meta["buckets"]
    assert [b[k]["entities"] for k in ("head", "torso", "tail")] == [30, 90, 180]
    assert b["head"]["exposures_mean"] > 5 * b["torso"]["exposures_mean"]
    assert b["head"]["exposures_mean"] > b["torso"]["exposures_mean"] > b["tail"]["exposures_mean"]


def test_documents_state_the_entities_facts(corpus):
    rows = [json.loads(line) for line in open(corpus.meta["tasks"]["longtail_head"].replace(".yaml", ".jsonl"))]
    # Every question's true answer is stated next to its entity's name somewhere in the corpus.
    full = bytes(np.asarray(corpus.tokens, dtype=np.uint8)).decode("utf-8", errors="replace")
    for row in rows[:15]:
        assert row["prompt"] + " " + row["choices"][row["label"]] + "." in full


def test_same_spec_same_tokens_and_cache_reused(corpus, tmp_path):
    again = prepare(SPEC, corpus.path.parent.parent)
    assert again.path == corpus.path
    other = prepare(SPEC, tmp_path)
    assert np.array_equal(np.asarray(other.tokens), np.asarray(corpus.tokens))
    different = prepare({**SPEC, "seed": 4}, tmp_path)
    assert different.path != other.path
    assert not np.array_equal(np.asarray(different.tokens[:500]), np.asarray(other.tokens[:500]))


def test_tasks_are_4_way_with_distractors_from_the_same_attribute(corpus):
    tasks = corpus.meta["tasks"]
    assert {"longtail", "longtail_head", "longtail_torso", "longtail_tail"} <= set(tasks)
    for bucket in ("head", "torso", "tail"):
        rows = [json.loads(x) for x in open(tasks[f"longtail_{bucket}"].replace(".yaml", ".jsonl"))]
        assert len(rows) == 20 * len(ATTRIBUTES)
        start, stop = corpus.meta["buckets"][bucket]["ranks"]
        for row in rows:
            values = ATTRIBUTES[row["attribute"]][0]
            assert row["bucket"] == bucket and start <= row["entity"] < stop
            assert len(set(row["choices"])) == 4 and set(row["choices"]) <= set(values)
            assert 0 <= row["label"] < 4
        assert len({r["label"] for r in rows}) == 4  # the answer is not always in one place
    group = open(tasks["longtail"]).read()
    assert "group: longtail" in group and "longtail_tail" in group
    assert corpus.path.name in open(tasks["longtail_head"]).read()  # data path: the final folder


def test_big_corpus_generation_is_vectorised(tmp_path):
    start = time.perf_counter()
    big = prepare({"kind": "knowledge", "entities": 20_000, "tokens": 3_000_000}, tmp_path)
    assert time.perf_counter() - start < 20
    assert big.meta["buckets"]["tail"]["entities"] == 12_000


def test_files_corpus_text_and_jsonl(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("hello world")
    j = tmp_path / "b.jsonl"
    j.write_text(json.dumps({"text": "one"}) + "\n\n" + json.dumps({"text": "two é"}) + "\n")
    c = prepare({"kind": "files", "paths": [str(a)]}, tmp_path)
    assert bytes(np.asarray(c.tokens[1:-1], dtype=np.uint8)) == b"hello world"
    assert (c.tokens[0], c.tokens[-1]) == (BOS_ID, EOS_ID)  # every document: BOS bytes EOS
    c2 = prepare({"kind": "files", "paths": [str(j)], "format": "jsonl"}, tmp_path)
    assert len(c2.tokens) == len("one".encode()) + len("two é".encode()) + 4
    assert list(np.flatnonzero(np.asarray(c2.tokens) == BOS_ID)) == [0, 5]
    a.write_text("changed")  # a changed file makes a new cache entry
    assert prepare({"kind": "files", "paths": [str(a)]}, tmp_path).path != c.path
    j.write_text('{"text": "ok"}\n{"body": "x"}\n')
    with pytest.raises(ValueError, match=r"b.jsonl:2: not a JSON object with a 'text' field"):
        prepare({"kind": "files", "paths": [str(j)], "format": "jsonl"}, tmp_path)


@pytest.mark.parametrize("spec,needle", [
    ({"kind": "wiki"}, "job.corpus.kind: unknown corpus kind 'wiki'"),
    ({"kind": "knowledge", "entites": 5}, "job.corpus.entites: unknown key (did you mean 'entities'?)"),
    ({"kind": "knowledge", "entities": 3}, "job.corpus.entities: expected an int >= 10"),
    ({"kind": "knowledge", "zipf": "steep"}, "job.corpus.zipf"),
    ({"kind": "knowledge", "attributes": ["shoe_size"]}, "job.corpus.attributes"),
    ({"kind": "knowledge", "buckets": {"head": 0.6, "torso": 0.5}}, "job.corpus.buckets"),
    ({"kind": "files", "paths": ["relative.txt"]}, "job.corpus.paths[0]: expected an absolute path"),
    ({"kind": "files", "paths": ["/nonexistent/x.txt"]}, "job.corpus.paths[0]: no such file"),
    ({"kind": "files", "paths": ["/etc/hostname"], "format": "csv"}, "job.corpus.format"),
])
def test_bad_specs_name_the_field(spec, needle):
    with pytest.raises(CorpusError) as err:
        check_corpus(spec)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_capacity_estimate(corpus):
    meta = corpus.meta
    chance = capacity.knowledge_bits(meta, {"head": 0.25, "torso": 0.2, "tail": 0.25}, total_params=1000)
    assert chance["bits"] == 0 and chance["bits_per_param"] == 0
    perfect = capacity.knowledge_bits(meta, {"head": 1.0, "torso": 1.0, "tail": 1.0}, total_params=1000)
    assert perfect["bits"] == pytest.approx(perfect["fact_bits"]) and perfect["bits_per_param"] > 0
    head_only = capacity.knowledge_bits(meta, {"head": {"birth_year": 1.0, "city": 0.25}})
    assert head_only["bits"] == pytest.approx(30 * np.log2(100))
    r = capacity.regime(meta, tokens_trained=2 * meta["tokens"], params={"total": 1000, "active": 500})
    assert r["epochs"] == 2 and r["tokens_per_param"] == 2 * meta["tokens"] / 1000
    assert r["exposures_per_fact"]["head"]["exposures_mean"] == 2 * meta["buckets"]["head"]["exposures_mean"]
    assert r["facts_exceed_capacity"] is True  # 300 entities' facts > 2 bits x 1000 params
    rows = [{"attribute": "city"}, {"attribute": "city"}, {"attribute": "field"}]
    acc = capacity.accuracy_by_attribute(rows, [{"doc_id": 0, "acc": 1.0}, {"doc_id": 1, "acc": 0.0},
                                                {"doc_id": 2, "acc": 1.0}])
    assert acc == {"city": 0.5, "field": 1.0}


def _rows(corpus, task):
    return [json.loads(x) for x in open(corpus.meta["tasks"][task].replace(".yaml", ".jsonl"))]


def test_every_corpus_task_is_written(corpus):
    from workers.corpora.tasks import TASK_NAMES

    assert set(corpus.meta["tasks"]) == set(TASK_NAMES)


def test_value_tasks_ask_over_every_value_with_the_true_one_labelled(corpus):
    for bucket in ("head", "torso", "tail"):
        four_way, exact = _rows(corpus, f"longtail_{bucket}"), _rows(corpus, f"longtail_values_{bucket}")
        assert [(r["entity"], r["attribute"]) for r in exact] == [(r["entity"], r["attribute"]) for r in four_way]
        for r4, r in zip(four_way, exact):
            assert r["choices"] == list(ATTRIBUTES[r["attribute"]][0])  # chance 1/V
            assert r["choices"][r["label"]] == r4["choices"][r4["label"]]  # the same true value
    text = open(corpus.meta["tasks"]["longtail_values_head"]).read()
    assert "metric: bits" in text and '"fact_bits"' in text  # the regime travels in the task's metadata


def test_value_bits_follow_allen_zhu_li():
    """bits = log2 V + log2 p(true) over the V values, floored at 0; acc is the argmax."""
    import importlib.util
    import math

    from workers.corpora.tasks import _VALUES_UTILS

    spec = importlib.util.spec_from_loader("values_utils", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(_VALUES_UTILS, module.__dict__)
    sure = module.process_results({"label": 2}, [(-50.0, False)] * 2 + [(0.0, True)] + [(-50.0, False)] * 5)
    assert sure["acc"] == 1.0 and sure["bits"] == pytest.approx(3.0, abs=1e-9)  # knows it: all log2 8 bits
    flat = module.process_results({"label": 0}, [(-1.0, False)] * 8)
    assert flat["bits"] == pytest.approx(0.0, abs=1e-12)  # uniform over V: nothing stored
    half = module.process_results({"label": 1}, [(math.log(0.5), False), (math.log(0.5), False)]
                                  + [(-80.0, False)] * 2)
    assert half["bits"] == pytest.approx(1.0, abs=1e-9)  # p = 1/2 of 4 values: 2 - 1 bits
    wrong = module.process_results({"label": 3}, [(0.0, True)] + [(-9.0, False)] * 3)
    assert wrong["acc"] == 0.0 and wrong["bits"] == 0.0  # floored


def test_heldout_documents_are_outside_the_training_text(corpus):
    from workers.corpora.knowledge import make_entities

    full = bytes(np.asarray(corpus.tokens, dtype=np.uint8)).decode("utf-8", errors="replace")
    seen, unseen = _rows(corpus, "longtail_heldout_seen"), _rows(corpus, "longtail_heldout_unseen")
    assert len(seen) == len(unseen) == 100
    names = set(make_entities(SPEC["entities"], list(ATTRIBUTES), SPEC["seed"])["names"])
    for doc in seen:
        assert doc["text"].split(" ")[0] in full and doc["bucket"] in ("head", "torso", "tail")
        assert any(name in doc["text"] for name in names)
    assert {d["bucket"] for d in seen} == {"head", "torso", "tail"}  # every popularity, drawn uniformly
    for doc in unseen:
        first_sentence = doc["text"].split(".")[0]
        assert not any(name in doc["text"] for name in names)  # an entity the corpus never mentions
        name = " ".join(first_sentence.split(" ")[:2]) if "'" not in first_sentence else None
        if name and name[0].isupper() and not name.startswith("The "):
            assert name not in full
    assert sum(d["text"] in full for d in seen) <= 2  # freshly rendered, not copies of training bios
