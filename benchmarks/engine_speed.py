"""Engine speed: one build evaluated on the vLLM engine, the transformers engine and lm-eval's ``hf``
backend at the same results, and decode tokens/s per engine.

    python benchmarks/engine_speed.py [--task smoke_mc --limit 40 --fewshot 5] [--skip-100m]

Needs an environment with vLLM (README, "The vLLM engine"). Prints, for a tiny qwen3_moe build
(head size 32, float32): evaluation requests/s of the three (wall seconds in the LM, and end to
end through ``simple_evaluate``) with each one's largest per-request loglikelihood difference from
``hf`` and whether the metrics are equal; then decode tokens/s at batch 1 and 16 (the throughput
probe's decode rows: tokens per second of one decode step of the batch, median) on both engines,
for the tiny build and for a ~100M-parameter qwen3_moe build. Timings are wall-clock on a machine
others may be using: say how loaded it was when quoting them.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TINY = {"model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 128, "moe_intermediate_size": 32,
        "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
        "num_experts": 4, "num_experts_per_tok": 2, "max_position_embeddings": 512}
# ~107M parameters (8 layers x 16 experts of 3 x 512 x 512), ~19M active
M100 = {"model_type": "qwen3_moe", "hidden_size": 512, "intermediate_size": 1024, "moe_intermediate_size": 512,
        "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 64,
        "num_experts": 16, "num_experts_per_tok": 2, "max_position_embeddings": 512}


def variant(config, engine):
    return {"name": f"{config['hidden_size']}@{engine}", "build": {"config": config, "seed": 0},
            "routing": None, "dtype": "float32", "engine": {"name": engine, "params": {}}}


def _lm_seconds(lm) -> list[float]:
    """Wrap ``lm``'s request methods to add their wall seconds to the returned list."""
    spent = [0.0]
    for name in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
        method = getattr(lm, name)

        def timed(requests, *a, _method=method, **kw):
            start = time.perf_counter()
            try:
                return _method(requests, *a, **kw)
            finally:
                spent[0] += time.perf_counter() - start

        setattr(lm, name, timed)
    return spent


def evaluation(host, args) -> None:
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    from workers.builds.materialize import materialize
    from workers.evaluation.job import _samples, task_manager
    from workers.jobs import run_job

    tasks = REPO / "suites" / "tasks"
    fewshot = args.fewshot if args.task == "smoke_mc" else None
    path = materialize({"config": TINY, "seed": 0})
    hf = HFLM(pretrained=str(path), dtype="float32", device="cpu", batch_size=8)
    hf_lm = _lm_seconds(hf)
    start = time.perf_counter()
    ref = lm_eval.simple_evaluate(model=hf, tasks=[args.task], task_manager=task_manager(str(tasks)), limit=args.limit,
                                  num_fewshot=fewshot, log_samples=True, bootstrap_iters=100, random_seed=0,
                                  numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    hf_s = time.perf_counter() - start
    ref_samples = _samples(ref["samples"][args.task])
    ref_metrics = {k: v for k, v in ref["results"][args.task].items() if "," in k and "stderr" not in k}
    job = {"kind": "evaluate", "seed": 0, "eval": {},
           "task": {"name": args.task, "path": str(tasks / f"{args.task}.yaml"), "limit": args.limit,
                    "num_fewshot": fewshot}}
    rows = []
    for engine in ("transformers", "vllm"):
        host.load(variant(TINY, engine))  # started (and warmed by one request) before timing
        start = time.perf_counter()
        result = run_job({**job, "variant": variant(TINY, engine)}, host, lambda *a: None, threading.Event())
        wall = time.perf_counter() - start
        diff = max(abs(a - b) for x, y in zip(result["samples"][args.task], ref_samples)
                   for a, b in zip(x.get("loglikelihoods") or [], y.get("loglikelihoods") or []))
        same = all(abs(result["metrics"][args.task][k.replace(",none", "")] - v) < 1e-9
                   for k, v in ref_metrics.items() if k.replace(",none", "") in result["metrics"][args.task])
        rows.append((f"{engine} engine", result["n_requests"], result["eval"]["lm_s"], wall, diff, same))
    rows.insert(0, ("lm-eval hf (batch 8)", rows[0][1], hf_lm[0], hf_s, 0.0, True))  # the same requests
    print(f"evaluation: tiny qwen3_moe (float32), task {args.task} limit={args.limit} fewshot={fewshot}")
    print(f"{'':22} {'requests':>8} {'req/s in LM':>12} {'req/s end to end':>17} {'max |dLL| vs hf':>16} metrics = hf")
    for name, n, lm_s, wall, diff, same in rows:
        print(f"{name:22} {n:8d} {n / lm_s:12.1f} {n / wall:17.1f} {diff:16.2e} {same}")


def decode(host, config, label) -> None:
    from workers.jobs import run_job

    probe = {"name": "throughput", "params": {"batch_sizes": [1, 16], "prompt_length": 32, "context_length": 64,
                                              "new_tokens": 8, "warmup": 1, "repeats": 3}}
    print(f"decode tokens/s, {label}: batch 1 / batch 16 (context 64, 8 new tokens, median of 3)")
    for engine in ("transformers", "vllm"):
        v = variant(config, engine)
        result = run_job({"kind": "probe", "variant": v, "probe": probe}, host, lambda *a: None, threading.Event())
        rows = {r["batch_size"]: r for r in result["probe"]["rows"] if r["phase"] == "decode"}
        total = result["params"]["total"]
        print(f"  {engine:12} {rows[1]['tokens_per_s']:9.1f} / {rows[16]['tokens_per_s']:9.1f} tok/s "
              f"({total / 1e6:.1f}M parameters)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="smoke_mc", choices=["smoke_mc", "smoke_ppl"])
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--fewshot", type=int, default=5)
    ap.add_argument("--skip-100m", action="store_true", help="decode speed of the tiny build only")
    args = ap.parse_args(argv)
    os.environ.setdefault("MOE_HARNESS_HOME", tempfile.mkdtemp(prefix="engine-speed-"))
    from workers.host import Host

    host = Host("cpu")
    print(f"load average at start (1, 5, 15 min): {os.getloadavg()}")
    evaluation(host, args)
    decode(host, TINY, "tiny qwen3_moe")
    if not args.skip_100m:
        decode(host, M100, "~100M-parameter qwen3_moe")
    import torch

    print(f"torch threads now: {torch.get_num_threads()} (vLLM's CPU worker fixes the process's threads when it "
          f"starts); load average (1, 5, 15 min): {os.getloadavg()}; cpus: {os.cpu_count()}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
