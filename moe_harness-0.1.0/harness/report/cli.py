"""`harness report RUN`: (re)write a run folder's report.md, report.html and lm-eval exports."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.report import write_report
from harness.report.run import ReportError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run folder (reports/<suite>-<time>)")


def main(args: argparse.Namespace) -> int:
    try:
        written = write_report(args.run)
    except ReportError as e:
        print(f"harness report: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {written['md']}\nwrote {written['html']}")
    for variant, path in written["lm_eval"].items():
        print(f"wrote {path}  (lm-eval results of {variant})")
    return 0
