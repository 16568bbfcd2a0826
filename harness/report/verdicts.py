"""Verdicts: for each claim of docs/claims.md (harness/report/claims.md) a run can speak to, does it hold *in this run*?

Pure logic, no rendering (sentences and tables are in :mod:`harness.report.answers`). Every verdict
rests on one difference oriented so that **positive favours the claim** ("advantage"), with a 95%
interval:

- over seeds when the run trained two or more: the t-interval of the per-seed paired differences;
- else within the one seed: the paired bootstrap over documents.

``decide``: *holds* when the whole interval lies above the claim's boundary (0, or −margin for an
equivalence claim), *does not hold* when it lies wholly below, else *inconclusive at this size*. An
interval that touches the boundary exactly is inconclusive. An inconclusive verdict carries the
smallest difference this run could have detected (α = 0.05 two-sided, power 0.8) and how many seeds
(or documents, with one seed) would detect the difference it observed.

Claims (1, 2, 3, 5; the others need probes or ablations these verdicts do not read):

1. equal active: the MoE's held-out loss (``*_heldout_seen`` / ``*_heldout_unseen`` bits per byte,
   else the final point of ``train.heldout_curve``) is lower than its equal-active twin's;
2. equal total: the dense twin is as good or better, within ``EQUIVALENCE_MARGIN`` (relative to the
   twin's value); its cost per token beside the MoE's is stated, not judged (training FLOPs per
   token, else 6 × active params);
3. long-tail knowledge: the MoE stores more tail-bucket facts than its equal-*active* twin
   (``<group>_values_tail`` bits per document, else accuracy). Only equal-active pairs: at equal
   *total* parameters the paper the claim rests on (Allen-Zhu & Li, arXiv 2404.05405) predicts the
   MoE stores *less* (1.3–1.5× fewer bits per parameter), so an equal-total pair is no evidence for
   the claim. It is judged apart, oriented to that prediction (``PREDICTIONS["3t"]``: positive = the
   MoE stores less), as a family of its own;
5. router: the trained MoE's native router beats top-k at half its k, random routing and pruning;
9. quantization: an MoE loses no more to an inexact engine setting (quantized weights) than its dense
   twins, within ``QUANT_MARGIN`` of the twin's exact value: the twin's loss minus the MoE's, on the
   same documents (``harness.report.quant.comparisons``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from harness.report.bootstrap import Diff
from harness.report.buckets import bucket_groups, member_tasks, primary_metric, task_samples
from harness.report.curves import KINDS, heldout_curve, points
from harness.report.knowledge import regime_of, values_groups
from harness.report.pairdiff import PairRow, compare_pair
from harness.report.quant import QUANT_MARGIN, comparisons as quant_comparisons
from harness.report.run import Run
from harness.report.seeds import ModelPair, model_pairs, routing_pairs, split_seed, sweep_label
from harness.report.stats import (ALPHA, docs_needed, holm_levels, mde_bootstrap, mde_seeds, quantile, seeds_needed,
                                  t_interval, two_sided_p)

HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive at this size"
#: claim 2's margin: the MoE may beat its equal-total twin by up to this fraction of the twin's value
#: and the claim ("dense as good or better") still holds
EQUIVALENCE_MARGIN = 0.01
#: the margins claims judge by, as fractions of the twin's value (claims 1, 3 and 5: boundary 0, no
#: margin); engine parity flags a mean difference beyond the smallest of them
MARGINS = {"2": EQUIVALENCE_MARGIN, "9": QUANT_MARGIN}
HELDOUT = re.compile(r"_heldout_(seen|unseen)$")


def decide(lo: float, hi: float, boundary: float = 0.0) -> str:
    """The verdict of an advantage interval [lo, hi] against the claim's boundary."""
    if lo > boundary:
        return HOLDS
    if hi < boundary:
        return DOES_NOT_HOLD
    return INCONCLUSIVE


