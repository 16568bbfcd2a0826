"""`harness plan SUITE`: the dry run. Validates the suite and prints what `harness run` would do.

With ``--device h100`` (h200, a100, ...: ``moe_schema.devices``) or ``--peaks GBS,TFLOPS,MEMORY_GB``
it also prints what the run would cost there, counted without weights (``harness.estimate``): per
variant weights and KV-cache bytes, whether it fits (and what would make it fit), decode ms per
step at the probes' batch sizes; per job and in total the estimated seconds.
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
from harness.suite import SuiteError, load
from moe_schema.home import harness_home


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", type=Path)
    p.add_argument("--device", help="estimate cost on this device: h100, h200, a100, l40s, ... (moe_schema/devices.py)")
    p.add_argument("--peaks", help="measured peaks instead of the table: BANDWIDTH_GBS,TFLOPS,MEMORY_GB")
    p.add_argument("--devices", type=int, default=1, help="devices per variant (default 1)")
    p.add_argument("--mfu", type=float, default=0.4,
                   help="model FLOP utilisation assumed for evaluation and training (default 0.4)")
    p.add_argument("--task-tokens", default="", help="tokens per evaluation, NAME=N[,NAME=N...]")
    p.add_argument("--json", action="store_true", help="print the estimates as JSON")
    p.add_argument("--scale", help="pick one entry of the suite's `scales:`")
    p.add_argument("--price", action="append", default=[], metavar="DEVICE=USD",
                   help="USD per device-hour for the cost estimate, e.g. h100=2.5 (repeatable)")


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


def print_corpus(console: Console, suite) -> None:
    """A bios corpus's arithmetic: name space, bits per person, facts, tokenizer (``moe_schema.bios``)."""
    corpora = {id(c): c for c in [suite.corpus, *(m.corpus for m in suite.models)] if c}
    for corpus in corpora.values():
        if corpus.get("profile") == "bios":
            from moe_schema.bios import plan_lines

            for line in plan_lines(corpus):
                console.print(line, markup=False, highlight=False, soft_wrap=True)


def _gb(n) -> str:
    return "-" if n is None else f"{n / 1e9:,.2f} GB"


def _s(x) -> str:
    if x is None:
        return "-"
    return f"{x:,.1f} s" if x < 600 else f"{x / 3600:,.2f} h"


def _task_tokens(text: str) -> dict[str, int]:
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, n = item.partition("=")
        if not n.isdigit():
            raise SuiteError("--task-tokens", f"expected NAME=TOKENS, got {item!r}")
        out[name] = int(n)
    return out


def estimates(suite, jobs, args) -> dict:
    """The cost document ``--json`` prints (and the tables show)."""
    from harness import estimate

    try:
        target = estimate.parse_target(args.device, args.peaks, args.devices)
    except ValueError as exc:
        raise SuiteError("--device", str(exc).removeprefix("--device ")) from None
    if not 0 < args.mfu <= 1:
        raise SuiteError("--mfu", f"expected a fraction in (0, 1], got {args.mfu}")
    tokens = _task_tokens(args.task_tokens)
    start = {j.spec["variant"]["name"]: j for j in planner.untrained([j for j in jobs if j.kind == "describe"], jobs)}
    probes = [p.to_dict() for p in suite.probes]
    per_variant, failed = {}, {}
    for name, job in start.items():
        try:
            per_variant[name] = estimate.variant_estimate(job.spec["variant"], probes, target)
        except (ValueError, KeyError, TypeError) as exc:
            failed[name] = " ".join(str(exc).split())
    rows, total = [], 0.0
    for j in jobs:
        est = per_variant.get(j.variant)
        if est is None:
            rows.append({"key": j.key, "kind": j.kind, "variant": j.variant, "seconds": None,
                         "how": f"variant not counted: {failed.get(j.variant, '?')}"})
            continue
        seconds, how = estimate.job_seconds(j, est, target, args.mfu, tokens)
        total += seconds or 0.0
        s = j.summary()
        rows.append({"key": j.key, "kind": j.kind, "variant": j.variant,
                     "what": s.get("task") or s.get("probe") or "", "seconds": seconds, "how": how})
    variants = [{k: v for k, v in e.items() if k not in ("shape", "peaks")} for e in per_variant.values()]
    from moe_schema.devices import parse_price_args, price_table

    overrides = parse_price_args(getattr(args, "price", []))
    key, usd_h = estimate.price(target, args.device, price_table(suite.prices, overrides))
    source = ("--price" if key in overrides else "suite prices:" if key in suite.prices else "default") if usd_h else None
    price = {"device": key, "usd_per_hour": usd_h, "from": source,
             "total_usd": estimate.usd(total, target, usd_h) if usd_h is not None else None}
    return {"price": price, "suite": suite.name, "device": {"name": target.name, "bandwidth_gbs": target.bandwidth_gbs,
                                            "tflops_half": target.tflops_half, "tflops_fp32": target.tflops_fp32,
                                            "memory_bytes": target.memory_bytes, "devices": target.devices},
            "mfu": args.mfu, "variants": variants, "failed": failed, "jobs": rows, "total_seconds": total,
            "unestimated_jobs": sum(r["seconds"] is None for r in rows)}


