"""The `harness` command. Each subcommand lives in its own module exposing
``add_arguments(parser)`` and ``main(args) -> int``; modules load only when their command runs,
so `harness --help` and `harness plan` start without ZeroMQ sockets, plots or models."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "run": ("harness.run", "run a suite: plan, dispatch to workers, report"),
    "plan": ("harness.plan_cmd", "print the variants, jobs and keys of a suite without running it"),
    "describe": ("harness.describe", "print parameter counts per variant and the pairs they make"),
    "worker": ("workers.daemon", "start a long-lived worker daemon on one device"),
    "keys": ("harness.keys", "make CURVE key pairs for workers and coordinators"),
    "launch": ("harness.launch", "write (and submit) a cluster job that starts worker daemons"),
    "endpoints": ("harness.endpoints", "write or remove a cluster job's endpoints file (run inside the job)"),
    "compare": ("harness.report.compare", "compare two runs' results"),
    "check": ("harness.report.check", "check a run against a baseline; non-zero exit on regression"),
    "report": ("harness.report.cli", "(re)write a run folder's report"),
}


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, object | None]:
    parser = argparse.ArgumentParser(prog="harness", description="MoE vs dense benchmark harness")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen command's module is imported.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    module = None
    for name, (mod, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_)
        if name == chosen:
            module = importlib.import_module(mod)
            module.add_arguments(p)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    from harness.suite import SuiteError

    argv = sys.argv[1:] if argv is None else argv
    parser, module = build_parser(argv)
    args = parser.parse_args(argv)
    if module is None:
        parser.print_help()
        return 2
    try:
        return int(module.main(args) or 0)
    except SuiteError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, read-only, no permission: one line naming the file and errno
        where = f"cannot write {exc.filename}: " if exc.filename else ""
        print(f"harness: {where}[Errno {exc.errno}] {exc.strerror or exc}; results stored before it are in "
              "the cache, so a rerun resumes", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
