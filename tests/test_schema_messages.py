"""The one way a schema check says what is wrong (moe_schema.check): SchemaError's path and message, the
did-you-mean hint, the unknown-name and unknown-key lines, and how a bad value and a type are named.
Every suite, corpus, routing and config error a user reads is built from these."""

from __future__ import annotations

import pytest

from moe_schema.check import SchemaError, did_you_mean, expect, got, is_type, known_keys, type_name, unknown


def test_schema_error_carries_path_and_message_and_prints_them_on_one_line():
    e = SchemaError("models[2].routing[0]", "unknown strategy 'topq'")
    assert (e.path, e.message) == ("models[2].routing[0]", "unknown strategy 'topq'")
    assert str(e) == e.args[0] == "models[2].routing[0]: unknown strategy 'topq'"
    top = SchemaError("", "the document is empty")
    assert (top.path, str(top), top.args[0]) == ("", "the document is empty", "the document is empty")


def test_one_formatted_string_splits_at_the_first_colon():
    e = SchemaError("train.lr: must be > 0: got -1")
    assert (e.path, e.message, str(e)) == ("train.lr", "must be > 0: got -1", "train.lr: must be > 0: got -1")
    bare = SchemaError("no colon here")
    assert (bare.path, bare.message, str(bare), bare.args[0]) == ("", "no colon here", "no colon here", "no colon here")
    assert isinstance(bare, ValueError)


def test_did_you_mean_names_the_closest_known_name_or_nothing():
    assert did_you_mean("topq", ["native", "topk", "expert_choice"]) == " (did you mean 'topk'?)"
    assert did_you_mean("zzzz", ["native", "topk"]) == ""
    assert did_you_mean(3, ["3x", "abc"]) == " (did you mean '3x'?)"  # a non-string name is compared as text
    assert did_you_mean("x", []) == ""


def test_unknown_lists_what_is_known():
    assert unknown("routing strategy", "topq", ["native", "topk"]) == \
        "unknown routing strategy 'topq' (did you mean 'topk'?); known: native, topk"
    assert unknown("probe", "fast", iter(["latency", "memory"])) == "unknown probe 'fast'; known: latency, memory"
    assert unknown("task", "x", []) == "unknown task 'x'; known: (none)"


def test_an_unknown_key_is_named_by_its_path():
    with pytest.raises(SchemaError) as info:
        known_keys("models[1].train", {"lr": 1, "step": 2}, ("lr", "steps", "seed"))
    assert (info.value.path, info.value.message) == ("models[1].train.step",
                                                     "unknown key (did you mean 'steps'?); known: lr, steps, seed")
    with pytest.raises(SchemaError) as info:
        known_keys("", {"modles": []}, iter(["models", "tasks"]))
    assert str(info.value) == "modles: unknown key (did you mean 'models'?); known: models, tasks"
    assert known_keys("x", {"lr": 1}, ["lr"]) is None


@pytest.mark.parametrize("value, shown", [("3", "'3'"), (3, "int 3"), (None, "NoneType None"), ([1], "list [1]"),
                                          (True, "bool True"), (1.5, "float 1.5")])
def test_a_bad_value_is_shown_with_its_type_unless_it_is_a_string(value, shown):
    assert got(value) == shown


@pytest.mark.parametrize("t, name", [(int, "int"), (float, "float"), (bool, "bool"), (str, "str"), (list, "list"),
                                     (dict, "map"), (tuple, "tuple"), (SchemaError, "SchemaError")])
def test_type_names_are_the_yaml_words(t, name):
    assert type_name(t) == name


@pytest.mark.parametrize("t, value, ok", [
    (float, 1, True), (float, 1.5, True), (float, True, False), (float, "1", False),
    (int, 1, True), (int, True, False), (int, 1.0, False),
    (bool, True, True), (bool, 1, False), (str, "x", True), (dict, {}, True), (list, (), False),
])
def test_yaml_values_against_python_types(t, value, ok):
    assert is_type(t, value) is ok


def test_expect_returns_the_value_or_names_path_types_and_value():
    assert expect("a.b", 3, int) == 3 and expect("a.b", "x", (int, str)) == "x"
    with pytest.raises(SchemaError) as info:
        expect("tasks[0].limit", 1.5, (int, str))
    assert (info.value.path, info.value.message) == ("tasks[0].limit", "expected int or str, got float 1.5")
    with pytest.raises(SchemaError) as info:
        expect("models[0]", [1], dict, "a map")
    assert str(info.value) == "models[0]: expected a map, got list [1]"
    with pytest.raises(SchemaError, match=r"^seed: expected int, got bool True$"):
        expect("seed", True, int)
