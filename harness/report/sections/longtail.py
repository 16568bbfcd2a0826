"""Long-tail buckets: accuracy by entity popularity, per model and per pair, and the knowledge stored."""

from __future__ import annotations

from harness.report import answers as A
from harness.report import longtail as L
from harness.report.buckets import BUCKETS, bucket_groups, bucket_values, group_metrics
from harness.report.figure import Figure, colors, encode, pyplot
from harness.report.run import Run
from harness.report.section import Context, Section
from harness.report.seeds import mean_sd, seed_groups


def longtail_section(ctx: Context) -> Section:
    run = ctx.run
    return Section("long-tail", "Long-tail buckets",
                   "Accuracy by entity popularity bucket (head: frequent, tail: rare), per model and per pair; the "
                   "training regime of the knowledge corpus and the knowledge each build stored.",
                   [L.bucket_table(run), L.bucket_pairs_table(run), L.regime_table(run), A.knowledge_bits_table(run),
                    L.knowledge_table(run)],
                   ctx.fig(buckets), "No per-bucket (head / torso / tail) results in this run.")


def buckets(run: Run) -> list[Figure]:
    """Per bucket group: the primary metric per popularity bucket, one line per model (seeds: mean ± sd)."""
    plt = pyplot()
    figures = []
    for group in bucket_groups(run):
        metrics = group_metrics(run, group)
        if not metrics:
            continue
        metric = metrics[0]
        models = []
        for model, variants in seed_groups(run).items():
            per = [bucket_values(run, v, group, metric) for v in variants]
            names = [b for b in BUCKETS if any(b in p for p in per)]
            if names:
                stats = [mean_sd([p[b] for p in per if b in p]) for b in names]
                models.append((model, variants[0], names, stats, len(variants)))
        if not models:
            continue
        fig, ax = plt.subplots(figsize=(8.5, 4.5))
        for i, ((model, v, names, stats, n), color) in enumerate(zip(models, colors(len(models)))):
            xs = [BUCKETS.index(b) + (i - (len(models) - 1) / 2) * 0.04 for b in names]
            moe = run.is_moe(v)
            ax.errorbar(xs, [m for m, _ in stats], yerr=[sd or 0.0 for _, sd in stats], fmt="o-" if moe else "s--",
                        color=color, capsize=4, lw=2, ms=7, label=model + (f" ({n} seeds)" if n > 1 else ""))
        ax.set_xticks(range(len(BUCKETS)), [f"{b}\n({'frequent' if b == 'head' else 'rare' if b == 'tail' else 'mid'})"
                                             for b in BUCKETS])
        ax.set_xlabel("entity popularity bucket")
        ax.set_ylabel(metric)
        ax.set_title(f"{group.name}: {metric} per popularity bucket (solid: MoE, dashed: dense)")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        figures.append(Figure(f"{group.name}: {metric} per long-tail bucket", encode(fig)))
    return figures