@dataclass
class Evidence:
    """An advantage (positive favours the claim) with its interval and where the interval came from."""

    mean: float
    lo: float | None
    hi: float | None
    source: str              # "seeds" (t over per-seed differences) | "bootstrap" (documents) | "none"
    n: int                   # seeds, or documents for the bootstrap
    per_seed: tuple = ()     # advantage of each seed
    seeds: tuple = ()        # the seeds' labels, same order
    sd: float | None = None  # sd of the per-seed advantages
    why_none: str = ""       # source "none": why there is no interval

    @property
    def df(self) -> int | None:
        """Degrees of freedom of the interval: n − 1 over seeds; None (normal) for the bootstrap."""
        return self.n - 1 if self.source == "seeds" else None

    def at_level(self, level: float) -> tuple[float | None, float | None]:
        """The interval widened (or narrowed) from 95% to ``level``: each side's half-width scaled by
        the quantile ratio (t on n − 1 df over seeds, normal for the bootstrap), so an asymmetric
        bootstrap interval keeps its shape."""
        if self.lo is None or self.hi is None:
            return None, None
        f = quantile(level, self.df) / quantile(0.95, self.df)
        return self.mean - (self.mean - self.lo) * f, self.mean + (self.hi - self.mean) * f

    def p_value(self, boundary: float = 0.0) -> float:
        """Two-sided p of "the advantage equals the boundary", from the 95% interval's side that faces
        the boundary (t over seeds, normal for the bootstrap); 1 without an interval."""
        if self.lo is None or self.hi is None or self.mean == boundary:
            return 1.0
        half = (self.mean - self.lo) if self.mean > boundary else (self.hi - self.mean)
        se = half / quantile(0.95, self.df)
        if se <= 0:
            return 0.0
        return two_sided_p((self.mean - boundary) / se, self.df)


def evidence(row: PairRow, sign: float) -> Evidence:
    """A pair row (difference = first side − second side) oriented by ``sign`` (+1 / −1)."""
    per_seed = tuple(sign * d for d in row.per_seed)
    variants = row.seed_variants or tuple(a for a, _ in row.pair.seeds[: len(per_seed)])
    labels = tuple(str(split_seed(a)[1]) for a in variants)
    ci = t_interval(per_seed)
    if ci is not None:
        return Evidence(ci.mean, ci.lo, ci.hi, "seeds", ci.n, per_seed, labels, ci.sd)
    if isinstance(row.diff, Diff):
        lo, hi = sorted((sign * row.diff.lo, sign * row.diff.hi))
        return Evidence(sign * row.diff.mean, lo, hi, "bootstrap", row.diff.n, per_seed, labels)
    mean = sign * (row.moe - row.dense)
    return Evidence(mean, None, None, "none", len(per_seed), per_seed, labels,
                    why_none=row.diff if isinstance(row.diff, str) else "no interval")


@dataclass
class Power:
    """What the run could detect, and what detecting the observed difference would take."""

    mde: float | None
    effect: float                 # distance of the observed advantage from the boundary
    more_seeds: int | None = None
    more_docs: int | None = None
    note: str = ""


def power(ev: Evidence, boundary: float = 0.0) -> Power:
    effect = abs(ev.mean - boundary)
    if ev.source == "seeds":
        need = seeds_needed(effect, ev.sd or 0.0)
        return Power(mde_seeds(ev.sd or 0.0, ev.n), effect, None if need is None else max(0, need - ev.n))
    if ev.source == "bootstrap":
        need = docs_needed(effect, ev.n, ev.lo, ev.hi)
        return Power(mde_bootstrap(ev.lo, ev.hi), effect, more_docs=None if need is None else max(0, need - ev.n),
                     note="one seed: the interval covers the evaluation documents, not training noise")
    return Power(None, effect, note=ev.why_none)


@dataclass
class Verdict:
    claim: str
    subject: str              # what is compared, e.g. "moe vs dense-active"
    task: str
    metric: str
    verdict: str
    evidence: Evidence
    boundary: float = 0.0
    power: Power | None = None
    disagree: list = field(default_factory=list)   # [(seed label, advantage)] against the mean's sign
    regimes: list = field(default_factory=list)    # [Regime]
    sweep: dict = field(default_factory=dict)
    values: tuple = ()        # (claim side mean, other side mean) of the metric
    extra: dict = field(default_factory=dict)      # claim-specific figures (cost per token, accuracy, ...)
    variants: tuple = ()      # every variant the comparison read (both sides, every seed)
    # multiplicity (set by holm_family; until then the raw figures)
    raw_verdict: str = ""     # the verdict of the raw 95% interval
    adjusted: tuple = (None, None)  # the Holm-adjusted interval (lo, hi)
    level: float = 0.95       # its confidence level
    family: int = 1           # comparisons in the claim's family
    p: float | None = None    # two-sided p against the boundary

    @property
    def adj_lo(self):
        return self.adjusted[0]

    @property
    def adj_hi(self):
        return self.adjusted[1]


