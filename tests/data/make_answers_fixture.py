"""Writes tests/data/answers_fixture/: a constructed claims run (no models) shaped as the issue-19
contract says the workers write it, with outcomes chosen so every verdict path shows:

- ``moe``, ``dense-active``, ``dense-total`` trained with seeds 1, 2, 3 on a knowledge corpus; train
  results with ``heldout_curve`` (tokens, seconds, loss seen / unseen) and the corpus regime;
- held-out tasks ``kg_heldout_seen`` / ``kg_heldout_unseen`` (bits per byte, [loglikelihood, bytes]
  per document) and exact knowledge tasks ``kg_values_head/_torso/_tail`` (``bits`` and ``acc``);
- the trained MoE under ``topk(k=1)`` (half its k), ``random`` and ``prune(fraction=0.5)``;
- a ``train.tokens`` sweep of ``moe`` and ``dense-active`` (2 seeds, 3 points) whose difference
  changes sign between the first and second point.

Designed outcomes: claim 1 holds (MoE lower held-out loss in every seed), claim 2 holds (dense-total
within the margin), claim 3 inconclusive with seed 2 disagreeing in sign, claim 5 holds against random
and top-k at half k and is inconclusive against pruning.

Deterministic: rerun it and the files come out identical.

    python tests/data/make_answers_fixture.py
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_run_fixture import env, key  # noqa: E402

OUT = Path(__file__).resolve().parent / "answers_fixture"
SEEDS = (1, 2, 3)
SWEEP_SEEDS = (1, 2)
SWEEP_TOKENS = (16384, 65536, 262144)
TOKENS = 262144
CURVE_TOKENS = (4096, 16384, 65536, 262144)
HELDOUT_DOCS = 60
VALUES_DOCS = {"head": 40, "torso": 60, "tail": 90}
VALUE_COUNTS = {"birth_year": 100, "city": 36, "employer": 24, "university": 12, "field": 16}
CORPUS = {"kind": "knowledge", "tokens": 100_000, "entities": 200, "value_counts": VALUE_COUNTS,
          "buckets": {"head": {"entities": 20, "exposures_mean": 60.0}, "torso": {"entities": 60, "exposures_mean": 12.0},
                      "tail": {"entities": 120, "exposures_mean": 3.0}}}
MODELS = {  # family, is_moe, total, active, tokens/s
    "moe": ("olmoe", True, 264_128, 116_672, 4500.0),
    "dense-active": ("olmo", False, 116_800, 116_800, 9000.0),
    "dense-total": ("olmo", False, 264_000, 264_000, 3800.0),
}
# held-out bits per byte: base (seen, unseen) and an offset per seed, so the per-seed differences are set
HELDOUT = {"moe": ((1.200, 1.500), (0.000, 0.004, -0.003)),
           "dense-active": ((1.260, 1.530), (0.010, -0.006, 0.002)),
           "dense-total": ((1.195, 1.497), (0.001, 0.003, -0.002)),
           "moe@topk(k=1)": ((1.250, 1.550), (0.002, 0.007, -0.004)),
           "moe@random": ((1.600, 1.800), (0.010, -0.010, 0.000)),
           "moe@prune(fraction=0.5)": ((1.201, 1.501), (0.003, 0.001, -0.002))}
# values tasks: mean bits per document by bucket, per seed (tail: seed 2 reverses the MoE's lead)
VALUES = {"moe": {"head": (2.0, 2.1, 2.0), "torso": (1.1, 1.0, 1.2), "tail": (0.60, 0.40, 0.70)},
          "dense-active": {"head": (1.9, 2.0, 1.9), "torso": (0.9, 1.0, 0.9), "tail": (0.45, 0.50, 0.50)},
          "dense-total": {"head": (2.1, 2.1, 2.0), "torso": (1.2, 1.1, 1.2), "tail": (0.62, 0.66, 0.60)}}
ROUTINGS = {"moe@topk(k=1)": {"name": "topk", "params": {"k": 1}}, "moe@random": {"name": "random", "params": {}},
            "moe@prune(fraction=0.5)": {"name": "prune", "params": {"fraction": 0.5}}}
# the sweep's held-out (seen) gap MoE − dense-active at each token count: worse early, better late
SWEEP_GAP = {16384: 0.02, 65536: -0.03, 262144: -0.05}


def regime(total: int, active: int, tokens: int) -> dict:
    epochs = tokens / CORPUS["tokens"]
    fact_bits = CORPUS["entities"] * sum(math.log2(v) for v in VALUE_COUNTS.values())
    return {"tokens_trained": tokens, "corpus_tokens": CORPUS["tokens"], "epochs": epochs,
            "tokens_per_param": tokens / total, "tokens_per_active_param": tokens / active,
            "exposures_per_fact": {b: {"exposures_mean": s["exposures_mean"] * epochs}
                                   for b, s in CORPUS["buckets"].items()},
            "fact_bits": fact_bits, "capacity_bits_at_2_per_param": 2.0 * total,
            "facts_exceed_capacity": fact_bits > 2.0 * total}


def heldout_curve(final: tuple[float, float], tps: float, tokens: int) -> list[dict]:
    """Held-out nats per token falling as a power of tokens to ``final`` (bits/byte × ln 2 × 4 bytes/token)."""
    out = []
    for t in [c for c in CURVE_TOKENS if c < tokens] + [tokens]:
        scale = (t / tokens) ** -0.12
        out.append({"tokens": t, "seconds": round(t / tps, 4),
                    "loss": {k: round(v * math.log(2) * 4 * scale, 6) for k, v in zip(("seen", "unseen"), final)}})
    return out


def heldout_result(rng, difficulty, bpb: dict[str, float]) -> dict:
    metrics, samples, hib = {}, {}, {}
    for kind, value in bpb.items():
        task = f"kg_heldout_{kind}"
        nbytes = difficulty["bytes"]
        per = value + difficulty[kind] + rng.normal(0, 0.01, HELDOUT_DOCS)
        per = per - (per * nbytes).sum() / nbytes.sum() + value  # the byte-weighted aggregate is exactly ``value``
        lls = -per * nbytes * math.log(2)
        samples[task] = [{"doc_id": d, "bits_per_byte": [float(lls[d]), int(nbytes[d])]}
                         for d in range(HELDOUT_DOCS)]
        metrics[task] = {"bits_per_byte": float(-lls.sum() / nbytes.sum() / math.log(2)), "bits_per_byte_stderr": None}
        hib[task] = {"bits_per_byte": False}
    return {"metrics": metrics, "samples": samples, "higher_is_better": hib}


def values_result(rng, means: dict[str, float]) -> dict:
    metrics, samples, hib = {}, {}, {}
    attrs = list(VALUE_COUNTS)
    for b, mu in means.items():
        task = f"kg_values_{b}"
        n = VALUES_DOCS[b]
        noise = rng.normal(0, 0.3, n)
        bits = np.clip(mu + noise - noise.mean(), 0.0, None)
        acc = (rng.random(n) < np.clip(0.04 + 0.12 * bits, 0, 1)).astype(float)
        samples[task] = [{"doc_id": d, "bits": float(bits[d]), "acc": float(acc[d]), "attribute": attrs[d % 5]}
                         for d in range(n)]
        metrics[task] = {"acc": float(acc.mean()), "acc_stderr": float(acc.std(ddof=1) / math.sqrt(n)),
                         "bits": float(bits.mean()), "bits_stderr": float(bits.std(ddof=1) / math.sqrt(n))}
        hib[task] = {"acc": True, "bits": True}
    return {"metrics": metrics, "samples": samples, "higher_is_better": hib}


def main() -> None:
    rng = np.random.default_rng(19)
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    difficulty = {"bytes": rng.integers(200, 400, HELDOUT_DOCS).astype(float),
                  "seen": rng.normal(0, 0.2, HELDOUT_DOCS), "unseen": rng.normal(0, 0.2, HELDOUT_DOCS)}
    variants, jobs, records = [], [], []
    corpus_dir = "/cache/corpora/kg0001"
    corpus = {**CORPUS, "path": corpus_dir,
              "tasks": {t: f"{corpus_dir}/tasks/{t}.yaml" for t in
                        ["kg_heldout_seen", "kg_heldout_unseen"] + [f"kg_values_{b}" for b in VALUES_DOCS]}}

    def add_variant(name, model, base_model, seed, sweep, routing, tokens):
        family, is_moe, total, active, tps = MODELS[base_model]
        spec = {"name": name, "model": model, "build": {"trained": f"train-{model}-{seed}"},
                "routing": routing if is_moe else None, "dtype": "float32", "trust_remote_code": False,
                "experts_implementation": None, "train_seed": seed, "sweep": sweep, "is_moe": is_moe}
        variants.append(spec)
        params = {"total": total, "active": active, "total_no_embed": total - 33_152,
                  "active_no_embed": active - 33_152, "num_experts": 8 if is_moe else None,
                  "experts_per_token": 2.0 if is_moe else None, "active_measured": False}
        base = {"variant": name, "model": model, "status": "ok", "error": None, "attempts": 1, "params": params,
                "build": {"family": family, "moe": is_moe, "num_layers": 2}, "routing": None,
                "env": {**env(20 + len(variants)), "device_name": "Fixture CPU"}}

        def add(kind, extra, spec_extra, result, run_s):
            job_spec = {"kind": kind, "variant": spec, **spec_extra}
            k = key(job_spec)
            jobs.append({"key": k, "kind": kind, "variant": name, **extra})
            records.append({"key": k, "kind": kind, **base, **extra, "spec": job_spec,
                            "timings": {"load_s": 0.0, "run_s": run_s, "model_cached": True}, **result})
        return add, (is_moe, total, active, tps)

    def trained(name, model, base_model, seed, sweep, final_bpb, tokens):
        add, (is_moe, total, active, tps) = add_variant(name, model, base_model, seed, sweep,
                                                        {"name": "native", "params": {}}, tokens)
        curve = [{"step": s, "tokens": s * 4096, "loss": round(2.5 * s ** -0.2, 4)} for s in (1, 16, 64)]
        train = {"curve": curve, "steps": tokens // 4096, "tokens": tokens, "initial_loss": curve[0]["loss"],
                 "final_loss": curve[-1]["loss"], "tokens_per_s": tps, "train_s": tokens / tps,
                 "flops_per_token": 6.0 * active, "model_flops_per_s": 6.0 * active * tps, "mfu": None,
                 "mfu_note": "no known peak FLOP/s for device type 'cpu'", "seed": seed, "device": "cpu",
                 "heldout_curve": heldout_curve(final_bpb, tps + 40 * seed, tokens)}
        reg = regime(total, active, tokens)
        add("train", {}, {"train": {"tokens": tokens}, "seed": seed},
            {"train": train, "corpus": {**corpus, "regime": reg}}, tokens / tps)
        add("describe", {}, {}, {}, 0.0)
        return add

    for model in ("moe", "dense-active", "dense-total"):
        for i, seed in enumerate(SEEDS):
            (seen, unseen), offsets = HELDOUT[model]
            bpb = {"seen": seen + offsets[i], "unseen": unseen + offsets[i]}
            add = trained(f"{model}#s{seed}", model, model, seed, {}, (bpb["seen"], bpb["unseen"]), TOKENS)
            task = {"name": "kg_heldout", "limit": None, "num_fewshot": 0}
            add("evaluate", {"task": "kg_heldout"}, {"task": task, "seed": 1234},
                heldout_result(np.random.default_rng([seed, len(model)]), difficulty, bpb), 2.0)
            vals = {b: VALUES[model][b][i] for b in VALUES_DOCS}
            add("evaluate", {"task": "kg_values"}, {"task": {"name": "kg_values"}, "seed": 1234},
                values_result(np.random.default_rng([seed, len(model), 7]), vals), 2.0)
    for name, routing in ROUTINGS.items():
        for i, seed in enumerate(SEEDS):
            (seen, unseen), offsets = HELDOUT[name]
            add, _ = add_variant(f"{name}#s{seed}", "moe", "moe", seed, {}, routing, TOKENS)
            add("describe", {}, {}, {}, 0.0)
            bpb = {"seen": seen + offsets[i], "unseen": unseen + offsets[i]}
            add("evaluate", {"task": "kg_heldout"}, {"task": {"name": "kg_heldout"}, "seed": 1234},
                heldout_result(np.random.default_rng([seed, len(name)]), difficulty, bpb), 2.0)
    for tokens in SWEEP_TOKENS:
        for model in ("moe", "dense-active"):
            for i, seed in enumerate(SWEEP_SEEDS):
                scale = (tokens / TOKENS) ** -0.12
                seen = 1.26 * scale + (SWEEP_GAP[tokens] if model == "moe" else 0.0) + 0.004 * (i - 0.5) * (
                    1 if model == "moe" else -1)
                bpb = {"seen": seen, "unseen": seen + 0.3}
                point = f"{model}[train.tokens={tokens}]"
                add = trained(f"{point}#s{seed}", point, model, seed, {"train.tokens": tokens},
                              (bpb["seen"], bpb["unseen"]), tokens)
                add("evaluate", {"task": "kg_heldout"}, {"task": {"name": "kg_heldout"}, "seed": 1234},
                    heldout_result(np.random.default_rng([seed, tokens, len(model)]), difficulty, bpb), 2.0)

    plan = {"suite": "fixture-claims", "pairing": {"tolerance": 0.05}, "variants": variants, "jobs": jobs, "pairs": []}
    (OUT / "plan.json").write_text(json.dumps(plan, indent=1) + "\n")
    (OUT / "suite.yaml").write_text(
        "name: fixture-claims\ncorpus: {kind: knowledge}\ntrain: {seeds: [1, 2, 3], tokens: 262144}\n"
        "models:\n  - {name: moe, config: {model_type: olmoe},\n"
        "     routing: [native, {name: topk, params: {k: 1}}, random, {name: prune, params: {fraction: 0.5}}]}\n"
        "  - {name: dense-active, derive: {from: moe, match: active}}\n"
        "  - {name: dense-total, derive: {from: moe, match: total}}\n"
        "tasks: [{corpus: kg}]\npairing: {tolerance: 0.05}\n")
    with open(OUT / "results.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r, sort_keys=True) + "\n")
    print(f"wrote {len(records)} results to {OUT}")


if __name__ == "__main__":
    main()
