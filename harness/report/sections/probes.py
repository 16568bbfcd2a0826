"""Probes: latency, throughput, memory and routing tables (``harness.report.probes``), and the figures:
decode throughput vs batch size for each MoE variant and its dense twins, each with its roofline
(dashed) and the crossover; experts touched vs batch size (routing probe)."""

from __future__ import annotations

from harness.report import probes as PR
from harness.report.figure import DENSE_COLOR, MOE_COLOR, Figure, colors, encode, pyplot
from harness.report.probes import crossover, decode_rows, position, probe_rows, roofline_tokens_per_s, twins
from harness.report.run import Run
from harness.report.section import Context, Section

TWIN_COLORS = {"moe": MOE_COLOR, "active": DENSE_COLOR, "total": "#7570b3"}


def probes_section(ctx: Context) -> Section:
    run = ctx.run
    probes = [PR.latency_table(run), PR.throughput_table(run), PR.decode_twins_table(run), PR.memory_table(run),
              PR.routing_probe_table(run)] + PR.plain_probe_tables(run)
    return Section("probes", "Probes",
                   "Latency, throughput (with its cost per 1M tokens) and memory as measured, next to the roofline "
                   "estimate; where an MoE's decode stops being cheap against its dense twins; experts touched per "
                   "batch.",
                   probes, ctx.fig(decode_vs_batch) + ctx.fig(experts_touched), "No probe results in this run.")


def _series(ax, run: Run, variant: str, color, label: str, style: str) -> list[dict]:
    """Measured tokens/s (solid) and roofline tokens/s (dashed) of one variant; returns its rows."""
    _, rows = decode_rows(run, variant)
    if not rows:
        return []
    bs = [r["batch_size"] for r in rows]
    tps = [r.get("tokens_per_s") for r in rows]
    if all(isinstance(t, (int, float)) for t in tps):
        ax.plot(bs, tps, style, color=color, lw=2, ms=6, label=f"{label} (measured)")
    roof = [roofline_tokens_per_s(r) for r in rows]
    if all(isinstance(t, (int, float)) for t in roof):
        ax.plot(bs, roof, "--", color=color, lw=1.5, alpha=0.8, label=f"{label} (roofline)")
    return rows


def decode_vs_batch(run: Run) -> list[Figure]:
    """One panel per MoE variant: it and its equal-active / equal-total twins, decode tokens/s vs batch."""
    groups = [(moe, tw) for moe, tw in twins(run).items() if decode_rows(run, moe)[1]]
    if not groups:  # no pairs: every variant with decode rows in one panel
        variants = [v for v in run.variants if decode_rows(run, v)[1]]
        if not variants:
            return []
        groups = [(None, {})]
    plt = pyplot()
    ncols = min(2, len(groups))
    nrows = (len(groups) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.5 * ncols, 4.8 * nrows), squeeze=False)
    for ax, (moe, tw) in zip(axes.flat, groups):
        if moe is None:
            for v, color in zip(variants, colors(len(variants))):
                _series(ax, run, v, color, v, "o-" if run.is_moe(v) else "s-")
            ax.set_title("Decode throughput vs batch size")
        else:
            rows = {"moe": _series(ax, run, moe, TWIN_COLORS["moe"], moe, "o-")}
            for kind in ("active", "total"):
                if kind in tw:
                    rows[kind] = _series(ax, run, tw[kind], TWIN_COLORS[kind], f"{tw[kind]} (equal {kind})", "s-")
            if rows.get("active") and rows.get("total"):
                by = {k: {r["batch_size"]: r for r in rs} for k, rs in rows.items()}
                shared = sorted(set(by["moe"]) & set(by["active"]) & set(by["total"]))
                cross = crossover([(b, position(*(by[k][b].get("roofline_ms") for k in ("moe", "active", "total"))))
                                   for b in shared])
                if cross:
                    ax.axvline(cross, color="gray", ls=":", lw=1.5, label=f"roofline crossover (batch {cross})")
            ax.set_title(f"{moe}: decode throughput vs its dense twins")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size (log2)")
        ax.set_ylabel("decode tokens / s (log)")
        ax.legend(loc="best", fontsize=8)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.tight_layout()
    return [Figure("Decode throughput vs batch size: measured (solid) and roofline (dashed); the crossover is where "
                   "the MoE's decode costs more like its equal-total twin than its equal-active one", encode(fig))]


def experts_touched(run: Run) -> list[Figure]:
    """Distinct experts read per decode step vs batch size (routing probe), with uniform routing's expectation."""
    series: dict[str, list] = {}
    for v, _, r in probe_rows(run, "routing"):
        if r.get("phase") == "decode" and isinstance(r.get("experts_touched"), (int, float)):
            series.setdefault(v, []).append(r)
    if not series:
        return []
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    top = 0
    for (v, rows), color in zip(series.items(), colors(len(series))):
        rows.sort(key=lambda r: r["batch_size"])
        bs = [r["batch_size"] for r in rows]
        ax.plot(bs, [r["experts_touched"] for r in rows], "o-", color=color, lw=2, label=v)
        uni = [r.get("experts_touched_uniform") for r in rows]
        if all(isinstance(u, (int, float)) for u in uni):
            ax.plot(bs, uni, "--", color=color, alpha=0.6, lw=1.2)
        top = max(top, max((r.get("num_experts") or 0) for r in rows))
    if top:
        ax.axhline(top, color="black", lw=1, ls=":", label=f"all {top} experts")
    ax.plot([], [], "--", color="gray", label="uniform random routing")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size (log2)")
    ax.set_ylabel("distinct experts per decode step (mean over layers)")
    ax.set_title("Experts touched per decode step vs batch size")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return [Figure("Experts touched per decode step vs batch size (routing probe)", encode(fig))]
