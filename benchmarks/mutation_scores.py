"""Per-module mutation scores from the last `mutmut run` (what `tox -e mutation` prints at the end).

mutmut keeps one ``mutants/<module path>.meta`` JSON per mutated file, mapping each mutant's name to
the exit code of the tests that ran against it. This reads those files (nothing is re-run) and prints,
per module: killed, timeout, survived, no tests (no selected test calls the mutated function), not
checked, and the score. The score counts a timeout as caught (the tests noticed: they hung, and the
mutmut deadline stopped them) and everything else not killed as missed.

    python benchmarks/mutation_scores.py [--survivors] [--fail-under 85] [--mutants mutants]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

# mutmut's exit-code meanings (mutmut/stats.py, status_by_exit_code), folded into the columns shown.
KILLED = {1, 3}
TIMEOUT = {36, 24, -24, 152, 255}
SURVIVED = {0}
NO_TESTS = {5, 33}
NOT_CHECKED = {None}
COLUMNS = ("killed", "timeout", "survived", "no tests", "not checked", "other")


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
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if codes:
            out[str(meta.relative_to(mutants))[: -len(".meta")]] = codes
    return out


def score(counts: Counter) -> float:
    total = sum(counts.values())
    return 100.0 * (counts["killed"] + counts["timeout"]) / total if total else 100.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mutants", type=Path, default=Path("mutants"), help="mutmut's folder (default: mutants)")
    ap.add_argument("--survivors", action="store_true", help="also list every mutant not killed, by name")
    ap.add_argument("--fail-under", type=float, default=None, metavar="PCT",
                    help="exit 1 when the total score is below PCT")
    args = ap.parse_args(argv)

    results = load(args.mutants)
    if not results:
        print(f"no mutmut results under {args.mutants}/ (run `mutmut run` first)", file=sys.stderr)
        return 2
    width = max(len(m) for m in results) + 2
    print(f"{'module':<{width}}" + "".join(f"{c:>12}" for c in COLUMNS) + f"{'score':>9}")
    total = Counter()
    for module, codes in results.items():
        counts = Counter(status(c) for c in codes.values())
        total += counts
        print(f"{module:<{width}}" + "".join(f"{counts[c]:>12}" for c in COLUMNS) + f"{score(counts):>8.1f}%")
    print(f"{'TOTAL':<{width}}" + "".join(f"{total[c]:>12}" for c in COLUMNS) + f"{score(total):>8.1f}%")
    if args.survivors:
        for module, codes in results.items():
            for name, code in codes.items():
                if status(code) not in ("killed", "timeout"):
                    print(f"{status(code):>12}  {name}")
    if args.fail_under is not None and score(total) < args.fail_under:
        print(f"total score {score(total):.1f}% is under {args.fail_under}%", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