def _disagree(ev: Evidence) -> list:
    if len(ev.per_seed) < 2 or ev.mean == 0:
        return []
    return [(s, a) for s, a in zip(ev.seeds, ev.per_seed) if a != 0 and (a > 0) != (ev.mean > 0)]


def judge(claim: str, row: PairRow, claim_first: bool, boundary: float, subject: str, run: Run,
          **extra) -> Verdict:
    """A verdict from one pair row (difference = first side − second side); ``claim_first``: the
    claim favours the row's first side (the MoE, or the alternative routing)."""
    sign = (-1.0 if run.lower_is_better(row.task, row.metric) else 1.0) * (1.0 if claim_first else -1.0)
    ev = evidence(row, sign)
    verdict = decide(ev.lo, ev.hi, boundary) if ev.lo is not None else INCONCLUSIVE
    regimes = [regime_of(run, v) for v in row.pair.seeds[0]]
    values = (row.moe, row.dense) if claim_first else (row.dense, row.moe)
    return Verdict(claim, subject, row.task, row.metric, verdict, ev, boundary,
                   power(ev, boundary) if verdict == INCONCLUSIVE else None, _disagree(ev),
                   [r for r in regimes if r is not None], row.pair.sweep, values, extra,
                   tuple(v for pair in row.pair.seeds for v in pair), raw_verdict=verdict,
                   adjusted=(ev.lo, ev.hi))


def holm_family(verdicts: list[Verdict], alpha: float = ALPHA) -> list[Verdict]:
    """Judge one claim's comparisons as a family under Holm's step-down (:func:`stats.holm_levels`).

    Each verdict keeps its raw decision in ``raw_verdict``; ``verdict`` becomes the decision of the
    adjusted interval (``adjusted``, at ``level``): holds / does not hold only where Holm rejects.
    """
    ps = [v.evidence.p_value(v.boundary) for v in verdicts]
    for v, p, (level, rejected) in zip(verdicts, ps, holm_levels(ps, alpha)):
        v.raw_verdict = v.raw_verdict or v.verdict
        v.p, v.level, v.family = p, level, len(verdicts)
        v.adjusted = v.evidence.at_level(level)
        lo, hi = v.adjusted
        v.verdict = decide(lo, hi, v.boundary) if rejected and lo is not None else INCONCLUSIVE
        if v.verdict == INCONCLUSIVE and v.power is None:
            v.power = power(v.evidence, v.boundary)
    return verdicts


# ---- the run's answer tasks -----------------------------------------------------------------
def heldout_tasks(run: Run) -> list[str]:
    """``*_heldout_seen`` then ``*_heldout_unseen`` tasks, in run order."""
    tasks = [t for t in run.tasks() if HELDOUT.search(t)]
    return sorted(tasks, key=lambda t: (HELDOUT.search(t).group(1) != "seen", tasks.index(t)))


def _metric(run: Run, task: str, preferred: str) -> str | None:
    names = run.task_metrics(task)
    return preferred if preferred in names else (names[0] if names else None)


def _row(run: Run, pair: ModelPair, task: str, metric: str) -> PairRow | None:
    cell = lambda v: (run.metrics(v).get(task, {}).get(metric), task_samples(run, v, task))  # noqa: E731
    return compare_pair(pair, task, metric, cell)


def _curve_row(run: Run, pair: ModelPair, kind: str) -> PairRow | None:
    """A pair row from the last point of each seed's held-out curve (no documents: seeds only)."""
    def final(v):
        pts = points(heldout_curve(run, v), kind)
        return (pts[-1][1] if pts else None), []
    return compare_pair(pair, f"train.heldout_curve ({kind})", "loss", final)


def _label(pair: ModelPair) -> str:
    point = sweep_label(pair.sweep)
    return f"{pair.moe} vs {pair.dense}" + (f" at {point}" if point else "")


def _loss_rows(run: Run, pair: ModelPair) -> list[PairRow]:
    """Held-out rows of a pair: the held-out tasks, else the held-out curves' final points."""
    rows = []
    for task in heldout_tasks(run):
        metric = _metric(run, task, "bits_per_byte")
        row = _row(run, pair, task, metric) if metric else None
        if row is not None:
            rows.append(row)
    if not rows:
        rows = [r for r in (_curve_row(run, pair, k) for k in KINDS) if r is not None]
    return rows


