"""The coordinator side never imports torch, transformers or lm-eval (DESIGN.md: it starts in well
under a second on a machine without a GPU)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import harness

HEAVY = ("torch", "transformers", "lm_eval")
# the worker modules harness/ may import (docs/internals.md, "Import rule"), some of them lazily
TORCH_FREE_WORKER_MODULES = [
    "moe_schema.protocol", "moe_schema.home", "moe_schema.registry", "moe_schema.families", "moe_schema.routing",
    "moe_schema.probes", "moe_schema.train", "moe_schema.corpus", "workers.corpora.tasks",
    "moe_schema.capacity", "moe_schema.merge", "moe_schema.taskfiles",
    "workers.devices", "workers.builds.headers", "workers.probes.roofline",
]


def test_no_harness_module_imports_torch_transformers_or_lm_eval():
    names = [m.name for m in pkgutil.walk_packages(harness.__path__, "harness.")] + TORCH_FREE_WORKER_MODULES
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(harness.__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"harness pulled in: {proc.stdout.strip()}"
