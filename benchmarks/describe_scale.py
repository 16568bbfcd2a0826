"""Issue 15's figure: `harness describe --json` on four public shapes, without weights.

    python benchmarks/describe_scale.py [--keep DIR]

The suite (tests/hollow.py's PUBLIC): OLMoE-1B-7B, Mixtral-8x7B, Qwen3-30B-A3B and OLMo-1B, run
in two forms, each in a fresh `harness describe --json` process:

- as config builds (counted by harness/derive.py's arithmetic);
- as local checkpoints: config.json plus a full-size bf16 safetensors file whose data is a sparse
  hole (93 GB on paper for Mixtral, a few MB on disk), counted from the headers alone.

Prints each run's wall time and peak resident memory (the child's ru_maxrss), and checks them
against the issue's bounds (60 s, 3 GB), that every count is within 0.1% of today's arithmetic,
and that the two forms agree exactly. Exit status 1 if any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from hollow import PUBLIC, model_tensors, write_hollow_checkpoint  # noqa: E402

from harness import derive  # noqa: E402

KEYS = ("total", "active", "total_no_embed", "active_no_embed")
LIMIT_S, LIMIT_BYTES = 60.0, 3e9


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=Path, help="write the checkpoints and suites here (default: a temp folder)")
    ap.add_argument("--write", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.write:
        for name, config in PUBLIC.items():
            write_hollow_checkpoint(args.write / name, derive.resolved(config), model_tensors(config))
        return 0
    root = args.keep or Path(tempfile.mkdtemp(prefix="describe-scale-"))
    print("writing hollow checkpoints (tensor names from the meta device) ...", flush=True)
    # in a child: torch stays out of this process, whose size a forked child's ru_maxrss starts from
    subprocess.run([sys.executable, __file__, "--write", str(root)], check=True)
    suites = {
        "config builds": {"name": "public-config", "dtype": "bfloat16",
                          "models": [{"name": n, "config": c} for n, c in PUBLIC.items()]},
        "hollow checkpoints": {"name": "public-checkpoints", "dtype": "bfloat16",
                               "models": [{"name": n, "checkpoint": str(root / n)} for n in PUBLIC]},
    }
    results, ok = {}, True
    print(f"\n{'form':20} {'wall s':>8} {'peak RSS MB':>12}  (bounds: {LIMIT_S:g} s, {LIMIT_BYTES / 1e6:,.0f} MB)")
    for form, suite in suites.items():
        path = root / f"{suite['name']}.yaml"
        path.write_text(yaml.safe_dump(suite, sort_keys=False))
        doc, seconds, peak = run_one(path)
        results[form] = {v["variant"]: v for v in doc["variants"]}
        within = seconds < LIMIT_S and peak < LIMIT_BYTES
        ok &= within
        print(f"{form:20} {seconds:8.2f} {peak / 1e6:12.1f}  {'ok' if within else 'OVER'}")
    print(f"\n{'model':16} {'total':>16} {'active':>16} {'gap vs derive':>14} {'forms agree':>12}")
    for name, config in PUBLIC.items():
        want = derive.count(config)
        a, b = results["config builds"][name], results["hollow checkpoints"][name]
        if a["status"] != "ok" or b["status"] != "ok":
            print(f"{name:16} failed: {a['error'] or b['error']}")
            ok = False
            continue
        gap = max(derive.relative_gap(b["params"][k], want[k]) for k in KEYS)
        agree = all(a["params"][k] == b["params"][k] for k in KEYS)
        ok &= gap <= 1e-3 and agree
        print(f"{name:16} {b['params']['total']:16,} {b['params']['active']:16,} {gap:14.2e} {str(agree):>12}")
    disk = sum(os.stat(root / n / "model.safetensors").st_blocks * 512 for n in PUBLIC)
    paper = sum(os.stat(root / n / "model.safetensors").st_size for n in PUBLIC)
    print(f"\ncheckpoints: {paper / 1e9:,.1f} GB on paper, {disk / 1e6:,.1f} MB on disk ({root})")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    print("all checks pass" if ok else "SOME CHECKS FAIL")
    return 0 if ok else 1


def run_one(path: Path) -> tuple[dict, float, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "describe", str(path), "--json"], cwd=REPO,
                                env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its peak RSS
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"describe {path} failed ({proc.returncode}): {err.read().decode()[-2000:]}")
        return json.loads(out.read()), seconds, usage.ru_maxrss * 1024  # Linux: kilobytes


if __name__ == "__main__":
    sys.exit(main())