def _tokens(run: Run, variant: str):
    t = (run.training(variant) or {}).get("tokens")
    return t if isinstance(t, (int, float)) else None


# ---- claims ---------------------------------------------------------------------------------
def claim1(run: Run) -> list[Verdict]:
    out = []
    for pair in model_pairs(run, native_only=True):
        if pair.kind != "active":
            continue
        same = {(_tokens(run, a), _tokens(run, b)) for a, b in pair.seeds}
        unequal = [x for x in same if x[0] != x[1] and None not in x]
        for row in _loss_rows(run, pair):
            out.append(judge("1", row, True, 0.0, _label(pair), run,
                             unequal_tokens=unequal))
    return out


def flops_per_token(run: Run, variant: str) -> tuple[float | None, str]:
    fpt = (run.training(variant) or {}).get("flops_per_token")
    if isinstance(fpt, (int, float)) and fpt > 0:
        return float(fpt), "training FLOPs per token"
    active = run.params(variant).get("active")
    return (6.0 * active, "6 × active params") if isinstance(active, (int, float)) and active > 0 else (None, "")


def claim2(run: Run, margin: float = EQUIVALENCE_MARGIN) -> list[Verdict]:
    out = []
    for pair in model_pairs(run, native_only=True):
        if pair.kind != "total":
            continue
        moe_v, dense_v = pair.seeds[0]
        (f_moe, how), (f_dense, _) = flops_per_token(run, moe_v), flops_per_token(run, dense_v)
        cost = {"cost_ratio": f_dense / f_moe if f_moe and f_dense else None, "cost_from": how,
                "flops_moe": f_moe, "flops_dense": f_dense, "margin_rel": margin}
        for row in _loss_rows(run, pair):
            bound = -margin * abs(row.dense)
            out.append(judge("2", row, False, bound, _label(pair), run,
                             margin=abs(bound), **cost))
    return out


def _tail_verdicts(run: Run, key: str, kind: str, moe_more: bool) -> list[Verdict]:
    """Tail-bucket knowledge of each equal-``kind`` pair (``<group>_values_tail`` bits, else accuracy),
    judged as ``key``; ``moe_more``: the advantage is MoE − twin (else twin − MoE)."""
    groups = values_groups(run) or [g for g in bucket_groups(run) if g.form == "tasks"]
    out = []
    for g in groups:
        task = g.tasks.get("tail")
        if task is None:
            continue
        metric = "bits" if "bits" in run.task_metrics(task) else _metric(run, task, "acc")
        if metric is None:
            continue
        for pair in model_pairs(run, native_only=True):
            row = _row(run, pair, task, metric) if pair.kind == kind else None
            if row is None:
                continue
            extra = {"kind": pair.kind}
            if metric != "acc" and "acc" in run.task_metrics(task):
                acc = _row(run, pair, task, "acc")
                extra["acc"] = (acc.moe, acc.dense) if acc else None
            out.append(judge(key, row, moe_more, 0.0, _label(pair), run, **extra))
    return out


def claim3(run: Run) -> list[Verdict]:
    """Claim 3 on equal-active pairs only: the MoE's tail-bucket knowledge minus its twin's."""
    return _tail_verdicts(run, "3", "active", True)


def claim3_total(run: Run) -> list[Verdict]:
    """Claim 3's source at equal total parameters: the twin's tail-bucket knowledge minus the MoE's
    (positive: the MoE stores less, as Allen-Zhu & Li predict)."""
    return _tail_verdicts(run, "3t", "total", False)


