"""Quantization as an axis: what each build loses to an inexact engine setting, what it gains in
speed, memory and file size, and an MoE's loss beside its dense twins' (claim 9). Pure; torch-free.

An engine setting is *exact* when the engine computes the build's own weights
(``moe_schema.engines.EngineSpec.exact``: llama.cpp with f32 weights and an f32 KV cache); every other
setting (q8_0, q4_0, an f16 KV cache) is an approximation. Engine parity (``harness.report.parity``)
holds exact settings to its tolerance and leaves the others out; they are measured here instead.

- **references**: an inexact variant's reference is the same build (the variant spec without its name
  and its engine's parameters) on the same engine at an exact setting; of several, the one whose
  engine parameters differ from the variant's in the fewest keys (llama.cpp's ``threads`` and ``n_ctx``
  stay equal, ``quant`` and ``kv_cache`` differ). A variant without one has no loss and is named.
- **loss** per task: the task's metric (``bits_per_byte`` where the task has it, else its first main
  metric: a multiple-choice task's ``acc``) lost against the reference, per document, as a paired
  difference over the documents both answered with its 95% bootstrap CI
  (``harness.report.bootstrap.paired_diff``; a perplexity's aggregate recomputed per resample).
  Oriented so that positive is quality lost: reference − quantized for a higher-is-better metric,
  quantized − reference for a loss. A NaN per-document value gives no interval, and says so.
- **footprint** per variant: decode and prompt-processing (prefill) tokens/s from the throughput probe
  (else latency) at its smallest batch (decode at the largest context probed, prefill at the longest
  prompt), the memory probe's largest ``peak_bytes``, and the GGUF file's size and bits per weight
  (``build.gguf`` of the variant's results).
- **claim 9** (``comparisons``): for each MoE and dense twin (``harness.report.seeds.model_pairs``: equal
  active and equal total, each its own comparison, pairs forming within one engine label and so within
  one quantization) at an inexact setting, the twin's loss minus the MoE's on the same documents: a
  difference of paired differences. Its bootstrap is ``seeded_paired_diff`` on the four sample lists
  as two "seeds", ``[MoE quantized, twin exact]`` against ``[MoE exact, twin quantized]``: the mean over
  those two of (first − second) is half the difference of the two changes, with one resampling of
  documents shared by all four, for per-document means and for aggregates (perplexities) alike. It is
  handed to ``verdicts`` as a ``PairRow`` whose sides are the MoE's and the twin's change (quantized −
  exact, metric units), judged against −``QUANT_MARGIN`` × |the twin's exact value|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from harness.report.bootstrap import Diff, paired_diff, seeded_paired_diff
from harness.report.buckets import main_metrics, member_tasks, task_samples
from harness.report.pairdiff import PairRow, no_ci_reason
from harness.report.run import Run
from harness.report.seeds import ModelPair, mean_sd, model_pairs, split_seed
from harness.report.stats import t_interval
from moe_schema.engines import engine_name, get
from moe_schema.hashing import canonical_json
from moe_schema.registry import UnknownName

#: claim 9's margin, chosen as claim 2's (``verdicts.EQUIVALENCE_MARGIN``): the MoE may lose more to
#: quantization than its twin by up to this fraction of the twin's exact (f32) value and the claim
#: ("no more than its twins") still holds
QUANT_MARGIN = 0.01


# ---- exact settings and their references ------------------------------------------------------
def engine_params(run: Run, variant: str) -> dict:
    """The parameters of the engine a variant ran on, as its spec records them ({} for none)."""
    engine = run.spec(variant).get("engine")
    params = engine.get("params") if isinstance(engine, dict) else None
    return params if isinstance(params, dict) else {}


def exact(run: Run, variant: str) -> bool:
    """Whether the variant's engine setting computes the build's own weights (``EngineSpec.exact``).
    An engine this machine does not know counts as exact: held to the parity tolerance, never excused."""
    try:
        spec = get(engine_name(run.spec(variant)))
    except UnknownName:
        return True
    return bool(spec.exact(engine_params(run, variant)))


def _build_key(run: Run, variant: str) -> str:
    """The same build on the same engine: the variant spec without its name and its engine's parameters."""
    spec = {k: x for k, x in run.spec(variant).items() if k not in ("name", "engine")}
    return canonical_json({**spec, "engine": engine_name(run.spec(variant))})


