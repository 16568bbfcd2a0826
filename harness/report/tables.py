"""The report's tables as plain data (title, columns, rows of strings), shared by Markdown, HTML and text.

Each builder takes a loaded :class:`~harness.report.run.Run` and returns a :class:`Table` whose
``empty`` line says why a section has no rows, so no section vanishes silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.report.numbers import fmt, fmt_ci, fmt_effect, fmt_signed, unit, with_unit
from harness.report.buckets import BUCKETS, is_bucket_metric, main_metrics, member_tasks, primary_metric  # noqa: F401
from harness.report.pairdiff import PairRow, pair_diffs
from harness.report.run import Run
#: probe row columns shown first, in this order; any other keys follow as they come
PROBE_COLUMNS = ("batch_size", "context", "phase", "ms_p50", "ms_p90", "ms_p95", "ms_p99", "ms_mean", "ms_std",
                 "tokens_per_s", "roofline_ms", "measured_over_roofline")


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    empty: str = "No data in this run."
    notes: list[str] = field(default_factory=list)


# ---- formatting ----------------------------------------------------------------------------
def fmt_params(n) -> str:
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return "-"
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:.0f}"


def fmt_num(x, digits: int = 4) -> str:
    """Any cell value under the number rule (:mod:`harness.report.numbers`), ``digits`` significant (3-4)."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        return fmt(x, max(3, min(4, digits)))
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(fmt_num(v, digits) for v in x) + "]"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {fmt_num(v, digits)}" for k, v in x.items()) + "}"
    return str(x)


