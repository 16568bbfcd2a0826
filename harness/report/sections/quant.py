"""Quantization: each MoE beside its dense twins at each engine setting (``harness.report.quant``): the
quality each lost against its own exact (f32) build with a 95% CI, decode and prompt tokens/s, peak
memory, file size and bits per weight; and quality lost against bits per weight, one line per build.
Present only where one build ran on one engine at two or more settings, one of them inexact."""

from __future__ import annotations

from harness.report import quant as Q
from harness.report.figure import Figure, colors, encode, pyplot
from harness.report.numbers import fmt, fmt_effect, unit
from harness.report.probes import fmt_bytes, twins
from harness.report.run import Run
from harness.report.section import Context, Section
from harness.report.tables import Table

INTRO = ("Each build on one engine at its exact setting (f32 weights, f32 KV cache) and at each quantized one, the "
         "MoE beside its dense twins at the same setting: the quality it lost against its own exact build on the "
         "same documents (positive: worse), with its 95% paired bootstrap CI, and what the setting buys in speed, "
         "memory and file size. Claim 9's verdicts (the twin's loss minus the MoE's) are with the answer above.")


def quant_section(ctx: Context) -> list[Section]:
    """The section, or nothing where no build ran at two engine settings (a run without quantized
    variants keeps its report)."""
    if not Q.groups(ctx.run):
        return []
    return [Section("quantization", "Quantization", INTRO, [quant_table(ctx.run)], ctx.fig(loss_vs_bits), "")]


def _order(run: Run, members: list[str], foot: dict) -> list[str]:
    """Exact settings first, then by bits per weight, most first (unknown last)."""
    return sorted(members, key=lambda v: (not Q.exact(run, v), -(foot[v].bits_per_weight or 0.0)))


def _loss_cell(loss: Q.Loss | None) -> str:
    if loss is None:
        return "-"
    if loss.diff is None:
        return f"no interval ({loss.why})"
    d = loss.diff
    mean, lo, hi = fmt_effect(d.mean, d.lo, d.hi)
    return f"{mean} [{lo}, {hi}] ({d.n} docs)"


def quant_table(run: Run) -> Table:
    tasks = Q.quant_tasks(run)
    cols = ["MoE build", "setting", "role", "variant", "bits / weight", "file size", "decode (tokens/s)",
            "prompt processing (tokens/s)", "peak memory"] + \
        [f"{t} {m} lost vs exact ({unit(m)}; 95% CI)" for t, m in tasks]
    table = Table("Each MoE beside its dense twins at each bit width", cols,
                  empty="No build ran at two engine settings.")
    refs, lost, tw = Q.references(run), Q.losses(run), twins(run)
    groups = [g for g in Q.groups(run) if run.is_moe(g[0])]
    foot = {v: Q.footprint(run, v) for g in Q.groups(run) for v in g}
    for members in groups:
        for m in _order(run, members, foot):
            if not Q.exact(run, m) and refs.get(m) is None:
                continue  # no exact build to measure against: named in the notes
            label = next((v for v in members if Q.exact(run, v)), members[0])
            rows = [("MoE", m)] + [(f"equal-{k} twin", tw[m][k]) for k in ("active", "total") if k in tw.get(m, {})]
            for role, v in rows:
                if not Q.exact(run, v) and refs.get(v) is None:
                    continue
                f = foot.get(v) or Q.footprint(run, v)
                by_task = {x.task: x for x in lost.get(v, [])}
                cells = ["reference" if Q.exact(run, v) else _loss_cell(by_task.get(t)) for t, _ in tasks]
                table.rows.append([label, Q.setting(run, v), role, v, fmt(f.bits_per_weight, 3),
                                   fmt_bytes(f.file_bytes), fmt(f.decode), fmt(f.prefill), fmt_bytes(f.peak_bytes)]
                                  + cells)
    table.notes += Q.missing_reference_notes(run)
    if table.rows:
        table.notes.append(
            "lost vs exact: the variant's metric against the same build's exact setting on the same engine, per "
            "document (quantized − exact for a loss such as bits per byte, exact − quantized for accuracy), so "
            "positive is quality lost; 95% CI by the paired bootstrap over the documents both answered (a "
            "perplexity's aggregate recomputed per resample). Decode: tokens/s at the smallest batch and the "
            "largest context probed; prompt processing: at the smallest batch and the longest prompt (the "
            "throughput probe, else latency); peak memory: the memory probe's largest peak; file size and bits "
            "per weight: the GGUF file the engine ran ('-' where the engine writes none).")
    return table


def loss_vs_bits(run: Run) -> list[Figure]:
    """Quality lost against bits per weight, one panel per task, one line per build (its exact setting
    at 0); MoE builds drawn with circles, dense ones with squares; 95% CIs as error bars."""
    tasks = Q.quant_tasks(run)
    lost = Q.losses(run)
    lines = []
    for members in Q.groups(run):
        ref = next((v for v in members if Q.exact(run, v)), None)
        if ref is None:
            continue
        bits_ref = Q.footprint(run, ref).bits_per_weight
        pts = {t: [] for t, _ in tasks}
        for v in members:
            bits = Q.footprint(run, v).bits_per_weight
            if bits is None:
                continue
            for x in lost.get(v, []):
                if x.diff is not None:
                    pts[x.task].append((bits, x.diff.mean, x.diff.lo, x.diff.hi))
        for t in pts:
            if pts[t] and bits_ref is not None:
                pts[t].append((bits_ref, 0.0, 0.0, 0.0))
        if any(pts.values()):
            lines.append((ref, run.is_moe(ref), pts))
    shown = [(t, m) for t, m in tasks if any(p[t] for _, _, p in lines)][:4]
    if not shown:
        return []
    plt = pyplot()
    fig, axes = plt.subplots(1, len(shown), figsize=(6.5 * len(shown), 4.5), squeeze=False)
    for ax, (task, metric) in zip(axes.flat, shown):
        for (ref, moe, pts), color in zip(lines, colors(len(lines))):
            p = sorted(pts[task])
            if not p:
                continue
            xs, ys = [a for a, *_ in p], [b for _, b, _, _ in p]
            err = [[y - lo for _, y, lo, _ in p], [hi - y for _, y, _, hi in p]]
            ax.errorbar(xs, ys, yerr=err, fmt=("o-" if moe else "s--"), color=color, lw=1.8, ms=6, capsize=3,
                        label=f"{ref} ({'MoE' if moe else 'dense'})")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("bits per weight (GGUF file, log2)")
        ax.set_ylabel(f"{metric} lost vs exact ({unit(metric)})")
        ax.set_title(f"{task}: quality lost to quantization")
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return [Figure("Quality lost to quantization against bits per weight, one line per build (its exact setting at "
                   "0), with 95% paired bootstrap CIs", encode(fig))]
