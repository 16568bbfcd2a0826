"""`harness plan SUITE`: the dry run. Validates the suite and prints what `harness run` would do."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import plan as planner
from harness.suite import load
from workers.home import harness_home


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", type=Path)
    p.add_argument("--scale", help="pick one entry of the suite's `scales:`")


def print_sweep(console: Console, suite) -> None:
    """One line per sweep point with the models it holds (nothing without a ``sweep:``)."""
    if not suite.sweep:
        return
    from harness.sweep import point_label, points

    grid = points(suite.sweep)
    console.print(f"sweep: {len(grid)} point(s) over {', '.join(suite.sweep)}")
    for point in grid:
        names = [m.name for m in suite.models if m.sweep == point]
        console.print(f"  {point_label(point)}: {', '.join(names)}", markup=False)


def main(args: argparse.Namespace) -> int:
    suite = load(args.suite, getattr(args, "scale", None))
    vs, jobs = planner.expand(suite)
    print_sweep(Console(), suite)
    cache = harness_home() / "results"
    table = Table(title=f"{suite.name}: {len(vs)} variants, {len(jobs)} jobs")
    for col in ("key", "kind", "variant", "what", "cached"):
        table.add_column(col)
    for j in jobs:
        s = j.summary()
        cached = "yes" if (cache / f"{j.key}.json").exists() else ""
        table.add_row(j.key[:12], j.kind, escape(j.variant), s.get("task") or s.get("probe") or "", cached)
    Console().print(table)
    return 0