def _differing(a: dict, b: dict) -> list[str]:
    return [k for k in dict.fromkeys([*a, *b]) if a.get(k) != b.get(k)]


def groups(run: Run) -> list[list[str]]:
    """Each build on one engine at two or more engine settings, one of them inexact: its variants
    (read-only: cached on the run, as its metrics are)."""
    if ("quant_groups",) not in run._memo:
        run._memo[("quant_groups",)] = _groups(run)
    return run._memo[("quant_groups",)]


def _groups(run: Run) -> list[list[str]]:
    by_build: dict[str, list[str]] = {}
    for v in run.variants:
        if run.spec(v):
            by_build.setdefault(_build_key(run, v), []).append(v)
    return [vs for vs in by_build.values()
            if len({canonical_json(engine_params(run, v)) for v in vs}) > 1 and not all(exact(run, v) for v in vs)]


def references(run: Run) -> dict[str, str | None]:
    """{inexact variant: its build's exact variant on the same engine, or None where the run has none}."""
    out: dict[str, str | None] = {}
    for members in groups(run):
        exacts = [v for v in members if exact(run, v)]
        for v in members:
            if not exact(run, v):
                p = engine_params(run, v)
                out[v] = min(exacts, key=lambda r: len(_differing(p, engine_params(run, r))), default=None)
    return out


def setting(run: Run, variant: str) -> str:
    """The engine setting that sets a variant apart within its build: the parameters that vary among
    the build's variants on that engine (``quant=q8_0``), or all of them outside such a group."""
    params = engine_params(run, variant)
    group = next((g for g in groups(run) if variant in g), [variant])
    keys = [k for k in params if len({canonical_json(engine_params(run, v).get(k)) for v in group}) > 1]
    return ",".join(f"{k}={params[k]}" for k in keys or params) or "-"


def missing_reference_notes(run: Run) -> list[str]:
    """One line per inexact variant without an exact variant of its build on the same engine."""
    return [f"{v}: no exact setting of the same build on {engine_name(run.spec(v))} in this run (such as "
            f"f32 weights with an f32 KV cache): nothing to measure its quantization loss against, so it has no "
            f"loss and no claim-9 comparison." for v, ref in references(run).items() if ref is None]


# ---- quality lost ---------------------------------------------------------------------------------
def quant_metric(run: Run, task: str) -> str | None:
    """The metric a task's quantization loss is measured in: ``bits_per_byte`` where the task has it
    (a held-out loss), else its first main metric (``acc`` for multiple choice)."""
    names = main_metrics(run, task)
    return "bits_per_byte" if "bits_per_byte" in names else (names[0] if names else None)


def quant_tasks(run: Run) -> list[tuple[str, str]]:
    """(task, metric) of every task but the per-bucket ones, in run order; a group with no documents of
    its own (lm-eval's aggregate of tasks listed beside it, such as longtail_heldout over _seen and
    _unseen) is left out: its members are compared document by document, and it would count them twice."""
    hidden = member_tasks(run)
    return [(t, m) for t in run.tasks() if t not in hidden and (m := quant_metric(run, t))
            and any(task_samples(run, v, t) for v in run.variants)]


def _is_nan(value) -> bool:
    if isinstance(value, (list, tuple)):
        return any(_is_nan(x) for x in value)
    return isinstance(value, float) and math.isnan(value)


def nan_documents(samples: list, metric: str) -> int:
    """Documents whose per-document ``metric`` is NaN (a number, or a [loglikelihood, weight] pair)."""
    return sum(1 for s in samples if isinstance(s, dict) and _is_nan(s.get(metric)))


