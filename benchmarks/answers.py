"""The figures issue 19 names, from a run of suites/claims.yaml or suites/longtail.yaml.

    python benchmarks/answers.py --suite suites/claims.yaml [--scale tiny] [--out DIR]   # runs it
    python benchmarks/answers.py --run reports/claims-...                                # reads one

Prints the run's wall-clock and the CPU seconds its worker daemons used (on a shared machine the
CPU seconds / number of workers are the better estimate of an uncontended run), then for every
trained variant and popularity bucket the knowledge it shows against chance: 4-way accuracy
(chance 0.25), accuracy over all values (chance mean 1/V) and bits stored per fact, with a
one-sided binomial z of accuracy over chance; "exp/ep" is exposures per fact in one epoch of the corpus.
Torch-free.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

BUCKETS = ("head", "torso", "tail")


def run_suite(suite: Path, scale: str | None, out: Path) -> tuple[float, float]:
    """Run ``harness run`` (its own local daemons); return (wall seconds, CPU seconds of it and its workers)."""
    cmd = [sys.executable, "-m", "harness.cli", "run", str(suite), "--out", str(out), "--no-cache"]
    if scale:
        cmd += ["--scale", scale]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _z(acc: float, chance: float, n: int) -> float:
    return (acc - chance) * math.sqrt(n) / math.sqrt(chance * (1 - chance)) if n else float("nan")


def knowledge(run: Path) -> list[dict]:
    """One row per (variant, bucket): 4-way and all-values accuracy, chance, bits per fact, z."""
    recs = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]
    rows: dict[tuple[str, str], dict] = {}
    for r in recs:
        if r.get("kind") != "evaluate" or r.get("status") != "ok":
            continue
        for bucket in BUCKETS:
            row = rows.setdefault((r["variant"], bucket), {"variant": r["variant"], "bucket": bucket})
            four, exact = r["metrics"].get(f"longtail_{bucket}"), r["metrics"].get(f"longtail_values_{bucket}")
            if four is not None:
                n = len(r["samples"][f"longtail_{bucket}"])
                row.update(acc4=four["acc"], n4=n, z4=_z(four["acc"], 0.25, n))
            if exact is not None:
                name = f"longtail_values_{bucket}"
                regime = (r.get("task_regime") or {}).get(name, {})
                chance = (sum(regime["chance"].values()) / len(regime["chance"])) if regime.get("chance") else None
                n = len(r["samples"][name])
                row.update(acc_v=exact["acc"], chance_v=chance, bits=exact["bits"], n_v=n,
                           z_v=_z(exact["acc"], chance, n) if chance else float("nan"),
                           exposures=regime.get("exposures_per_fact", {}).get(bucket))
    return [row for row in rows.values() if len(row) > 2]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", type=Path)
    p.add_argument("--scale")
    p.add_argument("--out", type=Path)
    p.add_argument("--run", type=Path, help="an existing run folder (nothing is run)")
    args = p.parse_args()
    if args.run is None:
        if args.suite is None:
            p.error("give --suite to run one or --run to read one")
        out = args.out or Path("reports") / f"answers-{int(time.time())}"
        wall, cpu = run_suite(args.suite, args.scale, out)
        print(f"{args.suite} (scale {args.scale or 'default'}): {wall:.0f} s wall, {cpu:.0f} CPU s in all "
              f"(harness and its worker daemons)")
        run = out
    else:
        run = args.run
    print(f"{'variant':48} {'bucket':6} {'exp/ep':>7} {'4-way':>6} {'z':>6} {'all-V':>6} {'chance':>6} {'z':>6} "
          f"{'bits/fact':>9}")
    for row in sorted(knowledge(run), key=lambda r: (r["variant"], BUCKETS.index(r["bucket"]))):
        def f(key, fmt="{:.3f}"):
            v = row.get(key)
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)
        print(f"{row['variant'][:48]:48} {row['bucket']:6} {f('exposures', '{:.0f}'):>7} {f('acc4'):>6} "
              f"{f('z4', '{:.1f}'):>6} {f('acc_v'):>6} {f('chance_v'):>6} {f('z_v', '{:.1f}'):>6} {f('bits'):>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
