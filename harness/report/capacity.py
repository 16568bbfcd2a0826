"""Knowledge capacity in bits per parameter, against Allen-Zhu & Li's law (arXiv 2404.05405): ~2 bits
per parameter at 1000 exposures per person, ~1 at 100; an MoE with 32 experts ~1.3x below its total.

From each train result on a ``bios`` corpus (``result["capacity"]``: summed losses over the whole
population, ``workers.training.capacity``) the bits stored are computed with the paper's bound
(``moe_schema.capacity.bits_stored``: value bits + the name term), divided by the build's parameters
with embeddings (the paper's count) and without. Every row states its tokenizer and exposures.

- ``capacity_table``: bits and bits/param per build and exposure count, beside the paper's figure.
- ``moe_factor_table``: each MoE against the dense build of equal total parameters at the same
  exposures: the dense build's bits over the MoE's (the paper: ~1.3x with 32 experts).
- ``bits_vs_params``: bits stored against parameters, log-log, with the 1 and 2 bits/param lines.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from harness.report.run import Run
from harness.report.tables import Table, fmt_params
from moe_schema.capacity import bits_stored

PAPER = {100: 1.0, 1000: 2.0}  # bits per parameter the paper reports at these exposures (lower bounds)
PAPER_MOE_FACTOR = 1.3


@dataclass
class Point:
    variant: str
    moe: bool
    exposures: float | None
    tokenizer: str | None
    total: float
    no_embed: float | None
    stored: dict  # moe_schema.capacity.bits_stored's result

    @property
    def base(self) -> str:
        return re.sub(r"\[.*\]$", "", self.variant)

    @property
    def point(self) -> str:
        m = re.search(r"\[.*\]$", self.variant)
        return m.group(0) if m else ""


def _exposures(record: dict) -> float | None:
    reg = (record.get("corpus") or {}).get("regime") or {}
    exp = reg.get("exposures_per_fact") or {}
    vals = [v.get("exposures_mean") if isinstance(v, dict) else None for v in exp.values()]
    vals = [v for v in vals if isinstance(v, (int, float))]
    return sum(vals) / len(vals) if vals else None


def points(run: Run) -> list[Point]:
    out = []
    for v in run.variants:
        for r in run.ok("train", v):
            cap, params = r.get("capacity"), r.get("params") or run.params(v)
            if not isinstance(cap, dict) or not params.get("total"):
                continue
            out.append(Point(v, run.is_moe(v), _exposures(r), cap.get("tokenizer"), float(params["total"]),
                             float(params["total_no_embed"]) if params.get("total_no_embed") else None,
                             bits_stored(cap, params)))
            break
    return out


def _paper(exposures: float | None) -> str:
    if exposures is None:
        return "-"
    near = min(PAPER, key=lambda e: abs(math.log(exposures / e)))
    return f">= {PAPER[near]:g} at {near}" if abs(math.log(exposures / near)) < math.log(1.5) else "-"


def _f(x, d=3) -> str:
    return "-" if x is None else f"{x:.{d}g}"


def capacity_table(run: Run) -> Table:
    cols = ["build", "kind", "exposures / person", "tokenizer", "params (total)", "params (no embeddings)",
            "value facts (bits)", "most the bound gives", "bits stored", "value bits", "name bits", "bits / param", "bits / param (no emb.)",
            "paper (bits / param)"]
    t = Table("Knowledge capacity (Allen-Zhu & Li's bound, whole population)", cols,
              empty="No train result carries a capacity scoring (only bios corpora are scored).")
    for p in sorted(points(run), key=lambda p: (p.exposures or 0, p.total, p.moe)):
        s = p.stored
        t.rows.append([p.variant, "MoE" if p.moe else "dense", _f(p.exposures, 4), p.tokenizer or "-",
                       fmt_params(p.total), fmt_params(p.no_embed), f"{s['fact_bits']:,.0f}", f"{s['max_bits']:,.0f}", f"{s['bits']:,.0f}",
                       f"{s['value_bits']:,.0f}", "-" if s["name_bits"] is None else f"{s['name_bits']:,.0f}",
                       _f(s.get("bits_per_param_total")), _f(s.get("bits_per_param_total_no_embed")),
                       _paper(p.exposures)])
    if t.rows:
        t.notes = ["bits stored = N log2((N0 - N) / e^p1) + N log2(S0 / e^p2) (the paper's Theorem 3.2 bound): "
                   "name bits + value bits, p1 and p2 the model's cross-entropy of the name and of the value "
                   "tokens, over every person; nothing floored. bits / param counts embeddings (the paper's "
                   "convention); the column after it leaves them out.",
                   "most the bound gives = value facts + N log2(N0 - N) (names predicted perfectly). Bits / param "
                   "cannot exceed it / params: where that is below 2 x params, the figure is not a capacity "
                   "measurement (it is capped by the corpus). Builds storing <= 0 bits are left out of the "
                   "log-log figure."]
    return t


def moe_pairs(pts: list[Point], tolerance: float = 0.02) -> list[tuple[Point, Point]]:
    """(MoE, dense of equal total parameters at the same sweep point)."""
    out = []
    for m in (p for p in pts if p.moe):
        dense = [d for d in pts if not d.moe and d.point == m.point and abs(d.total / m.total - 1) <= tolerance]
        if dense:
            out.append((m, min(dense, key=lambda d: abs(d.total - m.total))))
    return out


def moe_factor_table(run: Run) -> Table:
    cols = ["MoE", "dense (equal total)", "exposures / person", "params (total)", "MoE bits", "dense bits",
            "dense / MoE", "paper"]
    t = Table("MoE capacity per total parameter against dense", cols,
              empty="No MoE with a dense build of equal total parameters among the scored builds.")
    for m, d in moe_pairs(points(run)):
        ratio = d.stored["bits"] / m.stored["bits"] if m.stored["bits"] > 0 else None
        t.rows.append([m.variant, d.variant, _f(m.exposures, 4), fmt_params(m.total), f"{m.stored['bits']:,.0f}",
                       f"{d.stored['bits']:,.0f}", _f(ratio), f"~{PAPER_MOE_FACTOR}x (32 experts)"])
    return t


def bits_vs_params(run: Run) -> list:
    """Bits stored against parameters (with and without embeddings), log-log, with the paper's lines."""
    from harness.report.plots import Figure, _encode, _plt

    pts = [p for p in points(run) if p.stored["bits"] > 0]
    if not pts:
        return []
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    exposures = sorted({round(p.exposures) for p in pts if p.exposures})
    colors = {e: c for e, c in zip(exposures, ("tab:blue", "tab:orange", "tab:green", "tab:red"))}
    for ax, key, label in ((axes[0], "total", "parameters (with embeddings)"),
                           (axes[1], "no_embed", "parameters (without embeddings)")):
        xs = [getattr(p, key) for p in pts if getattr(p, key)]
        if not xs:
            continue
        for p in pts:
            x = getattr(p, key)
            if x:
                ax.scatter([x], [p.stored["bits"]], marker="s" if p.moe else "o",
                           color=colors.get(round(p.exposures or 0), "gray"))
        lo, hi = min(xs) / 1.5, max(xs) * 1.5
        for slope, style in ((2, "-"), (1, "--")):
            ax.plot([lo, hi], [slope * lo, slope * hi], style, color="black", lw=1, label=f"{slope} bit/param")
        most = max(p.stored["max_bits"] for p in pts)
        ax.axhline(most, color="gray", lw=1, ls=":", label="most the corpus holds (names + values)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label + " (log)")
        ax.set_ylabel("bits stored (log)")
    for e, c in colors.items():
        axes[0].scatter([], [], color=c, label=f"{e} exposures")
    axes[0].scatter([], [], marker="s", color="gray", label="MoE")
    axes[0].scatter([], [], marker="o", color="gray", label="dense")
    axes[0].legend(loc="best")
    fig.suptitle("Bits stored vs parameters (Allen-Zhu & Li's bound), with the 2 and 1 bit/param lines")
    fig.tight_layout()
    return [Figure("Bits stored vs parameters, log-log, with 2 and 1 bit/param", _encode(fig))]