def _nan_reason(run: Run, variants, task: str, metric: str) -> str:
    """Why there is no interval where a side has NaN per-document values; "" where none has."""
    found = [(v, n) for v in dict.fromkeys(variants) if (n := nan_documents(task_samples(run, v, task), metric))]
    return "; ".join(f"{v}: NaN {metric} on {n} document(s)" for v, n in found)


def _scaled(d: Diff, k: float) -> Diff:
    """``d`` times ``k`` (a negative ``k`` swaps the interval's ends)."""
    lo, hi = sorted((k * d.lo, k * d.hi))
    return replace(d, mean=k * d.mean, lo=lo, hi=hi)


def _value(run: Run, variant: str, task: str, metric: str) -> float | None:
    x = run.metrics(variant).get(task, {}).get(metric)
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


@dataclass
class Loss:
    """What one variant lost to its engine setting on one task, against its exact reference."""

    variant: str
    reference: str
    task: str
    metric: str
    value: float | None       # the task's metric, quantized
    ref_value: float | None   # and exact
    diff: Diff | None         # quality lost (positive: worse than the reference), 95% bootstrap CI
    why: str = ""             # no interval: why


def loss(run: Run, variant: str, reference: str, task: str, metric: str, seed: int = 0) -> Loss:
    a, b = task_samples(run, variant, task), task_samples(run, reference, task)
    orient = 1.0 if run.lower_is_better(task, metric) else -1.0
    out = Loss(variant, reference, task, metric, _value(run, variant, task, metric),
               _value(run, reference, task, metric), None)
    out.why = _nan_reason(run, (variant, reference), task, metric)
    if not out.why:
        d = paired_diff(a, b, metric, seed=seed)
        if d is None:
            out.why = no_ci_reason(a, b, metric)
        else:
            out.diff = _scaled(d, orient)
    return out


def losses(run: Run, seed: int = 0) -> dict[str, list[Loss]]:
    """{inexact variant with a reference: its loss on each task}."""
    tasks = quant_tasks(run)
    return {v: [loss(run, v, ref, t, m, seed) for t, m in tasks if task_samples(run, v, t) or _value(run, v, t, m)
                is not None] for v, ref in references(run).items() if ref is not None}


# ---- speed, memory and size -----------------------------------------------------------------------
def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _rows(run: Run, variant: str, name: str) -> list[dict]:
    return [r for p in (p for v, p in run.probes(variant) if p.get("name") == name)
            for r in p.get("rows") or [] if isinstance(r, dict)]


def _tokens_per_s(run: Run, variant: str, phase: str) -> float | None:
    """``phase`` tokens/s at the smallest batch: decode at the largest context, prefill at the longest
    prompt; the throughput probe's rows, else the latency probe's."""
    length = "context" if phase == "decode" else "prompt_length"
    for name in ("throughput", "latency"):
        rows = [r for r in _rows(run, variant, name) if r.get("phase") == phase and _num(r.get("tokens_per_s"))]
        if rows:
            best = min(rows, key=lambda r: (r.get("batch_size") or 1, -(r.get(length) or 0)))
            return float(best["tokens_per_s"])
    return None


@dataclass
class Footprint:
    """One variant's speed, memory and file: None where the run did not measure it."""

    decode: float | None = None           # tokens/s
    prefill: float | None = None          # tokens/s (prompt processing)
    peak_bytes: float | None = None       # the memory probe's largest peak
    file_bytes: float | None = None       # the GGUF file (build.gguf.bytes)
    bits_per_weight: float | None = None  # build.gguf.bits_per_weight
    quant: str | None = None              # build.gguf.quant


def gguf(run: Run, variant: str) -> dict:
    """``build.gguf`` of the variant's results (evaluate first): {} on engines that write no GGUF."""
    for kind in ("evaluate", "probe", "describe"):
        for r in run.ok(kind, variant):
            found = (r.get("build") or {}).get("gguf") if isinstance(r.get("build"), dict) else None
            if isinstance(found, dict):
                return found
    return {}


