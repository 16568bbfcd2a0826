"""One small generic registry for each plugin kind (routing strategies, probes, build families).

Shaped like lm-eval's ``lm_eval/api/registry.py``: built-ins register by decorator; third parties by a
Python entry point in the kind's group (``moe_harness.routing``, ``moe_harness.probes``) whose value
is a lazy ``module:object`` reference, imported the first time the name is looked up. Every
reference is imported in one function, ``resolve``, which also checks the kind's base class (and
that no abstract method is left unimplemented) on lookup. Unknown names fail with the list of
known ones and a did-you-mean.

Torch-free: the harness validates suites against these registries.
"""

from __future__ import annotations

import importlib
import inspect
from importlib import metadata
from typing import Any, Callable, Generic, TypeVar

from moe_schema.check import unknown

T = TypeVar("T")


class UnknownName(KeyError):
    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, known
        self.message = unknown(kind, name, known)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class PluginError(TypeError):
    """A plugin that cannot be used: its ``module:object`` does not import, is not a subclass of its
    kind's base class, or leaves abstract methods unimplemented. The message names the plugin."""


def resolve(ref: Any, base: type | str | None = None, what: str = "plugin") -> Any:
    """The one place a plugin reference becomes an object.

    ``ref`` is an object or a lazy ``"module:object"`` string (``"workers.routing.topk:TopK"``),
    imported here and nowhere else. With ``base`` (a class, or a ``"module:Class"`` string so a
    torch-free module can name a torch-side base), the object must be a concrete subclass of it:
    checked on lookup, so a plugin missing ``route`` fails by name when it is first used, not as a
    ``TypeError`` deep inside a job."""
    obj = ref
    if isinstance(ref, str):
        module, sep, attr = ref.partition(":")
        if not sep or not module or not attr:
            raise PluginError(f"{what}: {ref!r} is not a 'module:object' reference")
        try:
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError) as exc:
            raise PluginError(f"{what}: cannot import {ref!r} ({exc})") from exc
    if base is not None:
        base_cls = resolve(base, what=f"{what} (its base class)")
        if not (isinstance(obj, type) and issubclass(obj, base_cls)):
            raise PluginError(f"{what}: {ref!r} is not a subclass of {base_cls.__module__}.{base_cls.__qualname__}")
        if inspect.isabstract(obj):
            missing = ", ".join(sorted(obj.__abstractmethods__))
            raise PluginError(f"{what}: {obj.__module__}.{obj.__qualname__} does not implement {missing}")
    return obj


class Registry(Generic[T]):
    """Names → plugins of one kind. An entry is the object itself (built-ins, by decorator) or a lazy
    ``"module:object"`` string (entry points, or ``add(name, "pkg.mod:Cls")``), imported on first
    ``get`` through ``resolve`` and checked against ``base``."""

    def __init__(self, kind: str, entry_point_group: str | None = None, base: type | str | None = None):
        self.kind = kind
        self.group = entry_point_group
        self.base = base
        self._entries: dict[str, Any] = {}  # name -> object, or "module:object" not imported yet
        self._entry_points_loaded = entry_point_group is None

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T | str) -> None:
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = obj

    def _load_entry_points(self) -> None:
        """Third parties' names from their entry points; their modules are imported only by ``get``."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in metadata.entry_points(group=self.group):
            self._entries.setdefault(ep.name, ep.value)

    def get(self, name: str) -> T:
        if name not in self._entries:
            self._load_entry_points()
        if name not in self._entries:
            raise UnknownName(self.kind, name, self.names())
        entry = self._entries[name]
        obj = resolve(entry, self.base, what=f"{self.kind} {name!r}")
        self._entries[name] = obj  # resolved once
        return obj

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except UnknownName:
            return False
        return True
