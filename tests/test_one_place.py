"""One place per fact that crosses the two sides: the long-tail buckets, the import of a
``module:object`` reference (moe_schema.registry.resolve)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_the_report_reads_the_corpus_buckets():
    from harness.report import buckets
    from moe_schema import knowledge

    assert buckets.BUCKETS is knowledge.BUCKETS


def test_only_the_registry_and_the_cli_import_by_name():
    """``module:object`` references resolve in moe_schema.registry.resolve; harness/cli.py loads a
    subcommand's module by name. Nothing else calls importlib.import_module."""
    users = set()
    for package in ("harness", "moe_schema", "workers"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr == "import_module":
                    users.add(str(path.relative_to(REPO)))
                if isinstance(node, ast.ImportFrom) and node.module == "importlib" and any(
                        a.name == "import_module" for a in node.names):
                    users.add(str(path.relative_to(REPO)))
    assert users == {"moe_schema/registry.py", "harness/cli.py"}


def test_a_bad_run_job_reference_is_a_startup_error(monkeypatch):
    from workers import daemon

    monkeypatch.setenv(daemon.RUN_JOB_ENV, "no_such_module_here:run_job")
    with pytest.raises(daemon.StartupError, match=r"MOE_HARNESS_RUN_JOB='no_such_module_here:run_job': "
                                                  r"MOE_HARNESS_RUN_JOB: cannot import"):
        daemon.load_run_job()
    monkeypatch.setenv(daemon.RUN_JOB_ENV, "fault_jobs")  # no ':fn': run_job
    import fault_jobs

    assert daemon.load_run_job() is fault_jobs.run_job


def test_a_job_kind_the_worker_lacks_is_unsupported(monkeypatch):
    from workers import jobs
    from workers.errors import Unsupported

    with pytest.raises(Unsupported, match="evaluate jobs need workers.no_such_kind, which this worker does not have"):
        jobs._lazy("workers.no_such_kind", "evaluate")
    assert jobs._lazy("workers.probes.job", "probe").__module__ == "workers.probes.job"
