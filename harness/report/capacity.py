"""Knowledge capacity in bits per parameter, booked the way Allen-Zhu & Li book it (arXiv 2404.05405,
"Physics of Language Models 3.3"; the bioS measure is their Definition 4.3).

From each train result on a ``bios`` corpus (``result["capacity"]``: summed losses over the whole
population, ``workers.training.capacity``) the bits stored are computed with the paper's bound
(``moe_schema.capacity.bits_stored``: value bits + the name term) and divided by ``P``, the build's
parameters counted the paper's way: one embedding table (a tied build as it is; an untied build less
its output table, ``moe_schema.capacity.tied_equivalent``). Every row states its tokenizer and
exposures.

- ``capacity_table``: per build and exposure count, ``R`` = bits / P beside ``R_max`` (the most the
  corpus lets a build show: values + the name ceiling, over P) and the paper's expectation for that
  build, ``min(R_max, peak)`` (peak: ~2 bits/param at 1000 exposures, ~1 at 100, 1.3x lower there for
  gated MLPs); where ``R_max`` is below 1.5x the peak the row reads "bounded by the corpus".
- ``moe_factor_table``: each MoE against the best dense bits/param the run measured at its exposure
  count, with the paper's factor only where the geometry is the paper's (32 experts, each as wide as
  the model, top-1: 1.3x at 1000 exposures, 1.5x at 100), and beside it the ratio to its equal-total
  dense twin, labelled as such.
- ``harness.report.sections.capacity.bits_vs_params`` draws them: bits stored against parameters,
  log-log, with the 1 and 2 bits/param lines and, per build, the most the corpus holds and the
  paper's expectation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.report.run import Run
from harness.report.tables import Table, fmt_params
from moe_schema.capacity import bits_stored, expectation, moe_factor, tied_equivalent
from moe_schema.params import FAMILY_DEFAULTS, ParamsError, parts

GATED = frozenset(FAMILY_DEFAULTS)  # every family the harness builds has a gated (SwiGLU) MLP


@dataclass
class Point:
    variant: str
    moe: bool
    exposures: float | None
    tokenizer: str | None
    total: float  # as built
    no_embed: float | None
    stored: dict  # moe_schema.capacity.bits_stored's result
    paper_params: float | None = None  # one embedding table (the paper's count); None: unknown
    tied: bool | None = None
    gated: bool = True
    geometry: dict | None = None  # num_experts, top_k, expert_width, hidden (MoE builds)

    @property
    def base(self) -> str:
        return re.sub(r"\[.*\]$", "", self.variant)

    @property
    def point(self) -> str:
        m = re.search(r"\[.*\]$", self.variant)
        return m.group(0) if m else ""

    @property
    def p(self) -> float:
        """P: the paper's count where known, else the build's total."""
        return self.paper_params or self.total

    @property
    def r(self) -> float:
        return self.stored["bits"] / self.p

    @property
    def r_max(self) -> float:
        return self.stored["max_bits"] / self.p

    @property
    def expected(self) -> dict | None:
        return expectation(self.exposures, self.r_max, self.gated)


def _exposures(record: dict) -> float | None:
    reg = (record.get("corpus") or {}).get("regime") or {}
    exp = reg.get("exposures_per_fact") or {}
    vals = [v.get("exposures_mean") if isinstance(v, dict) else None for v in exp.values()]
    vals = [v for v in vals if isinstance(v, (int, float))]
    return sum(vals) / len(vals) if vals else None


def _config(record: dict, run: Run, variant: str) -> dict | None:
    """The config the train job built from: its own spec's (the plan names the trained build instead)."""
    for spec in (((record.get("spec") or {}).get("variant") or {}), run.spec(variant)):
        config = (spec.get("build") or {}).get("config") if isinstance(spec, dict) else None
        if isinstance(config, dict):
            return config
    return None


