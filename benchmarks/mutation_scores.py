"""Per-module mutation scores from the last `mutmut run` (what `tox -e mutation` prints at the end).

mutmut keeps one ``mutants/<module path>.meta`` JSON per mutated file, mapping each mutant's name to
the exit code of the tests that ran against it. This reads those files (nothing is re-run) and prints,
per module: killed, timeout, survived, no tests (no selected test calls the mutated function), not
checked, and the score. The score counts a timeout as caught (the tests noticed: they hung, and the
mutmut deadline stopped them) and everything else not killed as missed.

    python benchmarks/mutation_scores.py [--survivors] [--fail-under 85] [--mutants mutants]
    python benchmarks/mutation_scores.py --rerun-survivors   # re-test survivors against today's tests

mutmut keeps a verdict until the mutated function changes, so a test added since the last run kills
nothing until the survivors are run again: ``tox -e mutation`` does that after ``mutmut run``. The
last column counts the module's lines marked ``# pragma: no mutate`` (each says why it is equivalent).
    python benchmarks/mutation_scores.py --sample 40 > sample.txt   # names to run when time is short
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

# mutmut's exit-code meanings (mutmut/stats.py, status_by_exit_code), folded into the columns shown.
KILLED = {1, 3}
TIMEOUT = {36, 24, -24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}
NOT_CHECKED = {None}
COLUMNS = ("killed", "timeout", "survived", "no tests", "not checked", "other")
RERUN = ("survived", "no tests")  # what a test added since the last run may now kill or cover


def status(exit_code: int | None) -> str:
    """The column one mutant's exit code falls in."""
    for name, codes in (("killed", KILLED), ("timeout", TIMEOUT), ("survived", SURVIVED),
                        ("no tests", NO_TESTS), ("not checked", NOT_CHECKED)):
        if exit_code in codes:
            return name
    return "other"  # segfault, suspicious, skipped, interrupted: looked at one by one


def load(mutants: Path) -> dict[str, dict[str, int | None]]:
    """``{module path: {mutant name: exit code}}`` for every mutated file mutmut has results for."""
    out = {}
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = _read_meta(meta)["exit_code_by_key"]
        if codes:
            out[str(meta.relative_to(mutants))[: -len(".meta")]] = codes
    return out


def _read_meta(meta: Path) -> dict:
    """One .meta file; read again if mutmut is rewriting it right now (a run in progress)."""
    for attempt in range(20):
        try:
            return json.loads(meta.read_text())
        except ValueError:
            time.sleep(0.1)
    raise SystemExit(f"{meta}: not valid JSON")


def pragma_lines(module: str) -> int:
    """Lines of ``module`` (a path from the repository root) excluded by ``# pragma: no mutate``."""
    path = Path(module)
    return sum("pragma: no mutate" in line for line in path.read_text().splitlines()) if path.is_file() else 0


def rerun(results: dict[str, dict[str, int | None]], max_children: int, mutants: Path = Path("mutants")) -> int:
    """``mutmut run`` the mutants that survived or had no test, in chunks (argv has a limit)."""
    names = sorted(n for codes in results.values() for n, c in codes.items() if status(c) in RERUN)
    print(f"re-testing {len(names)} surviving mutants against the current tests", flush=True)
    # mutmut records which tests call which function once per test; a function that moved to another
    # module since would keep the tests of its old place. Record them afresh (one pass of the tests).
    (mutants / "mutmut-stats.json").unlink(missing_ok=True)
    for i in range(0, len(names), 400):
        cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children), *names[i:i + 400]]
        if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
            print("mutmut run failed while re-testing survivors", file=sys.stderr)
            return 1
    return 0


