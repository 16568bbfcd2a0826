"""Training: loss against tokens seen, one colour per model, each seed a thin line; training speed."""

from __future__ import annotations

from harness.report import tables as T
from harness.report.figure import Figure, colors, encode, pyplot
from harness.report.run import Run
from harness.report.section import Context, Section
from harness.report.seeds import seed_groups


def training_section(ctx: Context) -> Section:
    return Section("training", "Training", "Training loss curves and training speed of trained builds.",
                   [T.training_table(ctx.run)], ctx.fig(loss_curves), "No training results in this run.")


def loss_curves(run: Run) -> list[Figure]:
    """Training loss vs tokens seen: per model one colour; one seed a line, several seeds thin lines and
    their mean (thick)."""
    models = {}
    for model, variants in seed_groups(run).items():
        curves = [c for c in ((run.training(v) or {}).get("curve") for v in variants) if c]
        if curves:
            models[model] = (variants[0], curves)
    if not models:
        return []
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    use_tokens = all("tokens" in p for _, cs in models.values() for c in cs for p in c)
    x_of = lambda p: p.get("tokens") if use_tokens else p.get("step")  # noqa: E731
    for (model, (first, curves)), color in zip(models.items(), colors(len(models))):
        style = "-" if run.is_moe(first) else "--"
        if len(curves) == 1:
            c = curves[0]
            ax.plot([x_of(p) for p in c], [p.get("loss") for p in c], style, color=color, lw=2, label=model)
            continue
        for c in curves:
            ax.plot([x_of(p) for p in c], [p.get("loss") for p in c], style, color=color, lw=0.8, alpha=0.5)
        xs = sorted(set.intersection(*({x_of(p) for p in c} for c in curves)))
        mean = [sum(next(p["loss"] for p in c if x_of(p) == x) for c in curves) / len(curves) for x in xs]
        ax.plot(xs, mean, style, color=color, lw=2.2, label=f"{model} (mean of {len(curves)} seeds)")
    ax.set_xlabel("tokens seen" if use_tokens else "step")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss (solid: MoE, dashed: dense; thin: single seeds)")
    ax.legend(loc="best")
    fig.tight_layout()
    return [Figure("Training loss curves", encode(fig))]