def fmt_value(x) -> str:
    """A metric value under the number rule: 4 significant digits, scientific beyond 10^6."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "-"
    return fmt(float(x))


def fmt_metric(value, stderr=None) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{fmt_value(value)} ± {fmt_value(stderr)}" if isinstance(stderr, (int, float)) else fmt_value(value)


def fmt_diff(d) -> tuple[str, str, str]:
    """(difference, CI, marker) for a bootstrap Diff, or a reason (str) / None when there is none."""
    if d is None or isinstance(d, str):
        return "-", d or "no shared per-document samples", ""
    mean, lo, hi = fmt_effect(d.mean, d.lo, d.hi)
    return mean, f"[{lo}, {hi}]", "*" if d.significant else ""


# ---- load balance --------------------------------------------------------------------------
def _nums(layers, key) -> list[float]:
    return [l[key] for l in layers if isinstance(l.get(key), (int, float)) and not isinstance(l.get(key), bool)]


def load_balance(routing: dict | None) -> dict:
    """Over layers: mean experts/token, drop rate, worst max/mean expert load, mean CV, mean entropy.

    The workers record entropy already normalised by log(E): 1 is uniform, 0 one expert for all.
    """
    if not routing or not routing.get("layers"):
        return {}
    layers = routing["layers"]
    out = {}
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    for key, name in (("experts_per_token_mean", "experts_per_token"), ("cv", "cv"), ("entropy", "entropy"),
                      ("drop_rate", "drop_rate")):
        if _nums(layers, key):
            out[name] = mean(_nums(layers, key))
    mom = _nums(layers, "max_over_mean")
    for l in layers:  # layers without the figure: from the counts
        counts = [c for c in l.get("tokens_per_expert") or [] if isinstance(c, (int, float))]
        if not isinstance(l.get("max_over_mean"), (int, float)) and counts and sum(counts) > 0:
            mom.append(max(counts) / mean(counts))
    if mom:
        out["max_over_mean"] = max(mom)
    if _nums(layers, "dropped"):
        out["dropped"] = sum(_nums(layers, "dropped"))
    return out


# ---- tables --------------------------------------------------------------------------------
def variants_table(run: Run) -> Table:
    hidden = member_tasks(run)
    tasks = [t for t in run.tasks() if t not in hidden]
    metric_cols = [(t, m) for t in tasks for m in main_metrics(run, t)]
    cols = ["variant", "family", "routing", "total (params)", "active (params)", "total, no emb (params)",
            "active, no emb (params)", "experts/token (count)", "max/mean load (ratio)"] + [
        with_unit(f"{t} {m}", m) for t, m in metric_cols]
    table = Table("Variants", cols, empty="No variant was described or evaluated in this run.")
    for v in run.variants:
        p, b, metrics = run.params(v), run.build(v), run.metrics(v)
        balance = load_balance(run.routing(v))
        ept = p.get("experts_per_token", balance.get("experts_per_token"))
        ept_s = fmt_num(ept, 3) + (" (measured)" if p.get("active_measured") else "") if ept is not None else "-"
        active = fmt_params(p.get("active")) + (" (eff.)" if p.get("active_measured") else "")
        row = [v, b.get("family", "-"), run.routing_name(v), fmt_params(p.get("total")), active,
               fmt_params(p.get("total_no_embed")), fmt_params(p.get("active_no_embed")), ept_s,
               fmt_num(balance.get("max_over_mean"), 3)]
        for t, m in metric_cols:
            vals = metrics.get(t, {})
            row.append(fmt_metric(vals.get(m), vals.get(f"{m}_stderr")))
        table.rows.append(row)
    if any(run.params(v).get("active_measured") for v in run.variants):
        table.notes.append("(eff.): effective active parameters from the measured experts per token (dynamic routing).")
    table.notes.append("Metrics are mean ± lm-eval stderr; max/mean load is the busiest expert's share over the "
                       "mean share, worst layer (1.0 = perfectly balanced).")
    if hidden:
        table.notes.append(f"Per-bucket tasks ({', '.join(sorted(hidden))}) are in the long-tail section.")
    return table


def pair_columns(seeded: bool) -> list[str]:
    return (["MoE (metric unit)", "dense (metric unit)", "Δ MoE − dense (metric unit)",
             "95% CI, paired bootstrap (metric unit)", "docs (count)"]
            + (["seeds (count)", "seed spread (sd, metric unit)", "95% CI over seeds, t (metric unit)"] if seeded else [])
            + ["sig."])


def pair_cells(run: Run, row: PairRow, seeded: bool) -> list[str]:
    """The cells of :func:`pair_columns` for one row."""
    d, a, b = row.diff, row.moe, row.dense
    diff_s, ci_s, mark = fmt_diff(d)
    if isinstance(d, str):
        diff_s = fmt_signed(a - b)
    if mark:
        better = (d.mean < 0) if run.lower_is_better(row.task, row.metric) else (d.mean > 0)
        mark = ("* MoE better" if better else "* dense better") if row.real else "within seed spread"
    cells = [fmt_value(a), fmt_value(b), diff_s, ci_s, str(d.n) if not isinstance(d, str) else "-"]
    if seeded:
        ci = row.seed_ci
        cells += [str(row.n_seeds), fmt_value(row.spread) if row.spread is not None else "-",
                  fmt_ci(ci.lo, ci.hi, mean=ci.mean) if ci is not None else "-"]
    return cells + [mark]


def pair_notes(seeded: bool) -> list[str]:
    notes = ["CI: 95% paired bootstrap over the documents both variants answered (2000 resamples, seed 0); "
             "perplexities and bits per byte are recomputed from the resampled documents' loglikelihoods. "
             "* marks a CI that excludes zero."]
    if seeded:
        notes.append("Seeds: values are means over training seeds, Δ pairs each seed with the twin of the same "
                     "seed and the bootstrap CI resamples documents of the seed-averaged difference; the CI over "
                     "seeds is the t-interval of the per-seed differences (training noise, n − 1 degrees of "
                     "freedom); seed spread is the larger standard deviation over seeds of the two models. A difference is marked only "
                     "when the CI excludes zero and |Δ| exceeds the seed spread.")
    return notes


def pairs_table(run: Run, kind: str, diffs=None) -> Table:
    diffs = pair_diffs(run, kind) if diffs is None else diffs
    seeded = any(r.n_seeds > 1 for r in diffs)
    title = {"active": "Equal-active pairs", "total": "Equal-total pairs"}.get(kind, f"{kind} pairs")
    cols = ["MoE variant", "dense twin", f"{kind} params ratio (dense/MoE)", "task", "metric (unit)"] + pair_columns(seeded)
    table = Table(title, cols, empty=f"No MoE variant has a dense twin at equal {kind} parameters in this run.")
    for row in diffs:
        table.rows.append([row.pair.moe, row.pair.dense, f"{row.pair.ratio:.3f}", row.task, f"{row.metric} ({unit(row.metric)})"]
                          + pair_cells(run, row, seeded))
    if table.rows:
        table.notes += pair_notes(seeded)
    else:
        paired = [p for p in run.pairs() if p.kind == kind]
        if paired:
            table.empty = (f"{len(paired)} {kind}-parameter pair(s) found, but no task was evaluated on both sides.")
    return table


def routing_table(run: Run) -> Table:
    cols = ["variant", "routing", "telemetry from", "layers (count)", "experts (count)", "experts/token (count)",
            "active (params)", "drop rate (fraction)", "max/mean load, worst layer (ratio)", "CV, mean (ratio)",
            "entropy, mean (fraction of uniform)"]
    table = Table("Routing", cols, empty="No routing telemetry in this run (no MoE variant, or none recorded).")
    for v in run.variants:
        routing, source = run.routing_with_source(v)
        if not routing:
            continue
        bal, p = load_balance(routing), run.params(v)
        experts = max((len(l.get("tokens_per_expert") or []) for l in routing["layers"]), default=0)
        active = fmt_params(p.get("active")) + (" (measured)" if p.get("active_measured") else " (nominal)")
        table.rows.append([v, run.routing_name(v), source, str(len(routing["layers"])), str(experts),
                           fmt_num(bal.get("experts_per_token"), 3), active if p.get("active") else "-",
                           fmt_num(bal.get("drop_rate"), 3), fmt_num(bal.get("max_over_mean"), 3),
                           fmt_num(bal.get("cv"), 3), fmt_num(bal.get("entropy"), 3)])
    if table.rows:
        table.notes.append("experts/token: measured by the routers' telemetry; active params: measured where the "
                           "routing is dynamic (from the measured experts/token), else the build's nominal top-k. "
                           "Entropy of the expert load, normalised by log(experts) by the workers.")
    return table


def training_table(run: Run) -> Table:
    cols = ["variant", "steps (count)", "tokens (count)", "first loss (nats/token)", "final loss (nats/token)",
            "train time (s)", "throughput (tokens/s)", "model (FLOP/s)", "MFU (fraction)"]
    table = Table("Training", cols, empty="No training results in this run.")
    notes: dict[str, list] = {}
    for v in run.variants:
        train = run.training(v)
        if not train:
            continue
        curve = train.get("curve") or []
        first = train.get("initial_loss", curve[0].get("loss") if curve else None)
        final = train.get("final_loss", curve[-1].get("loss") if curve else None)
        steps = train.get("steps", curve[-1].get("step") if curve else None)
        tokens = train.get("tokens", curve[-1].get("tokens") if curve else None)
        mfu = fmt_num(train["mfu"], 3) if isinstance(train.get("mfu"), (int, float)) else "-"
        if train.get("mfu_note"):
            notes.setdefault(str(train["mfu_note"]), []).append(v)
            mfu += " (note)" if mfu != "-" else " (see note)"
        table.rows.append([v, fmt_num(steps), fmt_params(tokens), fmt_num(first), fmt_num(final),
                           fmt_num(train.get("train_s"), 3), fmt_num(train.get("tokens_per_s")),
                           fmt_params(train.get("model_flops_per_s")), mfu])
    for note, who in notes.items():
        table.notes.append(f"MFU ({'all' if len(who) == len(table.rows) else ', '.join(who)}): {note}")
    return table


def text_table(table: Table) -> str:
    """A fixed-width plain-text rendering for the terminal."""
    if not table.rows:
        return f"{table.title}: {table.empty}\n"
    widths = [max(len(str(c)), *(len(str(r[i])) for r in table.rows)) for i, c in enumerate(table.columns)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [table.title, line(table.columns), line("-" * w for w in widths)] + [line(r) for r in table.rows]
    return "\n".join(out + table.notes) + "\n"
