"""Writes tests/data/run_fixture/: a realistic synthetic run folder for the report tests (no models).

One MoE build (olmoe, 8 experts) under two routings (top-2, top-p dynamic), two dense twins (equal
active, equal total), two tasks with per-document samples (one tagged by popularity bucket),
describe results, routing telemetry, latency/throughput probe rows, two short training curves and
one failed job. Deterministic: rerun it and the files come out identical.

    python tests/data/make_run_fixture.py
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "run_fixture"
VERSIONS = {"torch": "2.13.0", "transformers": "5.23.0", "lm_eval": "0.4.13", "moe_harness": "0.1.0",
            "git_sha": "0123456789abcdef0123456789abcdef01234567"}
EMBED = 2 * 259 * 64  # untied byte-level embeddings and lm_head

OLMOE = {"model_type": "olmoe", "hidden_size": 64, "num_hidden_layers": 2, "num_experts": 8,
         "num_experts_per_tok": 2, "intermediate_size": 128, "vocab_size": 259}
LLAMA_S = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 512, "vocab_size": 259}
LLAMA_L = {"model_type": "llama", "hidden_size": 96, "num_hidden_layers": 2, "intermediate_size": 1760, "vocab_size": 259}

VARIANTS = [
    # name, model, config, routing, is_moe, total, active, experts/token, measured, quality, ms per decode token
    ("moe-a@topk(k=2)", "moe-a", OLMOE, {"name": "topk", "params": {"k": 2}}, True, 1_204_224, 421_888, 2.0, False, 0.64, 3.1),
    ("moe-a@topp(p=0.6)", "moe-a", OLMOE, {"name": "topp", "params": {"p": 0.6}}, True, 1_204_224, 372_736, 1.62, True, 0.61, 2.9),
    ("dense-s", "dense-s", LLAMA_S, None, False, 419_840, 419_840, None, False, 0.52, 1.8),
    ("dense-l", "dense-l", LLAMA_L, None, False, 1_212_416, 1_212_416, None, False, 0.67, 4.6),
]
TASKS = {"arith": 240, "facts": 180}
BUCKETS = ("head", "torso", "tail")


def key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def env(i: int) -> dict:
    return {"device": "cpu", "hostname": "fixture-host", "versions": VERSIONS, "pid": 4000 + i}


def main() -> None:
    rng = np.random.default_rng(7)
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "jobs").mkdir(parents=True)
    variants, jobs, records = [], [], []
    # document difficulty shared by all variants, so paired differences are realistic
    difficulty = {t: rng.normal(0.0, 1.2, n) for t, n in TASKS.items()}
    bucket_of = {t: [BUCKETS[i % 3] for i in range(n)] for t, n in TASKS.items()}

    for i, (name, model, config, routing, is_moe, total, active, ept, measured, quality, ms) in enumerate(VARIANTS):
        spec = {"name": name, "model": model, "build": {"config": config, "seed": 0}, "routing": routing,
                "dtype": "float32", "trust_remote_code": False, "experts_implementation": None}
        variants.append({**spec, "is_moe": is_moe})
        params = {"total": total, "active": active, "total_no_embed": total - EMBED, "active_no_embed": active - EMBED,
                  "num_experts": 8 if is_moe else None, "experts_per_token": ept, "active_measured": measured}
        build = {"family": config["model_type"], "moe": is_moe, "checkpoint": f"/cache/builds/{model}", "num_layers": 2}
        base = {"variant": name, "model": model, "status": "ok", "error": None, "attempts": 1,
                "params": params, "build": build, "routing": None, "env": env(i)}

        def add(kind, extra, spec_extra, result, timings=(0.4, 1.0)):
            job_spec = {"kind": kind, "variant": spec, **spec_extra}
            k = key(job_spec)
            jobs.append({"key": k, "kind": kind, "variant": name, **extra})
            records.append({"key": k, "kind": kind, **base, **extra, "spec": job_spec,
                            "timings": {"load_s": timings[0], "run_s": timings[1], "model_cached": kind != "describe"},
                            **result})

        add("describe", {}, {}, {})
        routing_tel = None
        if is_moe:
            layers = []
            for layer in range(2):
                load = rng.dirichlet(np.full(8, 4.0 if layer == 0 else 1.5)) * 4000 * ept
                counts = [int(c) for c in load]
                mean = float(np.mean(counts))
                p = np.array(counts) / sum(counts)
                layers.append({"layer": layer, "tokens_per_expert": counts, "experts_per_token_mean": ept,
                               "experts_per_token_hist": {"1": 0.38, "2": 0.62} if measured else {"2": 1.0},
                               "dropped": 0, "max_over_mean": max(counts) / mean,
                               "cv": float(np.std(counts) / mean), "entropy": float(-(p * np.log(p)).sum())})
            routing_tel = {"layers": layers, "summary": {"tokens": 4000, "experts_per_token_mean": ept,
                                                         "max_over_mean": max(l["max_over_mean"] for l in layers)}}
        for task, n in TASKS.items():
            logits = 3.0 * (quality - 0.5) - difficulty[task] + rng.normal(0, 0.35, n)
            correct = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(float)
            samples = [{"doc_id": d, "acc": float(correct[d]), "target": str(d % 10)} for d in range(n)]
            acc = float(correct.mean())
            metrics = {"acc": acc, "acc_stderr": float(correct.std(ddof=1) / np.sqrt(n))}
            if task == "facts":
                for s, b in zip(samples, bucket_of[task]):
                    s["bucket"] = b
                for b in BUCKETS:
                    sel = correct[[j for j in range(n) if bucket_of[task][j] == b]]
                    metrics[f"acc_{b}"] = float(sel.mean())
            add("evaluate", {"task": task},
                {"task": {"name": task, "path": f"/suites/tasks/{task}.yaml", "limit": None, "num_fewshot": 0},
                 "seed": 1234, "eval": {"batch_size": 8}},
                {"metrics": {task: metrics}, "samples": {task: samples}, "routing": routing_tel}, (0.1, 6.0))
        rows = []
        for bs in (1, 4, 16):
            for phase, scale in (("prefill", 0.35), ("decode", 1.0)):
                roof = ms * 0.4 * (1 + (0.5 * bs if is_moe else 0.08 * bs))
                p50 = roof * (2.2 + rng.random() * 0.3)
                toks = bs * (64 if phase == "prefill" else 1)
                rows.append({"batch_size": bs, "context": 64, "phase": phase, "ms_p50": round(p50 * scale, 3),
                             "ms_p90": round(p50 * scale * 1.1, 3), "ms_p95": round(p50 * scale * 1.15, 3),
                             "ms_p99": round(p50 * scale * 1.3, 3), "ms_mean": round(p50 * scale * 1.04, 3),
                             "ms_std": round(p50 * scale * 0.05, 3), "tokens_per_s": round(toks / (p50 * scale) * 1000, 1),
                             "roofline_ms": round(roof * scale, 3), "measured_over_roofline": round(p50 / roof, 2),
                             "experts_touched": (min(8, 2 + bs) if is_moe else None)})
        add("probe", {"probe": "latency"}, {"probe": {"name": "latency", "params": {"batch_sizes": [1, 4, 16]}}},
            {"probe": {"name": "latency", "rows": rows, "device": "cpu", "experts_implementation": "eager"}})
        if name in ("moe-a@topk(k=2)", "dense-s"):
            curve = [{"step": s, "tokens": s * 2048, "loss": round(5.6 * (1 + s) ** (-0.18 if is_moe else -0.15), 4)}
                     for s in range(0, 201, 20)]
            add("train", {}, {"train": {"steps": 200, "seed": 0}},
                {"train": {"curve": curve, "tokens_per_s": 21000.0 if is_moe else 26000.0, "mfu": 0.031}}, (0.5, 40.0))

    # one failed job: a memory probe that ran out of memory
    failed_spec = {"kind": "probe", "variant": variants[3], "probe": {"name": "memory", "params": {}}}
    fk = key(failed_spec)
    jobs.append({"key": fk, "kind": "probe", "variant": "dense-l", "probe": "memory"})
    records.append({"key": fk, "kind": "probe", "variant": "dense-l", "model": "dense-l", "probe": "memory",
                    "status": "failed", "error": "-32001 out of memory: tried to allocate 2.0 GiB", "attempts": 3,
                    "spec": failed_spec})

    plan = {"suite": "fixture-smoke", "pairing": {"tolerance": 0.15}, "variants": variants, "jobs": jobs,
            "pairs": [{"kind": "active", "moe": "moe-a@topk(k=2)", "dense": "dense-s", "ratio": 419_840 / 421_888},
                      {"kind": "active", "moe": "moe-a@topp(p=0.6)", "dense": "dense-s", "ratio": 419_840 / 372_736},
                      {"kind": "total", "moe": "moe-a@topk(k=2)", "dense": "dense-l", "ratio": 1_212_416 / 1_204_224},
                      {"kind": "total", "moe": "moe-a@topp(p=0.6)", "dense": "dense-l", "ratio": 1_212_416 / 1_204_224}]}
    (OUT / "plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    (OUT / "suite.yaml").write_text(
        "name: fixture-smoke\nmodels:\n  - name: moe-a\n    config: {model_type: olmoe, hidden_size: 64}\n"
        "    routing: [{name: topk, params: {k: 2}}, {name: topp, params: {p: 0.6}}]\n"
        "  - name: dense-s\n    config: {model_type: llama, hidden_size: 64}\n"
        "  - name: dense-l\n    config: {model_type: llama, hidden_size: 96}\n"
        "tasks: [arith, facts]\nprobes: [latency, memory]\npairing: {tolerance: 0.15}\n")
    with open(OUT / "results.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
            (OUT / "jobs" / f"{r['key']}.json").write_text(json.dumps(r, sort_keys=True) + "\n")
    print(f"wrote {len(records)} results to {OUT}")


if __name__ == "__main__":
    main()
