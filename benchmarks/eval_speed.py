"""Evaluation speed: the same build and task through lm-eval's ``hf`` backend and the harness's LM.

    python benchmarks/eval_speed.py [--hidden 256 --layers 4 --fewshot 10 --limit 60 --threads 2]

Prints requests/s of both, their ratio and the largest per-request log-likelihood difference.
The default is the multiple-choice smoke task with long few-shot contexts shared by 4 choices,
where prefix sharing pays; ``--task smoke_ppl`` measures rolling log-likelihood instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _time_requests(lm) -> list[float]:
    """Wrap ``lm``'s request methods to add their ``[wall, CPU]`` seconds to the returned list."""
    spent = [0.0, 0.0]
    for name in ("loglikelihood", "loglikelihood_rolling", "generate_until"):
        method = getattr(lm, name)

        def timed(requests, *a, _method=method, **kw):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return _method(requests, *a, **kw)
            finally:
                spent[0] += time.perf_counter() - start
                spent[1] += time.process_time() - cpu

        setattr(lm, name, timed)
    return spent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="smoke_mc", choices=["smoke_mc", "smoke_ppl"])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--fewshot", type=int, default=10, help="shots (smoke_mc): longer shared contexts")
    ap.add_argument("--limit", type=int, default=60)
    ap.add_argument("--hf-batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (on a GPU, compare the wall columns)")
    ap.add_argument("--home", default=None, help="where the build is saved (default: a temporary folder)")
    args = ap.parse_args(argv)

    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from workers.builds.materialize import materialize
    from workers.evaluation.job import _samples, run, task_manager

    torch.set_num_threads(args.threads)
    home = args.home or tempfile.mkdtemp(prefix="eval-speed-")
    config = {"model_type": "llama", "hidden_size": args.hidden, "intermediate_size": 4 * args.hidden,
              "num_hidden_layers": args.layers, "num_attention_heads": max(1, args.hidden // 64),
              "max_position_embeddings": 2048}
    path = materialize({"config": config, "seed": 0}, home)
    fewshot = args.fewshot if args.task == "smoke_mc" else None
    tasks = REPO / "suites" / "tasks"
    tm = task_manager(str(tasks))
    seeds = {"random_seed": 0, "numpy_random_seed": 0, "torch_random_seed": 0, "fewshot_random_seed": 0}

    hf = HFLM(pretrained=str(path), dtype="float32", device=args.device, batch_size=args.hf_batch_size)
    hf_lm_s = _time_requests(hf)
    start = time.perf_counter()
    ref = lm_eval.simple_evaluate(model=hf, tasks=[args.task], task_manager=tm, limit=args.limit,
                                  num_fewshot=fewshot, log_samples=True, bootstrap_iters=100, **seeds)
    hf_s = time.perf_counter() - start

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(args.device).eval()
    loaded = SimpleNamespace(model=model, tokenizer=AutoTokenizer.from_pretrained(path), path=path,
                             variant=None, routing_session=None)
    job = {"kind": "evaluate", "seed": 0, "eval": {},
           "task": {"name": args.task, "path": str(tasks / f"{args.task}.yaml"), "limit": args.limit,
                    "num_fewshot": fewshot}}
    start = time.perf_counter()
    ours = run(job, loaded, lambda *a: None, threading.Event())
    ours_s = time.perf_counter() - start

    ref_samples = _samples(ref["samples"][args.task])
    diff = max(abs(a - b) for x, y in zip(ours["samples"][args.task], ref_samples)
               for a, b in zip(x["loglikelihoods"], y["loglikelihoods"]))
    n, lm_s, lm_cpu = ours["n_requests"], ours["eval"]["lm_s"], ours["eval"]["lm_cpu_s"]
    print(f"build: llama hidden={args.hidden} layers={args.layers}; task {args.task} "
          f"limit={args.limit} fewshot={fewshot}; {n} requests; torch threads={args.threads}")
    print("requests/s          LM, per CPU s   LM, per wall s   end to end (wall, incl. lm-eval's overhead)")
    print(f"lm-eval hf (batch {args.hf_batch_size}) {n / hf_lm_s[1]:13.1f} {n / hf_lm_s[0]:16.1f} {n / hf_s:16.1f}")
    print(f"harness LM          {n / lm_cpu:13.1f} {n / lm_s:16.1f} {n / ours_s:16.1f}")
    print(f"harness LM: budget {ours['eval']['max_batch_tokens']} tokens, {ours['eval']['batches']} batches, "
          f"{ours['eval']['tokens']} forward tokens")
    print(f"speed-up: {hf_lm_s[1] / lm_cpu:.2f}x per CPU second in the LM ({hf_lm_s[0] / lm_s:.2f}x wall), "
          f"{hf_s / ours_s:.2f}x end to end; largest |loglikelihood difference|: {diff:.2e}")
    print("metrics hf:      ", {k: v for k, v in ref["results"][args.task].items() if "," in k})
    print("metrics harness: ", ours["metrics"][args.task])
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
