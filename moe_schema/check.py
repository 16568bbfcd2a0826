"""One way to check what crosses between the two sides, and one way to say what is wrong.

Every schema check (suite sections, corpus and train specs, routing and probe parameters, build
configs, task fields) raises a :class:`SchemaError` that carries the path of the bad value and a
one-line message: ``models[2].routing[0]: unknown routing strategy 'topq' (did you mean 'topk'?);
known: ...``. The suite parser runs the checks with YAML paths (``models[2].config``); a worker runs
the same checks on the job it received with the job's paths (``variant.build.config``), so the two
sides cannot drift apart. The CLI prints the error on one line and exits 2; a worker answers
INVALID_PARAMS with the same text.
"""

from __future__ import annotations

import difflib
import math
import reprlib
import types
import typing
from typing import Any, Iterable

import attrs


class SchemaError(ValueError):
    """A bad value at ``path`` (``""``: the document itself). ``str(exc)`` is ``"path: message"``.

    ``SchemaError("train.lr: must be > 0")`` (one string) splits at the first ``": "``, so checks
    written as one formatted string keep working; new code passes path and message apart."""

    def __init__(self, path: str, message: str | None = None):
        if message is None:
            path, sep, message = path.partition(": ")
            if not sep:
                path, message = "", path
        self.path, self.message = path, message
        super().__init__(f"{path}: {message}" if path else message)

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def did_you_mean(name: Any, known: Iterable[str]) -> str:
    """``" (did you mean 'topk'?)"`` for the closest of ``known``, or ``""``: the one did-you-mean."""
    close = difflib.get_close_matches(str(name), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(what: str, name: Any, known: Iterable[str]) -> str:
    """``"unknown routing strategy 'topq' (did you mean 'topk'?); known: native, topk, ..."``."""
    known = list(known)
    return f"unknown {what} {name!r}{did_you_mean(name, known)}; known: {', '.join(known) or '(none)'}"


def known_keys(path: str, data: dict, allowed: Iterable[str], error: type[SchemaError] | None = None) -> None:
    """Refuse the first key of ``data`` that is not ``allowed``, naming its path; ``error``: the
    SchemaError subclass a caller's callers catch (``TrainSpecError``, ``CorpusError``)."""
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            raise (error or SchemaError)(f"{path}.{key}" if path else str(key),
                                         f"unknown key{did_you_mean(key, allowed)}; known: {', '.join(allowed)}")


#: the integers msgpack carries (int64 .. uint64): a larger one passes YAML and breaks the wire
WIRE_INT_MIN, WIRE_INT_MAX = -(2 ** 63), 2 ** 64 - 1

_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlong, _SHORT.maxlist, _SHORT.maxtuple, _SHORT.maxdict, _SHORT.maxset, _SHORT.maxlevel = 40, 6, 6, 6, 6, 3


def short(value: Any) -> str:
    """``repr(value)`` cut to at most about 80 characters and 3 levels: an error message never reprs
    a whole value (an alias-expanded list of 10^9 items, a 100k-digit int)."""
    if isinstance(value, int) and not isinstance(value, bool) and not WIRE_INT_MIN <= value <= WIRE_INT_MAX:
        digits = len(str(abs(value))) if abs(value).bit_length() < 40_000 else f"~{int(abs(value).bit_length() * 0.30103)}"
        return f"<{'-' if value < 0 else ''}{digits}-digit int>"
    return _SHORT.repr(value)


def got(value: Any) -> str:
    """How a bad value is shown: strings quoted, anything else with its type (``int 3``); bounded."""
    return short(value) if isinstance(value, str) else f"{type(value).__name__} {short(value)}"


def value_problem(value: Any) -> str | None:
    """What a number cannot be anywhere a value is needed: NaN or infinity (``'a finite number'``),
    an int outside what the wire carries (``'an int within 64 bits'``); None for anything else."""
    if isinstance(value, float) and not math.isfinite(value):
        return "a finite number"
    if isinstance(value, int) and not isinstance(value, bool) and not WIRE_INT_MIN <= value <= WIRE_INT_MAX:
        return "an int within 64 bits (what the wire carries)"
    return None


def fits(t: type, value: Any) -> bool:
    """``is_type`` and a value that can be right: finite floats, ints the wire carries. Every check
    of a suite or job value uses this (the result schema alone keeps ``is_type``: a metric may be NaN)."""
    return is_type(t, value) and value_problem(value) is None


def type_name(t: type) -> str:
    return {int: "int", float: "float", bool: "bool", str: "str", list: "list", dict: "map"}.get(t, t.__name__)


def is_type(t: type, value: Any) -> bool:
    """Is a YAML / msgpack ``value`` acceptable as python type ``t``? (bool is not an int; an int is a float)."""
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


def expect(path: str, value: Any, t: type | tuple, what: str | None = None, *, finite: bool = True) -> Any:
    """``value`` if it is of type ``t`` (one type or a tuple of them), else a SchemaError at ``path``;
    ``finite``: NaN, infinity and ints the wire cannot carry are refused too (``value_problem``)."""
    types = t if isinstance(t, tuple) else (t,)
    if not any(is_type(x, value) for x in types):
        raise SchemaError(path, f"expected {what or ' or '.join(type_name(x) for x in types)}, got {got(value)}")
    if finite and (problem := value_problem(value)):
        raise SchemaError(path, f"expected {problem}, got {got(value)}")
    return value


def _type_ok(value: Any, tp: Any) -> bool:
    """Does a YAML / msgpack value fit a (simple) type annotation of a plugin config field?"""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (list, tuple) or tp in (list, tuple):  # YAML has lists only: a bare tuple field takes one
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_type_ok(v, inner) for v in value)
    if origin is dict or tp is dict:
        return isinstance(value, dict)
    if tp in (int, float, bool, str):
        return fits(tp, value)
    return isinstance(value, tp) if isinstance(tp, type) else True


