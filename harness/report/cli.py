"""`harness report RUN`: (re)write a run folder's report.md, report.html and lm-eval exports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.report import write_report
from harness.report.run import ReportError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run folder (reports/<suite>-<time>)")
    parser.add_argument("--price", action="append", default=[], metavar="DEVICE=USD",
                        help="USD per device-hour for the costs, e.g. h100=2.5 (repeatable; moe_schema/devices.py)")


def main(args: argparse.Namespace) -> int:
    from moe_schema.check import SchemaError
    from moe_schema.devices import parse_price_args

    try:
        written = write_report(args.run, parse_price_args(args.price))
    except (ReportError, SchemaError) as e:
        print(f"harness report: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {written['md']}\nwrote {written['html']}")
    for variant, path in written["lm_eval"].items():
        print(f"wrote {path}  (lm-eval results of {variant})")
    return 0
