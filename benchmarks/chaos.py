"""Chaos run: worker daemons are SIGKILLed at random (and restarted) during a 50-job suite.

    python benchmarks/chaos.py --workers 3 --jobs 50 --kill-every 2 --seed 0

In the spirit of the ZeroMQ guide's Paranoid Pirate tests: real daemons, real ``describe`` jobs on
tiny config builds (five builds, so workers load, lose and reload models), a coordinator with short
heartbeats. Prints jobs completed, failed, lost (never reported) and duplicated (reported twice);
exits 1 if any job was lost or duplicated.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.coordinator import Coordinator, Job  # noqa: E402
from harness.local import start_local_workers  # noqa: E402

TINY = {"model_type": "olmoe", "hidden_size": 32, "intermediate_size": 32, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 4, "num_experts": 4, "num_experts_per_tok": 2,
        "vocab_size": 260}


def make_jobs(n: int, builds: int = 5) -> list[Job]:
    jobs = []
    for i in range(n):
        build = {"config": dict(TINY), "seed": i % builds}
        variant = {"name": f"chaos-{i}", "model": f"chaos-{i % builds}", "build": build, "routing": None,
                   "dtype": "float32", "trust_remote_code": False, "experts_implementation": None}
        jobs.append(Job(key=f"job-{i:03d}", spec={"kind": "describe", "variant": variant},
                        affinity=f"build-{i % builds}"))
    return jobs


def chaos(workers, every_s: float, rng: random.Random, done: threading.Event, kills: list) -> None:
    """Until ``done``: wait about ``every_s``, SIGKILL a random worker, restart it on its endpoint."""
    while not done.wait(every_s * rng.uniform(0.5, 1.5)):
        i = rng.randrange(len(workers.endpoints))
        workers.kill(i, signal.SIGKILL)
        kills.append((round(time.monotonic(), 2), i))
        if not done.wait(0.3):
            workers.restart(i)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--kill-every", type=float, default=2.0, help="mean seconds between kills")
    ap.add_argument("--timeout", type=float, default=2.0, help="coordinator: seconds of silence = lost")
    ap.add_argument("--max-crashes", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.environ.setdefault("MOE_HARNESS_HOME", tempfile.mkdtemp(prefix="moe-chaos-home-"))
    rng = random.Random(args.seed)
    jobs = make_jobs(args.jobs)
    reported: Counter = Counter()
    statuses: Counter = Counter()
    errors: Counter = Counter()

    def on_result(job, outcome):
        reported[job.key] += 1
        statuses[outcome["status"]] += 1
        statuses["retried"] += outcome["attempts"] > 1
        if outcome["status"] != "ok":
            errors[outcome["error"].split(" (")[0][:80]] += 1

    kills: list = []
    done = threading.Event()
    t0 = time.monotonic()
    with start_local_workers(args.workers, extra_args=("--heartbeat-s", "0.25")) as workers:
        print(f"{args.workers} workers up in {time.monotonic() - t0:.1f}s; {args.jobs} jobs; "
              f"a kill every ~{args.kill_every:g}s", flush=True)
        monkey = threading.Thread(target=chaos, args=(workers, args.kill_every, rng, done, kills), daemon=True)
        t1 = time.monotonic()
        with Coordinator(workers.endpoints, heartbeat_s=0.25, timeout_s=args.timeout,
                         max_crashes=args.max_crashes) as coord:
            monkey.start()
            summary = coord.run(jobs, on_result)
        done.set()
        monkey.join(timeout=120)
    lost = [j.key for j in jobs if reported[j.key] == 0]
    duplicated = sum(c - 1 for c in reported.values() if c > 1)
    print(f"run time          {time.monotonic() - t1:.1f}s")
    print(f"kills             {len(kills)}")
    print(f"workers lost      {len(summary.lost)} (declared by heartbeat timeout)")
    print(f"jobs completed    {statuses['ok']}")
    print(f"jobs retried      {statuses['retried']} (their worker died under them)")
    print(f"jobs failed       {statuses['failed']}" + "".join(f"\n  {n} x {e}" for e, n in errors.items()))
    print(f"jobs lost         {len(lost)}")
    print(f"jobs duplicated   {duplicated}")
    print(f"late replies      {summary.late_replies} (dropped)")
    return 1 if lost or duplicated else 0


if __name__ == "__main__":
    sys.exit(main())
