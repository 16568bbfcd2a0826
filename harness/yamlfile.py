"""The YAML the harness reads from users (suites, local task files), bounded.

PyYAML's safe loader shares an aliased node instead of copying it, so ``a9: [*a8, *a8, ...]``
nine levels deep is a few lines of text and loads at once, but every later walk of the value
(checking, hashing into a job key, showing it in an error) visits 10^9 items. Three bounds make
such a file one line (``harness: suite.yaml is not valid YAML (line 12, column 9): ...``) instead
of minutes and gigabytes or a traceback:

- the document, with every alias expanded, holds at most ``MAX_NODES`` values (aliases counted
  as the values they stand for, so a shared anchor used a few times costs nothing extra to read);
- mappings and lists nest at most ``MAX_DEPTH`` deep (the composer recurses per level: 100k
  levels were a ``RecursionError``);
- an integer has at most ``MAX_INT_DIGITS`` digits in whatever base it is written (``0x``, ``0b``,
  ``0``-octal, ``_`` separators; Python refuses to show a decimal one of over 4300 digits with a
  ``ValueError``; the wire carries 64-bit ints, 20 digits: the schema names a longer one at its path).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, SequenceNode

MAX_NODES = 1_000_000
MAX_DEPTH = 100
MAX_INT_DIGITS = 100


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the module's three bounds."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self):
        node = self.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {})
        return self.construct_document(node)

    def construct_yaml_int(self, node):
        body = node.value.lstrip("+-")
        if body[:2].lower() in ("0x", "0b"):
            body = body[2:]
        digits = sum(c in string.hexdigits for c in body)  # hex too: 0xffff... has no decimal digit
        if digits > MAX_INT_DIGITS:
            raise ConstructorError(None, None, f"an integer of {digits} digits (at most {MAX_INT_DIGITS}: the "
                                               "wire carries 64-bit integers)", node.start_mark)
        return super().construct_yaml_int(node)


BoundedLoader.add_constructor("tag:yaml.org,2002:int", BoundedLoader.construct_yaml_int)


def _expanded_size(node, memo: dict[int, int | None], total: list[int] | None = None) -> int:
    """How many values ``node`` stands for with its aliases expanded; over ``MAX_NODES`` (or an
    alias inside its own anchor) raises. ``memo``: size per node already counted (None while one
    is being counted, which only a recursive alias meets again)."""
    key = id(node)
    if key in memo:
        if memo[key] is None:
            raise ComposerError(None, None, "an alias refers to the value that holds it", node.start_mark)
        return memo[key]
    memo[key] = None
    size = 1
    if isinstance(node, SequenceNode):
        children = node.value
    elif isinstance(node, MappingNode):
        children = [n for pair in node.value for n in pair]
    else:
        children = []
    for child in children:
        size += _expanded_size(child, memo)
        if size > MAX_NODES:
            raise ComposerError(None, None, f"expands to more than {MAX_NODES:,} values (aliases of aliases?)",
                                child.start_mark)
    memo[key] = size
    return size


def load(text: str | bytes, loader: type[BoundedLoader] = BoundedLoader) -> Any:
    """One YAML document, bounded; raises ``yaml.YAMLError`` (with a mark where known)."""
    return yaml.load(text, Loader=loader)


def load_file(path: str | Path, loader: type[BoundedLoader] = BoundedLoader) -> Any:
    return load(Path(path).read_text(), loader)
