"""Task metrics from per-document samples, and the merge of sharded evaluate results: metrics,
routing telemetry and timings, the one place each is merged (the harness merges; the report reads).

Torch-free and lm-eval-free: the harness imports it. The aggregations reproduce lm-eval's
(``lm_eval/api/metrics.py``) on the same per-document values in the same (doc_id) order, so
metrics recomputed from merged shards equal the unsplit run's.
"""

from __future__ import annotations

import math


def _mean(xs):
    return sum(xs) / len(xs)


def _weighted_mean(items):
    a, b = zip(*items)
    return sum(a) / sum(b)


def _median(xs):
    return sorted(xs)[len(xs) // 2]


def _nanmean(xs):
    vals = [x for x in xs if not (isinstance(x, float) and math.isnan(x))]
    return _mean(vals) if vals else float("nan")


AGGREGATIONS = {
    "mean": _mean,
    "median": _median,
    "nanmean": _nanmean,
    "perplexity": lambda xs: math.exp(-_mean(xs)),
    "weighted_perplexity": lambda items: math.exp(-_weighted_mean(items)),
    "bits_per_byte": lambda items: -_weighted_mean(items) / math.log(2),
}


def mean_stderr(xs) -> float | None:
    """lm-eval's closed-form standard error of a mean (sample stddev / sqrt(n))."""
    if len(xs) < 2:
        return None
    mu = _mean(xs)
    return math.sqrt(sum((x - mu) ** 2 for x in xs) / (len(xs) - 1)) / math.sqrt(len(xs))


def task_metrics(samples: list[dict], aggregations: dict[str, str], where: str = "samples") -> dict:
    """``{metric: value, metric_stderr: value or None}`` from per-document samples.

    Only ``mean`` has a closed-form stderr; the others get ``None`` (lm-eval bootstraps them or
    reports none).
    """
    out = {}
    for metric, agg in aggregations.items():
        fn = AGGREGATIONS.get(agg)
        if fn is None:
            raise ValueError(f"{where}: metric {metric!r} uses aggregation {agg!r}, which cannot be "
                             f"recomputed from samples (known: {', '.join(sorted(AGGREGATIONS))})")
        values = [s[metric] for s in samples if metric in s]
        if not values:
            raise ValueError(f"{where}: no per-document values of metric {metric!r}")
        if agg in ("weighted_perplexity", "bits_per_byte"):
            values = [tuple(v) for v in values]
        out[metric] = fn(values)
        out[f"{metric}_stderr"] = mean_stderr(values) if agg == "mean" else None
    return out


def merge_routing(shards: list) -> dict | None:
    """Telemetry of a sharded evaluation, summed over shards: counts add; rates and ratios are
    recomputed from the summed counts where they can be, else token-weighted."""
    shards = [s for s in shards if isinstance(s, dict) and s.get("layers")]
    if not shards:
        return None
    layers = []
    for i, first in enumerate(shards[0]["layers"]):
        parts = [s["layers"][i] for s in shards if i < len(s["layers"])]
        tokens = sum(p.get("tokens") or 0 for p in parts)
        counts = [sum(c) for c in zip(*(p.get("tokens_per_expert") or [] for p in parts))]
        layer = {"layer": first.get("layer", i), "tokens": tokens, "tokens_per_expert": counts,
                 "dropped": sum(p.get("dropped") or 0 for p in parts)}
        for key in ("experts_per_token_mean", "drop_rate", "cv", "entropy"):
            vals = [(p[key], p.get("tokens") or 0) for p in parts if isinstance(p.get(key), (int, float))]
            if vals and sum(w for _, w in vals) > 0:
                layer[key] = sum(v * w for v, w in vals) / sum(w for _, w in vals)
        if counts and sum(counts) > 0:
            layer["max_over_mean"] = max(counts) / (sum(counts) / len(counts))
        layers.append(layer)
    return {"layers": layers, "summary": {"tokens": sum(l["tokens"] for l in layers) // max(1, len(layers))},
            "merged_from": len(shards)}


def merge_timings(timings: list[dict]) -> dict:
    """Worker time of a sharded evaluation: load and run times summed over shards, the model cached
    only if it was for every shard."""
    timings = [t or {} for t in timings]
    return {"load_s": sum(t.get("load_s", 0.0) for t in timings), "run_s": sum(t.get("run_s", 0.0) for t in timings),
            "model_cached": all(t.get("model_cached", False) for t in timings)}


def merge_shards(results: list[dict]) -> dict:
    """One evaluate result from the results of its shards (any order).

    Samples are concatenated in doc_id order and every task's metrics recomputed from them, as if
    the task had run unsplit. Counts and times are summed; routing telemetry is summed over shards
    (``merge_routing``), each shard's kept too under ``routing_shards``.
    """
    if not results:
        raise ValueError("merge_shards: no shard results to merge")
    for i, r in enumerate(results):
        for key in ("samples", "aggregations"):
            if not isinstance(r.get(key), dict):
                raise ValueError(f"merge_shards: results[{i}] has no {key!r} map (not an evaluate result?)")  # noqa: TRY004 (one error type for bad input)
    tasks = list(results[0]["samples"])
    for i, r in enumerate(results[1:], 1):
        if sorted(r["samples"]) != sorted(tasks):
            raise ValueError(f"merge_shards: results[{i}] has tasks {sorted(r['samples'])}, results[0] has {sorted(tasks)}")
    merged_samples, metrics = {}, {}
    for task in tasks:
        seen: dict = {}
        for i, r in enumerate(results):
            for s in r["samples"][task]:
                if s["doc_id"] in seen:
                    raise ValueError(f"merge_shards: {task} doc_id {s['doc_id']} is in results[{seen[s['doc_id']]}] and results[{i}]")
                seen[s["doc_id"]] = i
        samples = sorted((s for r in results for s in r["samples"][task]), key=lambda s: s["doc_id"])
        merged_samples[task] = samples
        metrics[task] = task_metrics(samples, results[0]["aggregations"][task], where=f"merge_shards: {task}")
    # Not mutated: each of these keys is set again just below, and the shards share every other field.
    merged = {k: v for k, v in results[0].items() if k not in ("samples", "metrics", "routing", "shard")}  # pragma: no mutate
    merged.update(
        metrics=metrics,
        samples=merged_samples,
        n_requests=sum(r.get("n_requests", 0) for r in results),
        eval_s=sum(r.get("eval_s", 0.0) for r in results),
        routing=None,
        shard=None,
        merged_from=len(results),
    )
    preempted = [r["eval"]["preemptions"] for r in results if isinstance((r.get("eval") or {}).get("preemptions"), int)]
    if preempted:  # vLLM: requests computed again (their routing counted again), over every shard
        merged["eval"] = {**results[0]["eval"], "preemptions": sum(preempted)}
    routing = [r.get("routing") for r in results if r.get("routing") is not None]
    if routing:
        merged["routing_shards"] = routing
        merged["routing"] = merge_routing(routing)
    if any("timings" in r for r in results):
        merged["timings"] = merge_timings([r.get("timings") for r in results])
    return merged