def _shape(run: Run, variant: str, total: float, record: dict) -> dict:
    """Family, tied, the paper's parameter count and the MoE geometry: from the build's config
    (``moe_schema.params.parts``) where the train job has one, else from the result's build description."""
    config = _config(record, run, variant)
    if isinstance(config, dict):
        try:
            pt = parts(config)
        except ParamsError:
            pt = None
        if pt is not None:
            geometry = {"num_experts": pt["num_experts"], "top_k": pt["top_k"], "hidden": pt["hidden"],
                        "expert_width": pt["expert"] // (3 * pt["hidden"])} if pt["moe"] else None
            return {"family": config.get("model_type"), "tied": pt["tied"], "geometry": geometry,
                    "paper_params": tied_equivalent(int(total), pt["vocab"], pt["hidden"], pt["tied"])}
    b = run.build(variant)
    tied, vocab, hidden = b.get("tie_word_embeddings"), b.get("vocab_size"), b.get("hidden_size")
    paper = tied_equivalent(int(total), vocab, hidden, bool(tied)) if tied is not None and vocab and hidden else None
    geometry = {"num_experts": b.get("num_experts"), "top_k": b.get("top_k"), "hidden": hidden,
                "expert_width": None} if b.get("num_experts") else None
    return {"family": b.get("family"), "tied": tied, "geometry": geometry, "paper_params": paper}


def points(run: Run) -> list[Point]:
    out = []
    for v in run.variants:
        for r in run.ok("train", v):
            cap, params = r.get("capacity"), r.get("params") or run.params(v)
            if not isinstance(cap, dict) or not params.get("total"):
                continue
            shape = _shape(run, v, params["total"], r)
            out.append(Point(v, run.is_moe(v), _exposures(r), cap.get("tokenizer"), float(params["total"]),
                             float(params["total_no_embed"]) if params.get("total_no_embed") else None,
                             bits_stored(cap, params), shape["paper_params"], shape["tied"],
                             shape["family"] in GATED, shape["geometry"]))
            break
    return out


def _f(x, d=3) -> str:
    return "-" if x is None else f"{x:.{d}g}"


def _reading(p: Point) -> str:
    e = p.expected
    if e is None:
        return "no paper figure at this exposure count"
    return "bounded by the corpus" if e["bounded"] else "capacity"


def capacity_table(run: Run) -> Table:
    cols = ["build", "kind", "exposures / person", "tokenizer", "P (one embedding table)", "params as built",
            "params (no embeddings)", "value facts (bits)", "most the bound gives", "bits stored", "value bits",
            "name bits", "R = bits / P", "R_max", "paper expects", "reading", "bits / param as built",
            "bits / param (no emb.)"]
    t = Table("Knowledge capacity (Allen-Zhu & Li's bound, whole population)", cols,
              empty="No train result carries a capacity scoring (only bios corpora are scored).")
    for p in sorted(points(run), key=lambda p: (p.exposures or 0, p.total, p.moe)):
        s, e = p.stored, p.expected
        expects = "-" if e is None else (f"{e['expected']:.3g} = min(R_max, {e['peak']:.3g}: "
                                         f"{'gated MLP, ' if p.gated and e['exposures'] == 100 else ''}"
                                         f"{e['exposures']} exposures)")
        t.rows.append([p.variant, "MoE" if p.moe else "dense", _f(p.exposures, 4), p.tokenizer or "-",
                       fmt_params(p.p) + ("" if p.tied or p.paper_params is None else " (tied-equivalent)"),
                       fmt_params(p.total) + {True: " (tied)", False: " (untied)"}.get(p.tied, ""),
                       fmt_params(p.no_embed), f"{s['fact_bits']:,.0f}", f"{s['max_bits']:,.0f}", f"{s['bits']:,.0f}",
                       f"{s['value_bits']:,.0f}", "-" if s["name_bits"] is None else f"{s['name_bits']:,.0f}",
                       _f(p.r), _f(p.r_max), expects, _reading(p),
                       _f(s.get("bits_per_param_total")), _f(s.get("bits_per_param_total_no_embed"))])
    if t.rows:
        t.notes = ["bits stored = N log2((N0 - N) / e^p1) + N log2(S0 / e^p2), the paper's measure for bioS "
                   "(Definition 4.3): name bits + value bits, p1 and p2 the model's cross-entropy of the name and of "
                   "the value tokens, over every person; nothing floored.",
                   "P counts one embedding table, as the paper does (it ties input and output embeddings): an untied "
                   "build's P is its total less one vocab x hidden table (tied-equivalent); 'bits / param as built' "
                   "divides by the build's own total, '(no emb.)' leaves every embedding out.",
                   "most the bound gives = value facts + N log2((N0 - N) / N): a model reads the first name before "
                   "anything says whose biography it is, so at best it is uniform over the N names it saw (name loss "
                   "N ln N). R_max = that / P is the most R can be.",
                   "paper expects = min(R_max, peak): the law's peak over model sizes is ~2 bits/param at 1000 "
                   "exposures and ~1 at 100, where gated MLPs (SwiGLU, every family here) are 1.3x lower (0.77). "
                   "Where R_max < 1.5 x the peak the corpus, not the build, bounds R: 'bounded by the corpus'. "
                   "Builds storing <= 0 bits are left out of the log-log figure."]
    return t


def equal_total_twin(m: Point, pts: list[Point], tolerance: float = 0.02) -> Point | None:
    """The dense build of equal total parameters (as built) at the MoE's sweep point, if any."""
    dense = [d for d in pts if not d.moe and d.point == m.point and abs(d.total / m.total - 1) <= tolerance]
    return min(dense, key=lambda d: abs(d.total - m.total)) if dense else None


def best_dense(m: Point, pts: list[Point]) -> Point | None:
    """The dense build with the highest R at the MoE's exposure count (within 10%)."""
    if not m.exposures:
        return None
    dense = [d for d in pts if not d.moe and d.exposures and abs(d.exposures / m.exposures - 1) <= 0.1]
    return max(dense, key=lambda d: d.r) if dense else None


def moe_factor_table(run: Run) -> Table:
    cols = ["MoE", "exposures / person", "MoE R", "best dense R (build)", "best dense / MoE", "paper",
            "equal-total twin", "vs its equal-total twin (dense / MoE bits)"]
    t = Table("MoE capacity per parameter against dense", cols,
              empty="No MoE with a scored dense build at its exposure count.")
    pts = points(run)
    for m in (p for p in pts if p.moe):
        best, twin = best_dense(m, pts), equal_total_twin(m, pts)
        if best is None and twin is None:
            continue
        g = m.geometry or {}
        _, words = moe_factor(m.exposures, g.get("num_experts"), g.get("top_k"), g.get("expert_width"),
                              g.get("hidden"))
        ratio = best.r / m.r if best is not None and m.r > 0 else None
        bounded = best is not None and best.expected is not None and best.expected["bounded"]
        twin_ratio = twin.stored["bits"] / m.stored["bits"] if twin is not None and m.stored["bits"] > 0 else None
        t.rows.append([m.variant, _f(m.exposures, 4), _f(m.r),
                       "-" if best is None else f"{_f(best.r)} ({best.variant}"
                                                f"{', bounded by the corpus' if bounded else ''})",
                       _f(ratio), words, "-" if twin is None else twin.variant, _f(twin_ratio)])
    if t.rows:
        t.notes = ["The paper's MoE factor (1.3x below the dense law at 1000 exposures, 1.5x at 100) was measured "
                   "with 32 experts, each as wide as the model (d -> d -> d), top-1, against the law's peak; it is "
                   "quoted only for that geometry. Here the MoE is compared with the best dense R this run measured "
                   "at its exposure count; the equal-total twin's ratio is shown apart."]
    return t