def _type_str(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_str(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple) or tp in (list, tuple):
        args = typing.get_args(tp)
        return f"list of {_type_str(args[0])}" if args else "list"
    return type_name(tp) if isinstance(tp, type) else str(tp)


def _type_error(path: str, value: Any, tp: Any) -> SchemaError:
    """The bad value named as closely as can be: a list of one item type at its first bad item
    (``batch_sizes[1]: expected int, got bool True``), anything else as a whole."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple) and args and isinstance(value, (list, tuple)):
        inner = args[0]
        for i, item in enumerate(value):
            if not _type_ok(item, inner):
                return _type_error(f"{path}[{i}]", item, inner)
    return SchemaError(path, f"expected {value_problem(value) or _type_str(tp)}, got {got(value)}")


def structure(cls: type, data: Any, path: str) -> Any:
    """The one structurer: a plugin's attrs config class (routing strategy, probe) from plain data.

    Unknown keys (with did-you-mean), missing ones, values that do not fit the field's annotation and
    failing validators all become a ``SchemaError`` at ``path`` (a validator's own ``SchemaError``
    path is joined below it: ``probes[0].batch_sizes[1]``). The suite parser calls it at YAML paths
    (``models[0].routing[1]``), the worker at the job's (``variant.routing.params``)."""
    expect(path, data, dict, "a map of parameters")
    attrs.resolve_types(cls)
    fields = {f.name: f for f in attrs.fields(cls) if f.init}
    known_keys(path, data, fields)
    missing = [n for n, f in fields.items() if f.default is attrs.NOTHING and n not in data]
    if missing:
        raise SchemaError(path, f"missing {missing[0]!r}")
    for key, value in data.items():
        tp = fields[key].type
        if tp is not None and not _type_ok(value, tp):
            raise _type_error(f"{path}.{key}" if path else key, value, tp)
    try:
        return cls(**data)
    except SchemaError as exc:
        raise SchemaError(".".join(p for p in (path, exc.path) if p), exc.message) from None
    except (TypeError, ValueError) as exc:
        raise SchemaError(path, str(exc).splitlines()[0]) from None