def strategy_role(run: Run, variant: str, native: str) -> str:
    """What a routing strategy is to claim 5: "random", "top-k at half k", "pruned", or its label."""
    routing = run.spec(variant).get("routing") or {}
    name, params = routing.get("name"), routing.get("params") or {}
    if name == "random":
        return "random"
    if name == "prune":
        return "pruned"
    k = run.params(native).get("experts_per_token") or (run.spec(native).get("build") or {}).get(
        "config", {}).get("num_experts_per_tok")
    if name == "topk" and isinstance(k, (int, float)) and params.get("k") == max(1, int(k) // 2):
        return "top-k at half k"
    return run.routing_name(variant)


def claim5(run: Run) -> list[Verdict]:
    out = []
    for pair in routing_pairs(run):
        alt, native = pair.seeds[0]
        role = strategy_role(run, alt, native)
        # held-out loss where the run has it, else every (non-bucket) task of the run on its first metric
        tasks = heldout_tasks(run)[:1] or [t for t in run.tasks() if t not in member_tasks(run)]
        rows = []
        for task in tasks:
            metric = _metric(run, task, "bits_per_byte") if task in heldout_tasks(run) else primary_metric(run, task)
            rows.append(_row(run, pair, task, metric) if metric else None)
        if not any(rows):
            rows = [_curve_row(run, pair, "seen")]
        for row in (r for r in rows if r is not None):
            point = sweep_label(pair.sweep)
            subject = f"{pair.dense} (native) vs {role}" + (f" at {point}" if point else "")
            out.append(judge("5", row, False, 0.0, subject, run,
                             role=role, strategy=run.routing_name(alt)))
    return out


def claim9(run: Run) -> list[Verdict]:
    """Each MoE and twin at an inexact engine setting, per task: advantage = the twin's quality lost
    against its exact build minus the MoE's (a row whose sides are the two changes, MoE first)."""
    out = []
    for c in quant_comparisons(run):
        v = judge("9", c.row, True, -c.margin, c.subject, run, kind=c.row.pair.kind, setting=c.setting,
                  margin=c.margin, margin_rel=QUANT_MARGIN)
        v.variants += tuple(x for pair in c.references for x in pair)
        out.append(v)
    return out


#: claim -> (statement, how to compute its verdicts, short name)
CLAIMS = {"1": ("At equal active parameters the MoE reaches a lower held-out loss at the same tokens", claim1,
                "equal active"),
          "2": ("At equal total parameters the dense twin is as good or better, at a higher cost per token", claim2,
                "equal total"),
          "3": ("The MoE stores more long-tail (tail-bucket) knowledge than its equal-active dense twin", claim3,
                "long-tail knowledge"),
          "5": ("The trained router beats top-k at half k, random routing and pruning", claim5, "router"),
          "9": ("An MoE loses no more to quantization than its dense twins", claim9, "quantization")}


#: what a claim's own source predicts and a run can check beside the claim, never inside its Holm family
#: (each is a family of its own): key -> (statement, how to compute its verdicts, short name, the claim)
PREDICTIONS = {"3t": ("At equal total parameters the MoE stores less long-tail knowledge, as the paper predicts "
                      "(Allen-Zhu & Li, arXiv 2404.05405: 1.3–1.5× fewer bits per parameter)", claim3_total,
                      "at equal total parameters the MoE stores less, as the paper predicts", "3")}


def short_name(key: str) -> str:
    """A claim's or a prediction's short name."""
    return (CLAIMS.get(key) or PREDICTIONS[key])[2]


def comparisons(key: str):
    """How to compute a claim's or a prediction's verdicts (unfiltered, before Holm)."""
    return (CLAIMS.get(key) or PREDICTIONS[key])[1]


def untrained_variants(run: Run) -> list[str]:
    """Variants whose build has random weights: made from a config and never trained."""
    return [v for v in run.variants if run.untrained(v)]


def all_verdicts(run: Run) -> dict[str, list[Verdict]]:
    """{claim: its verdicts} for claims 1, 2, 3, 5 and 9 ([] where the run cannot speak to a claim), each
    claim followed by the predictions that sit beside it (``PREDICTIONS``: "3t" after "3").

    A comparison that reads an untrained build (random weights) gets no verdict; each claim's
    remaining comparisons are one family under Holm's step-down (:func:`holm_family`), and each
    prediction's another, apart from its claim's.
    """
    untrained = set(untrained_variants(run))
    out = {}
    for c in CLAIMS:
        for key in (c, *(k for k, p in PREDICTIONS.items() if p[3] == c)):
            out[key] = holm_family(judged(comparisons(key)(run), untrained))
    return out


def judged(verdicts: list[Verdict], untrained: set[str]) -> list[Verdict]:
    """The comparisons that get a verdict: those reading no untrained build (``untrained``: their
    variants). One untrained variant in a trained run drops its own comparisons, never the others."""
    return [v for v in verdicts if not any(x in untrained for x in v.variants)]


def overall(verdicts: list[Verdict]) -> str | None:
    """One word for a claim over its verdicts: all the same, that; mixed, "mixed"; none, None."""
    words = {v.verdict for v in verdicts}
    if not words:
        return None
    return words.pop() if len(words) == 1 else "mixed"

