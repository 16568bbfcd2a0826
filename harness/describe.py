"""`harness describe SUITE`: parameter counts per variant, and the pairs they make.

Counting needs the model's modules, so describe jobs run on worker daemons like any job
(their results are cached: a second describe of the same suite starts no worker). A variant that
a `train:` section trains first is counted on its untrained build: training changes no shape, and
describing a suite should not wait for its training.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import plan as planner
from harness.run import compute_pairs, execute, parse_endpoints
from harness.store import Store
from harness.plan_cmd import print_sweep
from harness.suite import load


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", type=Path)
    p.add_argument("--workers", help="worker endpoints (default: start a local daemon)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--scale", help="pick one entry of the suite's `scales:`")


def _m(n) -> str:
    return "-" if n is None else f"{n / 1e6:,.2f}M"


def untrained(describe: list[planner.PlannedJob], jobs: list[planner.PlannedJob]) -> list[planner.PlannedJob]:
    """The describe jobs, those of trained variants pointed at the build their train job starts from."""
    start = {j.key: j.spec["variant"]["build"] for j in jobs if j.kind == "train"}  # by train job key:
    out = []  # an eval_routing variant is described on the build its checkpoint's train job starts from
    for j in describe:
        if j.after is None:
            out.append(j)
            continue
        variant = {**j.spec["variant"], "build": start[j.after]}
        spec = {**j.spec, "variant": variant}
        out.append(planner.PlannedJob(planner.job_key(spec), spec, planner.build_id(variant)))
    return out


def main(args: argparse.Namespace) -> int:
    suite = load(args.suite, getattr(args, "scale", None))
    vs, jobs = planner.expand(suite)
    console = Console()
    print_sweep(console, suite)
    describe = untrained([j for j in jobs if j.kind == "describe"], jobs)
    with tempfile.TemporaryDirectory(prefix="moe-harness-describe-") as tmp:
        store = Store(Path(tmp))
        counts = execute(suite, describe, store, parse_endpoints(args.workers, suite.workers), 1, args.device,
                         10.0, None)
        records = store.records([j.key for j in describe])
    table = Table(title=f"{suite.name}: parameters per variant")
    for col in ("variant", "family", "experts", "experts/token", "total", "active", "total (no emb)",
                "active (no emb)"):
        table.add_column(col, justify="left" if col in ("variant", "family") else "right")
    for r in records:
        if r["status"] != "ok":
            table.add_row(escape(r["variant"]), "[red]failed[/]", escape(r.get("error") or ""), "", "", "", "", "")
            continue
        p, b = r["params"], r.get("build", {})
        ept = p.get("experts_per_token")
        table.add_row(escape(r["variant"]), b.get("family", "?"), str(p.get("num_experts") or "-"),
                      "-" if ept is None else f"{ept:g}", _m(p["total"]), _m(p["active"]),
                      _m(p["total_no_embed"]), _m(p["active_no_embed"]))
    console.print(table)
    pairs = compute_pairs(suite, records)
    for kind in ("active", "total"):
        found = [p for p in pairs if p["kind"] == kind]
        text = ", ".join(f"{p['moe']} ~ {p['dense']} (x{p['ratio']:.3f})" for p in found) or "none within tolerance"
        console.print(escape(f"equal-{kind} pairs (±{suite.pairing.tolerance:.0%}, within one sweep point and seed): "
                      f"{text}"))
    return 0 if counts["failed"] == 0 and counts["not run"] == 0 else 1
