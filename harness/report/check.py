"""`harness check RUN --baseline FILE [--update]`: fail (exit 1) when a run regressed against a baseline.

The baseline file (YAML, or JSON by its suffix) holds, per variant, the expected task metrics and
probe latencies, and default tolerances at the top::

    defaults:
      metric_tolerance: 0.05        # a metric may fall this much (absolute); lower-is-better ones: rise
      metric_rel_tolerance: 0.02    # ... or this fraction of its baseline (perplexities), whichever allows more
      latency_tolerance_ms: 2.0     # a latency may rise this many ms ...
      latency_rel_tolerance: 0.5    # ... or this fraction of its baseline, whichever allows more
    metrics:
      moe-a@topk(k=2):
        arith: {acc: 0.6292}                              # value only: the default tolerance
        facts: {acc: {value: 0.5389, tolerance: 0.02}}    # or its own
    latency:
      moe-a@topk(k=2):
        latency/bs1/ctx64/decode: {ms_p50: 4.46}

Exit codes: 0 all within tolerance; 1 something regressed, is missing or is not a finite number (NaN
is a regression, never a pass); 2 the check could not be made (an unreadable run or baseline, bad
input), with one line saying why. Only a real regression exits 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import yaml

from harness.report.run import ReportError, Run, metric_names
from harness.report.tables import Table, fmt_value, is_bucket_metric, text_table
from harness.store import write_atomic

DEFAULTS = {"metric_tolerance": 0.05, "metric_rel_tolerance": 0.02, "latency_tolerance_ms": 2.0,
            "latency_rel_tolerance": 0.5}
#: latency figures --update records per probe row (every ms_* figure in a baseline is checked)
UPDATE_LATENCY_FIELDS = ("ms_p50",)


EXIT_CODES = """exit codes:
  0  every baseline entry is within its tolerance (or --update wrote the baseline)
  1  a real regression: something regressed, is missing, or is NaN/infinite in the run
  2  the check could not be made: unreadable or malformed run folder or baseline (one line says why)"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXIT_CODES
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("run", type=Path, help="run folder (reports/<suite>-<time>)")
    parser.add_argument("--baseline", type=Path, required=True, help="baseline file (.yaml/.yml or .json)")
    parser.add_argument("--update", action="store_true", help="write the baseline from this run instead of checking")


def row_id(probe_name: str, row: dict) -> str:
    """A probe row's name in a baseline: latency/bs1/ctx64/decode."""
    parts = [str(probe_name)]
    if "batch_size" in row:
        parts.append(f"bs{row['batch_size']}")
    if "context" in row:
        parts.append(f"ctx{row['context']}")
    if "phase" in row:
        parts.append(str(row["phase"]))
    return "/".join(parts)


def run_latencies(run: Run) -> dict[str, dict[str, dict]]:
    """{variant: {row id: row}} for every probe row with ms_* figures."""
    out: dict[str, dict] = {}
    for variant, probe in run.probes():
        for row in probe.get("rows") or []:
            if any(k.startswith("ms_") for k in row):
                out.setdefault(variant, {})[row_id(probe.get("name"), row)] = row
    return out


# ---- baseline file -------------------------------------------------------------------------
def load_baseline(path: Path) -> dict:
    if not path.is_file():
        raise ReportError(f"{path}: no such baseline file (write one with --update)")
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ReportError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {e}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a mapping with defaults/metrics/latency at the top")
    unknown = set(data) - {"defaults", "metrics", "latency", "suite", "source"}
    if unknown:
        raise ReportError(f"{path}: unknown top-level key(s) {sorted(unknown)}; expected defaults, metrics, latency")
    defaults = dict(DEFAULTS)
    for k, v in (data.get("defaults") or {}).items():
        if k not in DEFAULTS:
            raise ReportError(f"{path}: defaults.{k}: unknown setting; known: {', '.join(DEFAULTS)}")
        if not _is_finite(v) or v < 0:
            raise ReportError(f"{path}: defaults.{k}: expected a number >= 0, got {v!r}")
        defaults[k] = float(v)
    data["defaults"] = defaults
    for section, depth in (("metrics", 3), ("latency", 3)):
        _validate(path, section, data.get(section) or {}, depth)
    return data


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_finite(v) -> bool:
    return _is_num(v) and math.isfinite(v)


def _validate(path: Path, where: str, node, depth: int) -> None:
    if depth == 0:
        ok = _is_finite(node) or (isinstance(node, dict) and _is_finite(node.get("value"))
                                  and set(node) <= {"value", "tolerance", "rel_tolerance"}
                                  and all(_is_finite(node[k]) for k in node))
        if not ok:
            raise ReportError(f"{path}: {where}: expected a number or {{value, tolerance}}, got {node!r}")
        return
    if not isinstance(node, dict):
        raise ReportError(f"{path}: {where}: expected a mapping, got {node!r}")
    for k, v in node.items():
        _validate(path, f"{where}.{k}", v, depth - 1)


def _entry(node) -> tuple[float, dict]:
    return (float(node), {}) if _is_num(node) else (float(node["value"]), node)


