"""`harness plan SUITE`: the dry run. Validates the suite and prints what `harness run` would do."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness import plan as planner
from harness.suite import load
from moe_schema.home import harness_home


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", type=Path)


def main(args: argparse.Namespace) -> int:
    suite = load(args.suite)
    vs, jobs = planner.expand(suite)
    cache = harness_home() / "results"
    table = Table(title=f"{suite.name}: {len(vs)} variants, {len(jobs)} jobs")
    for col in ("key", "kind", "variant", "what", "cached"):
        table.add_column(col)
    for j in jobs:
        s = j.summary()
        cached = "yes" if (cache / f"{j.key}.json").exists() else ""
        table.add_row(j.key[:12], j.kind, j.variant, s.get("task") or s.get("probe") or "", cached)
    Console().print(table)
    return 0