def footprint(run: Run, variant: str) -> Footprint:
    peaks = [r["peak_bytes"] for r in _rows(run, variant, "memory") if _num(r.get("peak_bytes"))]
    g = gguf(run, variant)
    return Footprint(_tokens_per_s(run, variant, "decode"), _tokens_per_s(run, variant, "prefill"),
                     max(peaks) if peaks else None, g.get("bytes") if _num(g.get("bytes")) else None,
                     g.get("bits_per_weight") if _num(g.get("bits_per_weight")) else None,
                     g.get("quant") if isinstance(g.get("quant"), str) else None)


# ---- claim 9: the MoE's loss beside its twin's ------------------------------------------------------
@dataclass
class Comparison:
    """One MoE and one dense twin at one inexact setting, on one task: the row ``verdicts.claim9``
    judges (``row.moe`` / ``row.dense``: each side's change, quantized − exact, in metric units;
    ``row.diff``: the MoE's change minus the twin's, per document, 95% bootstrap CI)."""

    row: PairRow
    setting: str
    references: list = field(default_factory=list)  # (MoE exact, twin exact), seed by seed
    margin: float = 0.0                            # QUANT_MARGIN × |the twin's exact value|

    @property
    def subject(self) -> str:
        p = self.row.pair
        refs = ", ".join(dict.fromkeys(split_seed(x)[0] for pair in self.references[:1] for x in pair))
        return f"{p.moe} vs {p.dense} (equal {p.kind}; each against its exact {refs})"


def _change_diff(run: Run, used: list, task: str, metric: str, seed: int) -> Diff | str:
    """The MoE's change minus the twin's over the documents all four variants of every seed answered:
    ``seeded_paired_diff`` of [MoE quantized, twin exact] against [MoE exact, twin quantized], doubled."""
    why = _nan_reason(run, [x for u in used for x in u], task, metric)
    if why:
        return why
    s = lambda v: task_samples(run, v, task)  # noqa: E731
    first = [s(m) for m, _, _, _ in used] + [s(df) for _, _, _, df in used]
    second = [s(mf) for _, _, mf, _ in used] + [s(d) for _, d, _, _ in used]
    d = seeded_paired_diff(first, second, metric, seed=seed)
    if d is None:
        return no_ci_reason(first[0], second[0], metric) if any(not x for x in first + second) \
            else "no document answered by all four variants"
    return _scaled(d, 2.0)


def comparisons(run: Run, seed: int = 0) -> list[Comparison]:
    """Every (MoE, twin) pair at an inexact setting whose four variants (each side quantized and exact,
    every seed) have the task's value: one comparison per task. A pair whose twin (or MoE) lacks an
    exact reference has none (``missing_reference_notes`` names it)."""
    refs = references(run)
    out = []
    for pair in model_pairs(run, native_only=True):
        seeds = [(m, d, refs.get(m), refs.get(d)) for m, d in pair.seeds if m in refs and d in refs]
        seeds = [s for s in seeds if s[2] is not None and s[3] is not None]
        if not seeds:
            continue
        for task, metric in quant_tasks(run):
            used, c_moe, c_twin, base = [], [], [], []
            for m, d, mf, df in seeds:
                vals = [_value(run, x, task, metric) for x in (m, d, mf, df)]
                if all(x is not None for x in vals):
                    used.append((m, d, mf, df))
                    c_moe.append(vals[0] - vals[2])
                    c_twin.append(vals[1] - vals[3])
                    base.append(vals[3])
            if not used:
                continue
            per_seed = tuple(a - b for a, b in zip(c_moe, c_twin))
            row = PairRow(ModelPair(pair.kind, pair.moe, pair.dense, pair.ratio, [(m, d) for m, d, _, _ in used],
                                    dict(pair.sweep)),
                          task, metric, mean_sd(c_moe)[0], mean_sd(c_twin)[0],
                          _change_diff(run, used, task, metric, seed), None, len(used), per_seed,
                          t_interval(per_seed), tuple(m for m, _, _, _ in used))
            out.append(Comparison(row, setting(run, used[0][0]), [(mf, df) for _, _, mf, df in used],
                                  QUANT_MARGIN * abs(mean_sd(base)[0])))
    return out