# ---- checking ------------------------------------------------------------------------------
def check(run: Run, baseline: dict) -> Table:
    """Every baseline entry against the run: status ok / improved / REGRESSED / MISSING."""
    d = baseline["defaults"]
    table = Table("Regression check", ["status", "variant", "what", "baseline", "current", "change", "allowed"])
    for variant, tasks in (baseline.get("metrics") or {}).items():
        metrics = run.metrics(variant)
        for task, entries in tasks.items():
            for metric, node in entries.items():
                expected, opts = _entry(node)
                tol = max(float(opts.get("tolerance", d["metric_tolerance"])),
                          float(opts.get("rel_tolerance", d["metric_rel_tolerance"])) * abs(expected))
                current = metrics.get(task, {}).get(metric)
                what = f"{task} {metric}"
                if not _is_num(current):
                    table.rows.append(["MISSING", variant, what, fmt_value(expected), "-", "-", f"±{tol:.4g}"])
                    continue
                if not math.isfinite(current):  # NaN compares false both ways: it would read "ok"
                    table.rows.append(["REGRESSED", variant, what, fmt_value(expected), str(current), "-",
                                       f"±{tol:.4g}"])
                    continue
                change = current - expected
                lower = run.lower_is_better(task, metric)
                worse = change if lower else -change
                status = "REGRESSED" if worse > tol + 1e-12 else "improved" if -worse > tol else "ok"
                direction = "≤" if lower else "≥"
                bound = expected + tol if lower else expected - tol
                table.rows.append([status, variant, what, fmt_value(expected), fmt_value(current),
                                   f"{change:+.4f}" if abs(change) < 1000 else f"{change:+.4g}",
                                   f"{direction} {fmt_value(bound)}"])
    latencies = run_latencies(run)
    for variant, rows in (baseline.get("latency") or {}).items():
        for rid, fields in rows.items():
            row = latencies.get(variant, {}).get(rid, {})
            for field, node in fields.items():
                expected, opts = _entry(node)
                allowed = max(float(opts.get("tolerance", d["latency_tolerance_ms"])),
                              float(opts.get("rel_tolerance", d["latency_rel_tolerance"])) * expected)
                current = row.get(field)
                what = f"{rid} {field}"
                if not _is_num(current):
                    table.rows.append(["MISSING", variant, what, f"{expected:.3f} ms", "-", "-", f"≤ {expected + allowed:.3f}"])
                    continue
                if not math.isfinite(current):
                    table.rows.append(["REGRESSED", variant, what, f"{expected:.3f} ms", str(current), "-",
                                       f"≤ {expected + allowed:.3f}"])
                    continue
                change = current - expected
                status = "REGRESSED" if change > allowed + 1e-12 else "improved" if -change > allowed else "ok"
                table.rows.append([status, variant, what, f"{expected:.3f} ms", f"{current:.3f} ms",
                                   f"{change:+.3f} ms", f"≤ {expected + allowed:.3f}"])
    bad = sum(r[0] in ("REGRESSED", "MISSING") for r in table.rows)
    table.notes.append(f"{len(table.rows)} checked: {len(table.rows) - bad} passed, {bad} regressed or missing.")
    table.empty = "The baseline lists nothing to check."
    return table


def baseline_from_run(run: Run, defaults: dict | None = None) -> dict:
    metrics: dict = {}
    for v in run.variants:
        for task, values in run.metrics(v).items():
            names = [m for m in metric_names(values) if not is_bucket_metric(m)]
            for m in names:
                if not math.isfinite(values[m]):
                    raise ReportError(f"{run.path}: {v} {task} {m} is {values[m]}; a baseline holds finite numbers only")
            if names:
                metrics.setdefault(v, {})[task] = {m: round(float(values[m]), 6) for m in names}
    latency: dict = {}
    for v, rows in run_latencies(run).items():
        for rid, row in rows.items():
            fields = {f: round(float(row[f]), 4) for f in UPDATE_LATENCY_FIELDS if _is_finite(row.get(f))}
            if fields:
                latency.setdefault(v, {})[rid] = fields
    return {"suite": run.name, "source": str(run.path), "defaults": dict(defaults or DEFAULTS),
            "metrics": metrics, "latency": latency}


def write_baseline(path: Path, data: dict) -> None:
    if path.suffix == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = ("# moe-harness regression baseline: `harness check RUN --baseline THIS --update` rewrites it.\n"
                "# defaults: tolerances; each check allows the larger of the absolute and the relative one.\n"
                + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    write_atomic(path, text)


def main(args: argparse.Namespace) -> int:
    try:
        run = Run.load(args.run)
        if args.update:
            old = load_baseline(args.baseline)["defaults"] if args.baseline.is_file() else None
            data = baseline_from_run(run, old)
            write_baseline(args.baseline, data)
            n = sum(len(m) for t in data["metrics"].values() for m in t.values())
            n_lat = sum(len(r) for r in data["latency"].values())
            print(f"wrote {args.baseline}: {n} metric(s) and {n_lat} latency row(s) from {run.path}")
            return 0
        table = check(run, load_baseline(args.baseline))
    except ReportError as e:
        print(f"harness check: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001  bad input the readers missed: never exit 1, "regressed"
        print(f"harness check: error: could not check {args.run} against {args.baseline}: "
              f"{type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr)
        return 2
    print(text_table(table), end="")
    return 1 if any(r[0] in ("REGRESSED", "MISSING") for r in table.rows) else 0


if __name__ == "__main__":  # python -m harness.report.check RUN --baseline FILE
    p = argparse.ArgumentParser(prog="harness check", description=__doc__.splitlines()[0])
    add_arguments(p)
    sys.exit(main(p.parse_args()))