def main(args: argparse.Namespace) -> int:
    suite = load(args.suite, getattr(args, "scale", None))
    vs, jobs = planner.expand(suite)
    costed = args.device is not None or args.peaks is not None
    doc = estimates(suite, jobs, args) if costed else None
    if args.json:
        json.dump(doc if costed else planner.plan_document(suite, vs, jobs), sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
        return 0
    console = Console()
    for line in planner.large_unlimited_tasks(suite):
        console.print(f"warning: {line}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    print_sweep(console, suite)
    print_corpus(console, suite)
    cache = harness_home() / "results"
    table = Table(title=f"{suite.name}: {len(vs)} variants, {len(jobs)} jobs")
    for col in ("key", "kind", "variant", "what", "cached") + (("est.", ) if costed else ()):
        table.add_column(col, justify="right" if col == "est." else "left")
    seconds = {r["key"]: r["seconds"] for r in doc["jobs"]} if costed else {}
    for j in jobs:
        s = j.summary()
        cached = "yes" if (cache / f"{j.key}.json").exists() else ""
        extra = (_s(seconds.get(j.key)),) if costed else ()
        table.add_row(j.key[:12], j.kind, escape(j.variant), s.get("task") or s.get("probe") or "", cached, *extra)
    console.print(table)
    if not costed:
        return 0
    d = doc["device"]
    cost = Table(title=f"on {d['devices']} x {d['name']} ({d['memory_bytes'] / 1e9:g} GB, {d['bandwidth_gbs']:g} GB/s, "
                       f"{d['tflops_half']:g} TFLOP/s half / {d['tflops_fp32']:g} fp32)")
    for col in ("variant", "dtype", "weights", "KV cache", "fits", "decode ms/step (batch@context)"):
        cost.add_column(col, justify="left" if col in ("variant", "dtype", "fits", "decode ms/step (batch@context)")
                        else "right")
    for v in doc["variants"]:
        fit = "[green]yes[/]" if v["fits"] else f"[red]no[/]: {v['to_fit']}"
        decode = "  ".join(f"{k} {ms:.3g}" for k, ms in v["decode_ms"].items()) or "-"
        cost.add_row(v["variant"], v["dtype"], _gb(v["weight_bytes"]), _gb(v["kv_bytes"]), fit, decode)
    for name in doc["failed"]:
        cost.add_row(name, "", "", "", "[red]not counted (below)[/]", "")
    console.print(cost)
    for name, error in doc["failed"].items():
        console.print(f"[red]{name}[/]: {error}", soft_wrap=True, highlight=False)
    by_kind: dict[str, float] = {}
    for r in doc["jobs"]:
        by_kind[r["kind"]] = by_kind.get(r["kind"], 0.0) + (r["seconds"] or 0.0)
    parts = ", ".join(f"{k} {_s(v)}" for k, v in by_kind.items())
    note = f" ({doc['unestimated_jobs']} job(s) not estimated)" if doc["unestimated_jobs"] else ""
    console.print(f"estimated total: {_s(doc['total_seconds'])} ({parts}) at MFU {doc['mfu']:g} for evaluation "
                  f"and training, the roofline for probes{note}")
    p = doc["price"]
    if p["usd_per_hour"] is not None:
        from harness.report.numbers import fmt_usd

        console.print(f"estimated cost: {fmt_usd(p['total_usd'])} at ${p['usd_per_hour']:g}/hour x {d['devices']} "
                      f"device(s) ({p['device']}, {p['from']} price; the report's cost per answer uses the same table)",
                      highlight=False)
    else:
        console.print("estimated cost: no price for this device (name one with --device and give --price DEVICE=USD)",
                      highlight=False)
    return 0
