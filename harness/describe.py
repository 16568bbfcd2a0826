"""`harness describe SUITE`: parameter counts per variant, and the pairs they make, without weights.

Counting needs no model: config builds are counted by the per-family arithmetic, checkpoints from
config.json and their safetensors headers (``harness.count``). So a suite of 47B-parameter models
is described on a laptop in seconds, with no worker started. A variant that a `train:` section
trains first is counted on its untrained build: training changes no shape, and describing a suite
should not wait for its training.

``--json`` prints ``{"suite", "variants": [{variant, model, status, params, build, error}], "pairs"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import plan as planner
from harness.count import CountError, count_variant
from harness.derive import DeriveError
from harness.run import compute_pairs
from harness.plan_cmd import print_sweep
from harness.suite import load


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", type=Path)
    p.add_argument("--json", action="store_true", help="print the counts and pairs as JSON")
    p.add_argument("--scale", help="pick one entry of the suite's `scales:`")


def _m(n) -> str:
    return "-" if n is None else f"{n / 1e6:,.2f}M"


def count_records(suite) -> list[dict]:
    """One describe record per variant (the shape ``harness run`` stores), counted without weights."""
    _, jobs = planner.expand(suite)
    records = []
    for job in planner.untrained([j for j in jobs if j.kind == "describe"], jobs):
        rec = {**job.summary(), "status": "ok", "error": None}
        try:
            counted = count_variant(job.spec["variant"])
            rec.update(params=counted["params"], build=counted["build"])
        except (CountError, DeriveError, ValueError, TypeError, KeyError) as exc:
            text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            rec.update(status="failed", error=" ".join(str(text).split()), params=None, build={})
        records.append(rec)
    return records


def print_failures(console: Console, records: list[dict]) -> None:
    """Each failed row's error once, below the table (wrapped inside a cell it was unreadable)."""
    for r in records:
        if r["status"] != "ok":
            console.print(f"[red]{r['variant']}[/]: {r['error']}", soft_wrap=True, highlight=False)


def main(args: argparse.Namespace) -> int:
    suite = load(args.suite, getattr(args, "scale", None))
    records = count_records(suite)
    pairs = compute_pairs(suite, records)
    failed = sum(r["status"] != "ok" for r in records)
    if args.json:
        doc = {"suite": suite.name, "pairing": {"tolerance": suite.pairing.tolerance},
               "variants": [{k: r[k] for k in ("variant", "model", "status", "params", "build", "error")}
                            for r in records], "pairs": pairs}
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0 if failed == 0 else 1
    console = Console()
    print_sweep(console, suite)
    table = Table(title=f"{suite.name}: parameters per variant")
    for col in ("variant", "family", "experts", "experts/token", "total", "active", "total (no emb)",
                "active (no emb)"):
        table.add_column(col, justify="left" if col in ("variant", "family") else "right")
    for r in records:
        if r["status"] != "ok":
            table.add_row(escape(r["variant"]), "[red]failed[/]", "", "", "", "", "", "")
            continue
        p, b = r["params"], r.get("build", {})
        ept = p.get("experts_per_token")
        table.add_row(escape(r["variant"]), b.get("family", "?"), str(p.get("num_experts") or "-"),
                      "-" if ept is None else f"{ept:g}", _m(p["total"]), _m(p["active"]),
                      _m(p["total_no_embed"]), _m(p["active_no_embed"]))
    console.print(table)
    print_failures(console, records)
    for kind in ("active", "total"):
        found = [p for p in pairs if p["kind"] == kind]
        text = ", ".join(f"{p['moe']} ~ {p['dense']} (x{p['ratio']:.3f})" for p in found) or "none within tolerance"
        console.print(escape(f"equal-{kind} pairs (±{suite.pairing.tolerance:.0%}, within one sweep point and seed): "
                      f"{text}"))
    return 0 if failed == 0 else 1
