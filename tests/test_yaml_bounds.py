"""The bounds on the YAML users hand the harness (harness/yamlfile.py): each limit is read at
exactly the limit and refused one over, in one line naming where (tests/test_hostile.py runs the
hostile files through real ``harness`` processes)."""

from __future__ import annotations

import pytest
import yaml

from harness import yamlfile
from harness.yamlfile import MAX_DEPTH, MAX_INT_DIGITS, MAX_NODES, _expanded_size, load, load_file


def _refused(text: str) -> str:
    with pytest.raises(yaml.YAMLError) as info:
        load(text)
    return " ".join(str(info.value).split())


def test_the_limits_are_the_documented_ones():
    assert (MAX_NODES, MAX_DEPTH, MAX_INT_DIGITS) == (1_000_000, 100, 100)


def test_nesting_is_read_to_100_levels_and_refused_at_101_where_it_happens():
    assert load("[" * MAX_DEPTH + "]" * MAX_DEPTH) == eval("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    assert load("a: " + "[" * (MAX_DEPTH - 2) + "1" + "]" * (MAX_DEPTH - 2)) is not None  # the scalar is level 100
    message = _refused("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert message.startswith("nested more than 100 levels deep in \"<unicode string>\", line 1, column 101")
    assert "nested more than 100" in _refused("a: " + "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1))


def test_depth_counts_nesting_not_width():
    """Levels are counted on the way down and given back on the way up: many siblings are one level."""
    wide = "[" + ", ".join(["[[1]]"] * 300) + "]"
    assert len(load(wide)) == 300
    deep_then_wide = "[" * 60 + "]" * 60
    assert load("[" + ", ".join([deep_then_wide] * 5) + "]")
    # a sibling after a value at level 100 is at level 100 too, and its item at 101
    assert load("[" * 99 + "1, 2" + "]" * 99)
    assert "nested more than 100" in _refused("[" * 99 + "1, [2]" + "]" * 99)


def test_a_document_of_exactly_a_million_values_is_read_and_one_more_is_refused_where_it_stands():
    """999 aliases of a 1000-item list: 1 + 999 x 1001 = 1,000,000 values once the aliases are expanded."""
    text = "- &a [" + ",".join(["0"] * 1000) + "]\n" + "- *a\n" * 998
    assert len(load(text)) == 999
    message = _refused(text + "- 0\n")
    assert message.startswith("expands to more than 1,000,000 values (aliases of aliases?) in \"<unicode string>\", "
                              "line 1000, column 3")


@pytest.mark.parametrize("text,size", [
    ("7", 1),
    ("[1, 2]", 3),
    ("{a: 1}", 3),  # a mapping's keys are values too
    ("{a: &x [1, 2], b: *x}", 9),  # an alias costs what it stands for
    ("[&x [1, [2]], *x, *x]", 1 + 3 * 4),
])
def test_a_values_size_counts_every_key_item_and_expanded_alias(text, size):
    assert _expanded_size(yaml.compose(text), {}) == size


def test_an_alias_inside_its_own_anchor_is_refused_not_walked_forever():
    assert _refused("a: &a [1, *a]\n").startswith("an alias refers to the value that holds it in \"<unicode string>\", "
                                                  "line 1, column 4")
    assert load("a: &a [1]\nb: [*a, *a]\n") == {"a": [1], "b": [[1], [1]]}  # a shared anchor is no cycle


@pytest.mark.parametrize("written", [
    "9" * MAX_INT_DIGITS, "-" + "9" * MAX_INT_DIGITS, "+" + "9" * MAX_INT_DIGITS,
    "0x" + "f" * MAX_INT_DIGITS, "0x" + "F" * MAX_INT_DIGITS, "-0x" + "f" * MAX_INT_DIGITS,
    "0b" + "1" * MAX_INT_DIGITS, "0" + "7" * (MAX_INT_DIGITS - 1),
    "_".join("9" * MAX_INT_DIGITS),  # separators are not digits
])
def test_an_integer_of_100_digits_in_any_base_is_read(written):
    assert isinstance(load(f"n: {written}")["n"], int)


@pytest.mark.parametrize("written", [
    "9" * (MAX_INT_DIGITS + 1), "-" + "9" * (MAX_INT_DIGITS + 1), "0x" + "f" * (MAX_INT_DIGITS + 1),
    "0b" + "1" * (MAX_INT_DIGITS + 1), "0" + "7" * MAX_INT_DIGITS,
])
def test_an_integer_of_101_digits_is_refused_naming_its_digits_and_place(written):
    assert _refused(f"n: {written}").startswith("an integer of 101 digits (at most 100: the wire carries 64-bit "
                                                "integers) in \"<unicode string>\", line 1, column 4")


def test_an_empty_document_is_none_and_a_file_is_read_with_the_same_bounds(tmp_path):
    assert load("") is None and load("# only a comment\n") is None
    path = tmp_path / "s.yaml"
    path.write_text("a: [1, {b: 0x10}]\n")
    assert load_file(path) == {"a": [1, {"b": 16}]}
    path.write_text("[" * 101 + "]" * 101)
    with pytest.raises(yaml.YAMLError, match="nested more than 100 levels deep"):
        load_file(path)


def test_a_subclass_of_the_bounded_loader_is_used_as_given(tmp_path):
    """harness/suite.py and harness/plan.py load with their own subclass (line numbers, tags)."""
    class Loader(yamlfile.BoundedLoader):
        pass

    Loader.add_constructor("!seven", lambda loader, node: 7)
    assert load("a: !seven x", Loader) == {"a": 7}
    path = tmp_path / "s.yaml"
    path.write_text("a: !seven x\n")
    assert load_file(path, Loader) == {"a": 7}
    with pytest.raises(yaml.YAMLError):
        load("a: !seven x")
