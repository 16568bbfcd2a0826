"""Writes the synthetic run folders of the report tests (no models), shaped like real worker output.

tests/data/run_fixture/: one MoE build (olmoe, 8 experts) under two routings (top-2, top-p dynamic),
two dense twins (equal active, equal total), three tasks with per-document samples (one tagged by
popularity bucket, one perplexity task with [loglikelihood, weight] per document, one evaluation
merged from two shards), describe results, routing telemetry, latency / throughput / memory /
routing probes, two short training curves and one failed job.

tests/data/longtail_fixture/: a knowledge-corpus run trained with two seeds: an MoE and its two
derived dense twins (``<model>#s<seed>``), train results with their corpus regime, and the
per-bucket tasks ``longtail_head/_torso/_tail`` in the group ``longtail``.

Deterministic: rerun it and the files come out identical.

    python tests/data/make_run_fixture.py
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "run_fixture"
OUT_LONGTAIL = Path(__file__).resolve().parent / "longtail_fixture"
DEVICE = {"name": "cpu", "type": "cpu", "dtype": "float32", "bandwidth_gbs": 8.0, "tflops": 0.28, "source": "measured"}
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
PROSE_DOCS = 40
BUCKETS = ("head", "torso", "tail")


def key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def env(i: int) -> dict:
    return {"device": "cpu", "device_name": "Fixture CPU", "hostname": "fixture-host", "versions": VERSIONS,
            "pid": 4000 + i}


def telemetry(rng, ept: float, measured: bool, tokens: int = 4000, concentration=(4.0, 1.5)) -> dict:
    """Router telemetry as the workers record it (entropy already normalised by log E)."""
    layers = []
    for layer, conc in enumerate(concentration):
        load = rng.dirichlet(np.full(8, conc)) * tokens * ept
        counts = [int(c) for c in load]
        mean = float(np.mean(counts))
        p = np.array(counts) / sum(counts)
        layers.append({"layer": layer, "tokens": tokens, "tokens_per_expert": counts, "experts_per_token_mean": ept,
                       "experts_per_token_hist": {"1": 0.38, "2": 0.62} if measured else {"2": 1.0},
                       "dropped": 0, "drop_rate": 0.0, "max_over_mean": max(counts) / mean,
                       "cv": float(np.std(counts) / mean), "entropy": float(-(p * np.log(p)).sum() / np.log(8))})
    return {"layers": layers, "summary": {"tokens": tokens, "experts_per_token_mean": ept,
                                          "max_over_mean": max(l["max_over_mean"] for l in layers)}}


def timed_rows(rng, ms: float, is_moe: bool, ept, batch_sizes=(1, 4, 16)) -> list[dict]:
    """Latency-probe rows: prefill at batch 1 (prompt 32), decode per batch size at context 64."""
    rows = []
    for phase, bs in [("prefill", 1)] + [("decode", b) for b in batch_sizes]:
        decode = phase == "decode"
        # MoE decode reads more experts as the batch grows: at batch 1 it costs like its equal-active twin
        # (dense-s), from batch 4 more like its equal-total twin (dense-l)
        roof = (0.72 * (1 + 0.6 * (bs - 1)) if is_moe else ms * 0.4 * (1 + 0.08 * bs)) * (1.0 if decode else 0.35)
        p50 = roof * (2.2 + rng.random() * 0.3)
        toks = bs * (1 if decode else 32)
        touched = (min(8.0, ept * bs) if decode else 7.5) if is_moe else None
        rows.append({"phase": phase, "batch_size": bs, "context": 64 if decode else 0,
                     "prompt_length": None if decode else 32, "new_tokens": 4 if decode else None,
                     "ms_p50": round(p50, 3), "ms_p90": round(p50 * 1.1, 3), "ms_p95": round(p50 * 1.15, 3),
                     "ms_p99": round(p50 * 1.3, 3), "ms_mean": round(p50 * 1.04, 3), "ms_std": round(p50 * 0.05, 3),
                     "n": 8, "tokens_per_s": round(toks / p50 * 1000, 1), "roofline_ms": round(roof, 4),
                     "roofline_bound": "memory", "measured_over_roofline": round(p50 / roof, 2),
                     "experts_touched": touched, "experts_touched_uniform": touched and min(8.0, touched * 1.1),
                     "experts_per_token": ept})
    return rows


def prose_result(rng, words, quality: float) -> dict:
    """A perplexity task as lm-eval returns it: per document [loglikelihood, weight] pairs, corpus-level metrics."""
    samples, ll_sum, w_sum, b_sum = [], 0.0, 0, 0
    for d, w in enumerate(words):
        nbytes = int(w * 5.5)
        ll = float(-w * (3.2 - 1.5 * quality + rng.normal(0, 0.25)))
        samples.append({"doc_id": d, "word_perplexity": [ll, int(w)], "byte_perplexity": [ll, nbytes],
                        "bits_per_byte": [ll, nbytes], "loglikelihoods": [ll]})
        ll_sum, w_sum, b_sum = ll_sum + ll, w_sum + int(w), b_sum + nbytes
    metrics = {"word_perplexity": float(np.exp(-ll_sum / w_sum)), "word_perplexity_stderr": None,
               "byte_perplexity": float(np.exp(-ll_sum / b_sum)), "byte_perplexity_stderr": None,
               "bits_per_byte": float(-ll_sum / b_sum / np.log(2)), "bits_per_byte_stderr": None}
    agg = {"word_perplexity": "weighted_perplexity", "byte_perplexity": "weighted_perplexity",
           "bits_per_byte": "bits_per_byte"}
    return {"metrics": {"prose": metrics}, "samples": {"prose": samples}, "aggregations": {"prose": agg},
            "higher_is_better": {"prose": {k: False for k in agg}}}


def memory_rows(weights: int) -> list[dict]:
    return [{"phase": "prefill", "batch_size": bs, "context": 64, "prompt_length": 64, "weights_bytes": weights,
             "weights_method": "computed: parameter and buffer bytes", "kv_cache_bytes": 65536 * bs,
             "kv_cache_method": "measured: StaticCache tensor bytes", "kv_cache_bytes_analytic": 65536 * bs,
             "activations_peak_bytes": 24576 * bs,
             "activations_method": "measured: peak RSS (VmHWM) rise minus KV cache; approximate",
             "peak_bytes": weights + 90112 * bs} for bs in (1, 4)]


def routing_probe_rows(ept: float) -> list[dict]:
    rows = []
    for bs in (1, 4, 16, 64):
        for phase, tokens in (("prefill", 16 * bs), ("decode", bs)):
            touched = min(8.0, ept * tokens * 0.8 + (ept if tokens == 1 else 0) * 0.2)
            uniform = 8 * (1 - (1 - 2 / 8) ** tokens)
            rows.append({"phase": phase, "batch_size": bs, "context": 16 if phase == "decode" else 0,
                         "prompt_length": 16 if phase == "prefill" else None, "tokens": tokens, "num_experts": 8,
                         "top_k": 2, "experts_touched": round(touched, 4), "experts_touched_per_layer": [touched, touched],
                         "experts_touched_fraction": round(touched / 8, 4), "experts_touched_uniform": round(uniform, 4),
                         "experts_per_token": ept, "passes": 1 if phase == "prefill" else 8})
    return rows


def main() -> None:
    rng = np.random.default_rng(7)
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "jobs").mkdir(parents=True)
    variants, jobs, records = [], [], []
    # document difficulty shared by all variants, so paired differences are realistic
    difficulty = {t: rng.normal(0.0, 1.2, n) for t, n in TASKS.items()}
    bucket_of = {t: [BUCKETS[i % 3] for i in range(n)] for t, n in TASKS.items()}
    prng = np.random.default_rng(11)  # probes and the perplexity task
    prose_words = prng.integers(20, 60, PROSE_DOCS)

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
        routing_tel = telemetry(rng, ept, measured) if is_moe else None
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
            result = {"metrics": {task: metrics}, "samples": {task: samples}, "routing": routing_tel}
            if task == "arith" and is_moe:  # evaluated in two shards, merged by the harness
                result.update(merged_from=2, routing=None, routing_shards=[
                    {"layers": [{**l, "tokens": l["tokens"] // 2, "tokens_per_expert": [c // 2 for c in l["tokens_per_expert"]]}
                                for l in routing_tel["layers"]]}] * 2)
            add("evaluate", {"task": task},
                {"task": {"name": task, "path": f"/suites/tasks/{task}.yaml", "limit": None, "num_fewshot": 0},
                 "seed": 1234, "eval": {"batch_size": 8}}, result, (0.1, 6.0))
        rng.random(6)  # the draws the first fixture's probe rows took: keeps the later variants' numbers
        add("evaluate", {"task": "prose"}, {"task": {"name": "prose", "path": "/suites/tasks/prose.yaml", "limit": None,
                                                     "num_fewshot": 0}, "seed": 1234, "eval": {"batch_size": 8}},
            prose_result(prng, prose_words, quality), (0.1, 3.0))
        probe_common = {"device": DEVICE, "experts_implementation": "grouped_mm" if is_moe else None,
                        "compile": "none", "compile_note": None, "torch_threads": 2}
        for pname, rows in (("latency", timed_rows(prng, ms, is_moe, ept)),
                            ("throughput", timed_rows(prng, ms, is_moe, ept))):
            params = {"batch_sizes": [1, 4, 16], "warmup": 1, "repeats": 2}
            add("probe", {"probe": pname}, {"probe": {"name": pname, "params": params}, "seed": 1234},
                {"probe": {"name": pname, "params": params, "rows": rows, **probe_common}})
        if name != "dense-l":  # dense-l's memory probe fails below
            add("probe", {"probe": "memory"}, {"probe": {"name": "memory", "params": {}}, "seed": 1234},
                {"probe": {"name": "memory", "params": {}, "rows": memory_rows(total * 4), **probe_common}})
        if is_moe:
            add("probe", {"probe": "routing"}, {"probe": {"name": "routing", "params": {}}, "seed": 1234},
                {"probe": {"name": "routing", "params": {}, "rows": routing_probe_rows(ept), **probe_common}})
        if name in ("moe-a@topk(k=2)", "dense-s"):
            curve = [{"step": s, "tokens": s * 2048, "loss": round(5.6 * (1 + s) ** (-0.18 if is_moe else -0.15), 4)}
                     for s in range(0, 201, 20)]
            add("train", {}, {"train": {"steps": 200, "seed": 0}},
                {"train": {"curve": curve, "tokens_per_s": 21000.0 if is_moe else 26000.0, "mfu": 0.031,
                           "mfu_note": None, "train_s": 20.0, "model_flops_per_s": 2.1e9}}, (0.5, 40.0))

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
        "tasks: [arith, facts, prose]\nprobes: [latency, throughput, memory, routing]\npairing: {tolerance: 0.15}\n")
    with open(OUT / "results.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
            (OUT / "jobs" / f"{r['key']}.json").write_text(json.dumps(r, sort_keys=True) + "\n")
    print(f"wrote {len(records)} results to {OUT}")


# ---- the seeded long-tail run ---------------------------------------------------------------
LT_MODELS = [  # name, family, is_moe, total, active, accuracy per bucket (head, torso, tail), tokens/s
    ("moe", "olmoe", True, 264_128, 116_672, (0.75, 0.55, 0.45), 4500.0),
    ("dense-active", "olmo", False, 116_800, 116_800, (0.72, 0.45, 0.30), 9000.0),
    ("dense-total", "olmo", False, 264_000, 264_000, (0.78, 0.57, 0.46), 3800.0),
]
LT_SEEDS = (1, 2)
LT_DOCS = 60  # per bucket
LT_CORPUS = {"kind": "knowledge", "tokens": 100_634, "entities": 200,
             "value_counts": {"birth_year": 100, "city": 36, "employer": 24, "university": 12, "field": 16},
             "buckets": {"head": {"entities": 20, "ranks": [0, 20], "exposures_mean": 13.2, "exposures_median": 7.0,
                                  "exposures_min": 0, "exposures_max": 72},
                         "torso": {"entities": 60, "ranks": [20, 80], "exposures_mean": 2.2, "exposures_median": 2.0,
                                   "exposures_min": 0, "exposures_max": 9},
                         "tail": {"entities": 120, "ranks": [80, 200], "exposures_mean": 0.64,
                                  "exposures_median": 0.0, "exposures_min": 0, "exposures_max": 4}}}


def main_longtail() -> None:
    from moe_schema.capacity import regime

    rng = np.random.default_rng(3)
    out = OUT_LONGTAIL
    shutil.rmtree(out, ignore_errors=True)
    (out / "jobs").mkdir(parents=True)
    corpus_dir = "/cache/corpora/c701799ece9449fb"  # not on this machine: the report falls back to bucket accuracy
    corpus = {**LT_CORPUS, "path": corpus_dir,
              "tasks": {t: f"{corpus_dir}/tasks/{t}.yaml" for t in
                        ("longtail_head", "longtail_torso", "longtail_tail", "longtail")}}
    difficulty = {b: rng.normal(0.0, 1.0, LT_DOCS) for b in BUCKETS}
    variants, jobs, records = [], [], []
    tokens = 120_832
    for i, (model, family, is_moe, total, active, quality, tps) in enumerate(LT_MODELS):
        for seed in LT_SEEDS:
            name = f"{model}#s{seed}"
            spec = {"name": name, "model": model, "build": {"checkpoint": f"/cache/trained/{model}-{seed}"},
                    "routing": {"name": "native", "params": {}} if is_moe else None, "dtype": "float32",
                    "trust_remote_code": False, "experts_implementation": None, "train_seed": seed}
            variants.append(spec)
            params = {"total": total, "active": active, "total_no_embed": total - 33_152,
                      "active_no_embed": active - 33_152, "num_experts": 8 if is_moe else None,
                      "experts_per_token": 2.0 if is_moe else None, "active_measured": False}
            build = {"family": family, "moe": is_moe, "checkpoint": spec["build"]["checkpoint"], "num_layers": 2}
            base = {"variant": name, "model": model, "status": "ok", "error": None, "attempts": 1, "params": params,
                    "build": build, "routing": None, "env": env(10 + i)}

            def add(kind, extra, spec_extra, result, timings):
                job_spec = {"kind": kind, "variant": spec, **spec_extra}
                k = key(job_spec)
                jobs.append({"key": k, "kind": kind, "variant": name, **extra})
                records.append({"key": k, "kind": kind, **base, **extra, "spec": job_spec,
                                "timings": {"load_s": timings[0], "run_s": timings[1], "model_cached": kind == "evaluate"},
                                **result})

            start = 5.0 + 0.02 * seed
            curve = [{"step": s, "tokens": s * 2048, "loss": round(start * (s / 10) ** (-0.3 if is_moe else -0.27), 4),
                      "lr": 0.003} for s in range(10, 61, 10)]
            train = {"curve": curve, "steps": 59, "tokens": tokens, "initial_loss": curve[0]["loss"],
                     "final_loss": curve[-1]["loss"], "tokens_per_s": tps + 50 * seed, "train_s": tokens / tps,
                     "flops_per_token": 6 * active, "model_flops_per_s": 6 * active * tps, "peak_flops": None,
                     "mfu": None, "mfu_note": "no known peak FLOP/s for device type 'cpu'; MFU needs a GPU from the table",
                     "seed": seed}
            add("train", {}, {"train": {"tokens": 120_000}, "seed": seed},
                {"train": train, "corpus": {**corpus, "regime": regime(corpus, tokens, params)}}, (0.0, tokens / tps))
            add("describe", {}, {}, {}, (0.1, 0.0))
            metrics, samples = {}, {}
            for b, q in zip(BUCKETS, quality):
                logits = np.log(q / (1 - q)) - difficulty[b] + rng.normal(0, 0.15)
                correct = (rng.random(LT_DOCS) < 1 / (1 + np.exp(-logits))).astype(float)
                task = f"longtail_{b}"
                samples[task] = [{"doc_id": d, "target": d % 4, "acc": float(correct[d]), "acc_norm": float(correct[d])}
                                 for d in range(LT_DOCS)]
                acc = float(correct.mean())
                stderr = float(correct.std(ddof=1) / np.sqrt(LT_DOCS))
                metrics[task] = {"acc": acc, "acc_stderr": stderr, "acc_norm": acc, "acc_norm_stderr": stderr}
            metrics["longtail"] = {"acc": float(np.mean([metrics[f"longtail_{b}"]["acc"] for b in BUCKETS])),
                                   "acc_stderr": 0.02}
            add("evaluate", {"task": "longtail"},
                {"task": {"corpus": "longtail", "name": "longtail", "limit": None, "num_fewshot": 0}, "seed": 1234,
                 "eval": {}},
                {"metrics": metrics, "samples": samples, "routing": telemetry(rng, 2.0, False) if is_moe else None,
                 "higher_is_better": {t: {"acc": True, "acc_norm": True} for t in metrics}}, (0.0, 8.0))

    plan = {"suite": "fixture-longtail", "pairing": {"tolerance": 0.05}, "variants": variants, "jobs": jobs, "pairs": []}
    (out / "plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    (out / "suite.yaml").write_text(
        "name: fixture-longtail\ncorpus: {kind: knowledge}\ntrain: {seeds: [1, 2]}\nmodels:\n"
        "  - {name: moe, config: {model_type: olmoe}}\n  - {name: dense-active, derive: {from: moe, match: active}}\n"
        "  - {name: dense-total, derive: {from: moe, match: total}}\ntasks: [{corpus: longtail}]\n"
        "pairing: {tolerance: 0.05}\n")
    with open(out / "results.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
            (out / "jobs" / f"{r['key']}.json").write_text(json.dumps(r, sort_keys=True) + "\n")
    print(f"wrote {len(records)} results to {out}")


if __name__ == "__main__":
    main()
    main_longtail()
