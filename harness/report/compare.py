"""`harness compare RUN_A RUN_B`: the same tables across two runs (B − A), as Markdown on stdout.

Task metrics per variant (with a paired bootstrap CI where both runs kept per-document samples),
the equal-active / equal-total pair differences in each run, and probe latencies.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.report.bootstrap import paired_diff
from harness.report.numbers import fmt, fmt_signed
from harness.report.check import run_latencies
from harness.report.markdown import table_md
from harness.report.run import ReportError, Run
from harness.report.pairdiff import pair_diffs
from harness.report.tables import Table, fmt_diff, is_bucket_metric
from harness.store import write_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", type=Path, help="first run folder (A, the reference)")
    parser.add_argument("run_b", type=Path, help="second run folder (B); differences are B − A")
    parser.add_argument("--out", type=Path, default=None, help="also write the tables to this Markdown file")


def _num(x, digits=4) -> str:
    return fmt(x, digits) if isinstance(x, (int, float)) and not isinstance(x, bool) else "-"


def metrics_table(a: Run, b: Run) -> Table:
    table = Table("Task metrics", ["variant", "task", "metric", "A (metric unit)", "B (metric unit)", "Δ (B − A)",
                                   "95% CI (paired)", "sig."],
                  empty="Neither run has evaluation results.")
    variants = a.variants + [v for v in b.variants if v not in a.variants]
    for v in variants:
        ma, mb = a.metrics(v), b.metrics(v)
        for task in list(ma) + [t for t in mb if t not in ma]:
            va, vb = ma.get(task, {}), mb.get(task, {})
            names = [m for m in (a.task_metrics(task) + [m for m in b.task_metrics(task) if m not in a.task_metrics(task)])
                     if not is_bucket_metric(m) and (m in va or m in vb)]
            for m in names:
                x, y = va.get(m), vb.get(m)
                diff = (fmt_signed(y - x) if isinstance(x, (int, float)) and isinstance(y, (int, float)) else "-")
                ci, sig = "-", ""
                if x is not None and y is not None:
                    d = paired_diff(b.samples(v).get(task, []), a.samples(v).get(task, []), m)
                    _, ci, sig = fmt_diff(d)
                table.rows.append([v, task, m, _num(x), _num(y), diff, ci, sig])
    if table.rows:
        table.notes.append("CI: paired bootstrap over the documents both runs answered; * marks a CI excluding zero.")
    return table


def pairs_table(a: Run, b: Run) -> Table:
    table = Table("Pairs", ["kind", "MoE variant", "dense twin", "task", "metric", "Δ MoE − dense in A",
                            "Δ MoE − dense in B", "change"], empty="No pairs in either run.")
    rows: dict[tuple, list] = {}
    for i, run in enumerate((a, b)):
        for kind in ("active", "total"):
            for r in pair_diffs(run, kind):
                rows.setdefault((kind, r.pair.moe, r.pair.dense, r.task, r.metric), [None, None])[i] = r.moe - r.dense
    for (kind, moe, dense, task, metric), (da, db) in rows.items():
        change = fmt_signed(db - da) if da is not None and db is not None else "-"
        sgn = lambda x: fmt_signed(x) if x is not None else "-"  # noqa: E731
        table.rows.append([kind, moe, dense, task, metric, sgn(da), sgn(db), change])
    return table


def latency_table(a: Run, b: Run) -> Table:
    table = Table("Probe latency (ms p50)", ["variant", "row", "A (ms)", "B (ms)", "B / A (ratio)"],
                  empty="No latency rows in either run.")
    la, lb = run_latencies(a), run_latencies(b)
    for v in list(la) + [v for v in lb if v not in la]:
        ra, rb = la.get(v, {}), lb.get(v, {})
        for rid in list(ra) + [r for r in rb if r not in ra]:
            x, y = ra.get(rid, {}).get("ms_p50"), rb.get(rid, {}).get("ms_p50")
            ratio = f"{y / x:.2f}x" if isinstance(x, (int, float)) and isinstance(y, (int, float)) and x > 0 else "-"
            table.rows.append([v, rid, _num(x, 3), _num(y, 3), ratio])
    return table


def compare(run_a: Path, run_b: Path) -> str:
    a, b = Run.load(run_a), Run.load(run_b)
    head = f"# Compare: A = {a.name} ({a.path}), B = {b.name} ({b.path})\n\n"
    return head + "\n".join(table_md(t, level=2) for t in (metrics_table(a, b), pairs_table(a, b), latency_table(a, b)))


def main(args: argparse.Namespace) -> int:
    try:
        text = compare(args.run_a, args.run_b)
    except ReportError as e:
        print(f"harness compare: error: {e}", file=sys.stderr)
        return 2
    print(text)
    if args.out:
        write_atomic(args.out, text)
    return 0


if __name__ == "__main__":  # python -m harness.report.compare RUN_A RUN_B
    p = argparse.ArgumentParser(prog="harness compare", description=__doc__.splitlines()[0])
    add_arguments(p)
    sys.exit(main(p.parse_args()))
