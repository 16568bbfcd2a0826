"""The import rule (docs/internals.md, "Three packages, one rule"): the coordinator side never imports torch,
transformers or lm-eval (it starts in well under a second on a machine without a GPU), and the one
package both sides share, ``moe_schema``, is all ``harness`` takes from the worker side. And no import
circle anywhere in ``harness``, ``workers`` or ``moe_schema``, imports inside functions included: a
module that two others need moves down."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import harness
import moe_schema

ROOT = Path(harness.__file__).parent.parent
HEAVY = ("torch", "transformers", "lm_eval")


def imports_of(path: Path) -> list[str]:
    """Every module one file imports, at any depth (imports inside functions too), with relative
    imports resolved against the file's package."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found += [f"{base}.{a.name}" if base else a.name for a in node.names]
    return found


def imported_modules(package_dir: Path) -> list[tuple[str, str]]:
    """``(file, module)`` for every import statement under ``package_dir``."""
    return [(str(path.relative_to(ROOT)), module) for path in sorted(package_dir.rglob("*.py"))
            for module in imports_of(path)]


def test_harness_imports_nothing_from_workers():
    bad = [(f, m) for f, m in imported_modules(ROOT / "harness") if m == "workers" or m.startswith("workers.")]
    assert bad == [], f"harness/ imports from workers/ (only moe_schema is shared): {bad}"


def test_the_worker_subcommand_is_the_only_way_into_workers():
    from harness.cli import COMMANDS

    into_workers = {name: mod for name, (mod, _help) in COMMANDS.items() if mod.split(".")[0] == "workers"}
    assert into_workers == {"worker": "workers.daemon"}


def test_the_shared_package_imports_neither_workers_nor_harness_nor_heavy_modules():
    bad = [(f, m) for f, m in imported_modules(ROOT / "moe_schema")
           if m.split(".")[0] in ("workers", "harness") + HEAVY]
    assert bad == []


def test_import_walk_sees_imports_inside_functions(tmp_path, monkeypatch):
    # the walker must not be fooled by the lazy imports twelve of harness's twenty used to be
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "m.py").write_text("def f():\n    from workers.x import y\n    import workers.z\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert imported_modules(pkg) == [("pkg/m.py", "workers.x.y"), ("pkg/m.py", "workers.z")]


def test_no_harness_module_imports_torch_transformers_or_lm_eval():
    names = ([m.name for m in pkgutil.walk_packages(harness.__path__, "harness.")]
             + [m.name for m in pkgutil.walk_packages(moe_schema.__path__, "moe_schema.")])
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = [m for m in {HEAVY!r} + ('workers',) if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"harness pulled in: {proc.stdout.strip()}"


def _module_graph(*packages: str) -> dict[str, set[str]]:
    """Module -> the modules of ``packages`` it imports (at any depth in the file), and the packages
    above each (importing ``a.b.c`` from outside ``a.b`` runs ``a/b/__init__.py`` too, and whatever it
    imports). A submodule's import of its own parent package is left out: Python runs the parent's
    ``__init__`` first anyway."""
    files = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            files[name] = path
    graph = {}
    for name, path in files.items():
        deps = set()
        for module in imports_of(path):
            for candidate in (module, module.rpartition(".")[0]):
                if candidate in files and candidate != name and not name.startswith(candidate + "."):
                    parts = candidate.split(".")
                    deps |= {p for p in (".".join(parts[:i]) for i in range(1, len(parts) + 1))
                             if p in files and p != name and not name.startswith(p + ".")}
                    break
        graph[name] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles_in_any_package_function_level_imports_included():
    # once: workers/experts/forward.py <-> triton_moe.py; harness/report's sections -> capacity -> plots ->
    # probes -> parity -> sections (8 modules held by ~49 imports inside functions); describe <-> plan_cmd
    assert _cycles(_module_graph("harness", "workers", "moe_schema")) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_a_circle_closed_by_an_import_inside_a_function_is_found(tmp_path, monkeypatch):
    """A planted circle a -> sub.b -> c -> a, its last edge an import inside a function
    (the kind that used to hide harness/report's circle), is found; the same tree with that import gone, a
    lazy import of a heavy library left in its place, has none."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from ..c import f\n")  # relative, two levels up
    (pkg / "c.py").write_text("import json\n\n\ndef f():\n    import torch\n    from pkg import a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _cycles(_module_graph("pkg")) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    (pkg / "c.py").write_text("import json\n\n\ndef f():\n    import torch\n")
    assert _cycles(_module_graph("pkg")) == []


def test_a_circle_through_a_package_init_is_found(tmp_path, monkeypatch):
    """pkg.c imports pkg.sub.b, which imports nothing; but importing it runs pkg/sub/__init__.py first,
    which imports pkg.sub.d, which imports pkg.c back: a circle at run time (harness/report/sections/ is
    such a package). With the ``__init__``'s import gone, none."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.d import g\n")
    (pkg / "sub" / "b.py").write_text("")
    (pkg / "sub" / "d.py").write_text("def g():\n    from pkg import c\n")
    (pkg / "c.py").write_text("from pkg.sub import b\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _cycles(_module_graph("pkg")) == [["pkg.c", "pkg.sub", "pkg.sub.d"]]
    (pkg / "sub" / "__init__.py").write_text("")
    assert _cycles(_module_graph("pkg")) == []


def test_no_module_imports_a_private_name_of_another_project_module():
    """A name two modules need is public where it lives (the report's ``figure.pyplot``/``encode``/``colors``,
    once ``plots._plt``/``_encode``/``_colors`` imported by four modules)."""
    bad = []
    for package in ("harness", "moe_schema"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").split(".")[0] in
                                                         ("harness", "workers", "moe_schema")):
                    bad += [f"{path.relative_to(ROOT)}: {a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert bad == []
