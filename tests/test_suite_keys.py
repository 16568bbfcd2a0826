"""A typo in a key is refused at every place a suite file takes keys, naming the full YAML path.

Each case takes a valid suite, misspells one key in one section, and expects a SuiteError whose
path is that key (or, for the sections checked as a whole, the section) and whose message names
the misspelt key or the likely meant one. The unmodified suite must parse, so each case also shows
the correctly spelt key is accepted there.
"""

from __future__ import annotations

import copy

import pytest

from harness.suite import SuiteError, parse

SUITE = {
    "name": "keys",
    "scale": "tiny",
    "scales": {"tiny": {"config": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                                   "num_key_value_heads": 4, "num_experts": 4, "num_experts_per_tok": 2,
                                   "intermediate_size": 32},
                        "corpus": {"entities": 40},
                        "train": {"tokens": 5000}}},
    "corpus": {"kind": "knowledge", "entities": 50, "tokens": 5000},
    "train": {"batch_size": 4, "seq_len": 32},
    "models": [
        {"name": "moe", "config": {"model_type": "olmoe", "num_experts_per_tok": 2}, "routing": [{"name": "topk", "k": 1}, "native"],
         "train": {"lr": 0.001}},
        {"name": "dense", "derive": {"from": "moe", "match": "active", "multiple_of": 8}},
    ],
    "tasks": [{"corpus": "longtail"}, {"name": "hellaswag", "limit": 5, "num_fewshot": 0, "shards": 2}],
    "probes": [{"name": "latency", "batch_sizes": [1]}],
    "pairing": {"tolerance": 0.1},
    "eval": {"max_batch_tokens": 1024},
    "workers": ["tcp://127.0.0.1:5555"],
}


def test_the_suite_with_every_section_parses():
    suite = parse(copy.deepcopy(SUITE))
    assert [m.name for m in suite.models] == ["moe", "dense"]
    assert [r.label for r in suite.models[0].routing][1] == "native"
    assert suite.tasks[1].shards == 2 and suite.eval == {"max_batch_tokens": 1024}
    assert suite.corpus["entities"] == 40  # the scale's corpus over the suite's


def rename(data: dict, where: list, old: str, new: str) -> None:
    """Rename key ``old`` to ``new`` in the map found by following ``where`` from ``data``."""
    node = data
    for step in where:
        node = node[step]
    node[new] = node.pop(old)


# (where, key, typo, expected error path, words the message must hold)
CASES = [
    ([], "tasks", "taks", "taks", "did you mean 'tasks'"),
    (["models", 0], "routing", "routng", "models[0].routng", "did you mean 'routing'"),
    (["models", 1], "derive", "derivee", "models[1].derivee", "did you mean 'derive'"),
    (["models", 0, "config"], "num_experts_per_tok", "num_expert_per_tok", "models[0].config.num_expert_per_tok",
     "did you mean 'num_experts_per_tok'"),
    (["scales", "tiny", "config"], "num_experts", "num_expert", "scales.tiny.config.num_expert",
     "did you mean 'num_experts'"),
    (["models", 1, "derive"], "multiple_of", "multiple_off", "models[1].derive.multiple_off",
     "did you mean 'multiple_of'"),
    (["models", 0, "routing", 0], "k", "kk", "models[0].routing[0].kk", "unknown key"),
    (["models", 0, "train"], "lr", "lrr", "models[0].train.lrr", "did you mean 'lr'"),
    (["tasks", 1], "limit", "limt", "tasks[1].limt", "did you mean 'limit'"),
    (["probes", 0], "batch_sizes", "batch_size", "probes[0].batch_size", "did you mean 'batch_sizes'"),
    (["pairing"], "tolerance", "tolerence", "pairing.tolerence", "did you mean 'tolerance'"),
    (["eval"], "max_batch_tokens", "max_batch_token", "eval.max_batch_token", "did you mean 'max_batch_tokens'"),
    (["scales", "tiny"], "corpus", "corpsu", "scales.tiny.corpsu", "did you mean 'corpus'"),
    (["scales", "tiny", "corpus"], "entities", "entites", "corpus.entites", "did you mean 'entities'"),
    (["scales", "tiny", "train"], "tokens", "tokns", "train.tokns", "did you mean 'tokens'"),
    (["corpus"], "tokens", "tokes", "corpus.tokes", "did you mean 'tokens'"),
    (["train"], "batch_size", "batch_sise", "train.batch_sise", "did you mean 'batch_size'"),
]


@pytest.mark.parametrize("where, key, typo, path, words", CASES, ids=[c[3] + ":" + c[2] for c in CASES])
def test_a_typo_is_refused_with_its_path(where, key, typo, path, words):
    data = copy.deepcopy(SUITE)
    rename(data, where, key, typo)
    with pytest.raises(SuiteError) as info:
        parse(data)
    err = info.value
    assert err.path == path, str(err)
    assert words in err.message, str(err)
    assert "\n" not in str(err)
