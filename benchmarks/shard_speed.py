"""Does splitting one evaluation over two workers finish sooner than one worker?

Starts two local worker daemons (one CPU thread each, as two devices would be), warms both with
the build, then times `harness run` of the same sharded task against one worker and against two.
Prints the wall times, the speed-up and whether the merged metrics agree.

    python benchmarks/shard_speed.py [--limit 200] [--hidden 256]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def suite(tmp: Path, hidden: int, limit: int) -> Path:
    data = {
        "name": "shard-speed",
        "models": [{"name": "dense", "config": {"model_type": "llama", "hidden_size": hidden,
                                                "intermediate_size": 4 * hidden, "num_hidden_layers": 4,
                                                "num_attention_heads": 4, "num_key_value_heads": 4,
                                                "max_position_embeddings": 1024}}],
        "tasks": [{"path": str(REPO / "suites" / "tasks" / "smoke_mc.yaml"), "limit": limit, "shards": 2,
                   "num_fewshot": 10}],
    }
    path = tmp / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(suite_path: Path, out: Path, workers: list[str]) -> tuple[float, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "harness.cli", "run", str(suite_path), "--out", str(out),
                           "--workers", ",".join(workers), "--no-cache", "--no-report"],
                          capture_output=True, text=True, cwd=REPO)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"harness run failed:\n{proc.stderr[-3000:]}")
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    acc = next(r for r in recs if r["kind"] == "evaluate")["metrics"]["smoke_mc"]["acc"]
    return elapsed, acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=256)
    args = ap.parse_args()
    from harness.local import start_local_workers

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        os.environ.setdefault("MOE_HARNESS_HOME", str(tmp / "home"))
        path = suite(tmp, args.hidden, args.limit)
        with start_local_workers(2, extra_args=("--threads", "1")) as workers:
            eps = list(workers.endpoints)
            run(path, tmp / "warm", eps)  # both workers load the build
            one, acc1 = run(path, tmp / "one", eps[:1])
            two, acc2 = run(path, tmp / "two", eps)
    print(f"sharded smoke_mc ({args.limit} docs, 10-shot, llama d{args.hidden}x4), warm workers, 1 thread each")
    print(f"  one worker : {one:6.1f} s   acc {acc1:.4f}")
    print(f"  two workers: {two:6.1f} s   acc {acc2:.4f}")
    print(f"  speed-up   : {one / two:.2f}x   metrics identical: {acc1 == acc2}")


if __name__ == "__main__":
    main()