def changed_line(name: str) -> str:
    """The line a mutant changes, as mutated (from ``mutmut show``)."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "show", name], capture_output=True, text=True).stdout
    plus = [line[1:].strip() for line in out.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return plus[0] if plus else "(no diff shown)"


def write_survivors(results: dict[str, dict[str, int | None]], path: Path) -> None:
    """A markdown list of every mutant not killed, by module, each with the line as mutated."""
    lines = ["# Mutants not killed by the last `tox -e mutation` run", "",
             "Written by `python benchmarks/mutation_scores.py --write-survivors docs/mutation_survivors.md`.",
             "Each line: the mutant, its status, and the line as mutated. Why each is left: docs/mutation.md.", ""]
    for module, codes in results.items():
        left = [(n, status(c)) for n, c in codes.items() if status(c) not in ("killed", "timeout")]
        if left:
            lines += [f"## {module} ({len(left)})", ""]
            lines += [f"- `{n}` ({st}): `{changed_line(n)}`" for n, st in sorted(left)]
            lines.append("")
    path.write_text("\n".join(lines))


def score(counts: Counter) -> float:
    total = sum(counts.values())
    return 100.0 * (counts["killed"] + counts["timeout"]) / total if total else 100.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's folder (default: mutants)")
    ap.add_argument("--survivors", action="store_true", help="also list every mutant not killed, by name")
    ap.add_argument("--only", type=Path, default=None, metavar="FILE",
                    help="count only the mutants named in FILE, one a line (a sample: see --sample)")
    ap.add_argument("--sample", type=int, default=None, metavar="N",
                    help="print N mutant names per module, drawn at random (seed 0), and exit: a quick "
                         "estimate is `mutmut run $(cat FILE)` then --only FILE")
    ap.add_argument("--rerun-survivors", action="store_true",
                    help="run mutmut again on every mutant that survived or had no test, then exit")
    ap.add_argument("--write-survivors", type=Path, default=None, metavar="FILE",
                    help="write every mutant not killed, with its mutated line, to FILE (markdown)")
    ap.add_argument("--max-children", type=int, default=2, help="mutmut's parallelism for --rerun-survivors")
    ap.add_argument("--fail-under", type=float, default=None, metavar="PCT",
                    help="exit 1 when the total score is below PCT")
    args = ap.parse_args(argv)

    results = load(args.mutants)
    if not results:
        print(f"no mutmut results under {args.mutants}/ (run `mutmut run` first)", file=sys.stderr)
        return 2
    if args.rerun_survivors:
        return rerun(results, args.max_children, args.mutants)
    if args.sample is not None:
        rng = random.Random(0)
        for codes in results.values():
            for name in rng.sample(sorted(codes), min(args.sample, len(codes))):
                print(name)
        return 0
    if args.only is not None:
        wanted = set(args.only.read_text().split())
        results = {m: {k: c for k, c in codes.items() if k in wanted} for m, codes in results.items()}
        results = {m: codes for m, codes in results.items() if codes}
        if not results:
            print(f"none of the mutants named in {args.only} has a result", file=sys.stderr)
            return 2
    width = max(len(m) for m in results) + 2
    print(f"{'module':<{width}}" + "".join(f"{c:>12}" for c in COLUMNS) + f"{'score':>9}{'pragma lines':>14}")
    total, pragmas = Counter(), 0
    for module, codes in results.items():
        counts = Counter(status(c) for c in codes.values())
        total += counts
        pragmas += (n := pragma_lines(module))
        print(f"{module:<{width}}" + "".join(f"{counts[c]:>12}" for c in COLUMNS) + f"{score(counts):>8.1f}%{n:>14}")
    print(f"{'TOTAL':<{width}}" + "".join(f"{total[c]:>12}" for c in COLUMNS) + f"{score(total):>8.1f}%{pragmas:>14}")
    if args.survivors:
        for module, codes in results.items():
            for name, code in codes.items():
                if status(code) not in ("killed", "timeout"):
                    print(f"{status(code):>12}  {name}")
    if args.write_survivors is not None:
        write_survivors(results, args.write_survivors)
    if args.fail_under is not None and score(total) < args.fail_under:
        print(f"total score {score(total):.1f}% is under {args.fail_under}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
