"""Engine parity: one build evaluated on two engines (transformers and vLLM), document by document.

Variants that differ only in their engine (same build, routing, dtype, loading options: the variant
spec without ``name`` and ``engine``) form a parity group; each other engine is set against the
transformers variant (else the first). A variant at an inexact engine setting (``EngineSpec.exact``
False: llama.cpp's quantized weights or f16 KV cache) is in no group: it is not held to a tolerance,
its error is measured as quantization loss instead (``harness.report.quant``). Per task:

- **loglikelihood**: every request's loglikelihood (``samples[].loglikelihoods``: one per choice of
  a multiple-choice document, one per document of a perplexity task) on both engines; the paired
  per-document difference (the mean over a document's requests, other engine − reference) with its
  95% CI from the paired bootstrap over documents (``harness.report.bootstrap.paired_bootstrap``),
  and the largest |Δ| of any request (NaN where any request's is);
- **answers**: multiple-choice documents whose chosen answer (the argmax over the choices'
  loglikelihoods, what lm-eval's ``acc`` scores) is the same on both engines, out of N;
- **generations**: documents whose generated text (``samples[].responses``) is identical, out of N;
- **metrics**: each task metric's paired difference over documents with its 95% bootstrap CI
  (``paired_diff``: a mean, or a perplexity's aggregate), against the smallest margin a claim judges by;
- **routing**: MoE layers whose telemetry (tokens per expert) is equal on both engines, out of L.
  Both engines count the same tokens (``workers.evaluation.lm``): every token each request feeds the
  model as if it ran alone, so equal routing shows as equal counts; where the totals differ (a
  generation stopped at another step, a request cut to another window) both are shown.

Generations are compared as greedy (lm-eval's default; the samples do not record a task's sampling
settings), so a task that samples differs and is flagged too.

Flagged in the report's first lines (the check lm-eval#3712 and vllm#31202 lacked), in every dtype:
a request beyond the dtype's tolerance (``TOLERANCE``); a NaN or infinite loglikelihood on either
engine; a document whose chosen answer differs; a greedy generation that differs (counted); a metric's
difference whose CI lies wholly beyond ``MARGIN`` of the reference's value. The tolerances alone
would pass changed answers in float16 and bfloat16 (a multiple-choice allowance of 0.8-2.4 nats);
the last three checks are what makes parity see every changed decision.
"""

from __future__ import annotations

import math

import numpy as np

from harness.report.bootstrap import Diff, paired_bootstrap, paired_diff
from harness.report.quant import exact
from harness.report.run import Run, is_stderr, telemetry
from harness.report.tables import Table, fmt_num
from harness.report.verdicts import MARGINS
from moe_schema.engines import DEFAULT, is_default
from moe_schema.hashing import canonical_json

#: (atol, rtol): a request's loglikelihood on the other engine may differ from the reference's by
#: atol + rtol × |the reference's loglikelihood| nats (numpy's assert_allclose, the reference as
#: "desired"); exactly at the bound passes.
#: float32: the numbers of lm-eval's own parity test of two engines (lm-evaluation-harness,
#: tests/models/test_onnxruntime_parity.py: atol 1e-3 on summed continuation log-probs; rolling
#: perplexity by assert_allclose with rtol 1e-4 and that atol, "rolling sums accumulate over windows,
#: so scale tolerance with magnitude"). A fixed bound does not scale with length: at 1e-6 nats per
#: token a 1,000-token rolling document would exceed 1e-4 nats.
#: float16 / bfloat16 keep 11 / 8 mantissa bits and the engines' kernels round differently at every
#: layer (0.36 nats measured on tiny bfloat16 builds): atol catches a broken engine, not rounding, and
#: rtol is at most the smallest margin a claim judges by (``MARGIN``). Changed answers these bounds
#: would pass are flagged by the decision checks (answers, generations, metrics), in every dtype.
TOLERANCE = {"float32": (1e-3, 1e-4), "float16": (0.0625, 8e-3), "bfloat16": (0.5, 0.01)}
#: a metric difference between engines whose 95% CI lies wholly beyond this fraction of the reference's
#: value is flagged: the smallest margin any claim judges by (claim 2's 1% of the twin's value), so a
#: shift that could move a verdict by its margin is never silent
MARGIN = min(MARGINS.values())
#: how a disagreement opens its line (the card shows these lines)
DISAGREE = "ENGINES DISAGREE"
#: where the float32 numbers come from, said in the report
FLOAT32_SOURCE = ("float32's atol 1e-3 and rtol 1e-4 are those of lm-eval's own parity test of two engines "
                  "(lm-evaluation-harness tests/models/test_onnxruntime_parity.py: atol 1e-3 on summed "
                  "continuation log-probs, rtol 1e-4 on rolling perplexity)")


def engine_of(run: Run, variant: str) -> str:
    """The engine a variant ran on: its spec's ``engine``, else what its results say, else transformers."""
    engine = run.spec(variant).get("engine")
    if isinstance(engine, dict) and isinstance(engine.get("name"), str):
        return engine["name"]
    for r in run.ok(None, variant):
        if isinstance(r.get("engine"), dict) and isinstance(r["engine"].get("name"), str):
            return r["engine"]["name"]
    return DEFAULT


def engine_version(run: Run, variant: str) -> str:
    for r in run.ok(None, variant):
        if isinstance(r.get("engine"), dict) and r["engine"].get("version"):
            return str(r["engine"]["version"])
    return ""


def engines_in(run: Run) -> list[str]:
    return list(dict.fromkeys(engine_of(run, v) for v in run.variants))


def groups(run: Run) -> list[tuple[str, list[str]]]:
    """(reference variant, [the same build's variants on other engines]) for every build evaluated on
    two or more engines; the reference runs on transformers where one does. Inexact engine settings
    (``quant.exact``: quantized weights) are left out."""
    by_build: dict[str, list[str]] = {}
    for v in run.variants:
        spec = run.spec(v)
        if not spec or not run.ok("evaluate", v) or not exact(run, v):
            continue
        what = canonical_json({k: x for k, x in spec.items() if k not in ("name", "engine")})
        by_build.setdefault(what, []).append(v)
    out = []
    for members in by_build.values():
        if len({engine_of(run, v) for v in members}) < 2:
            continue
        ref = next((v for v in members if is_default(engine_of(run, v))), members[0])
        out.append((ref, [v for v in members if v != ref and engine_of(run, v) != engine_of(run, ref)]))
    return out


def _by_doc(samples: list, key: str) -> dict:
    """doc_id → the sample's ``key`` list (``loglikelihoods`` or ``responses``), where it has one."""
    return {s["doc_id"]: s[key] for s in samples
            if isinstance(s, dict) and "doc_id" in s and isinstance(s.get(key), list)}


def _task_routing(run: Run, variant: str, task: str) -> dict | None:
    result = run.evaluation(variant, task)
    return telemetry(result) if result is not None else None


def _preemptions(run: Run, variant: str, task: str) -> int:
    """Requests vLLM preempted and computed again in the variant's evaluation of ``task`` (their
    tokens were routed, and counted, twice)."""
    count = ((run.evaluation(variant, task) or {}).get("eval") or {}).get("preemptions")
    return count if isinstance(count, int) else 0


def _tokens(routing: dict | None) -> int | None:
    """Tokens the telemetry counted (routed through each MoE layer)."""
    tokens = ((routing or {}).get("summary") or {}).get("tokens")
    return tokens if isinstance(tokens, int) else None


def _layers_equal(a: dict | None, b: dict | None) -> tuple[int, int] | None:
    """(layers whose tokens-per-expert counts are equal, layers) or None without telemetry on both."""
    la, lb = (a or {}).get("layers") or [], (b or {}).get("layers") or []
    if not la or not lb:
        return None
    if len(la) != len(lb):
        return 0, max(len(la), len(lb))
    same = sum(1 for x, y in zip(la, lb) if x.get("tokens_per_expert") == y.get("tokens_per_expert"))
    return same, len(la)


def _argmax(values: list) -> int:
    """The chosen answer of a multiple-choice document: the index of its largest loglikelihood."""
    return int(np.argmax(np.asarray(values, dtype=float)))


class Parity:
    """One build, one task, two engines: the figures of one row."""

    def __init__(self, run: Run, ref: str, other: str, task: str, seed: int = 0):
        self.ref, self.other, self.task = ref, other, task
        self.dtype = str(run.spec(ref).get("dtype") or "float32")
        self.atol, self.rtol = TOLERANCE.get(self.dtype, TOLERANCE["bfloat16"])
        a, b = run.samples(other).get(task) or [], run.samples(ref).get(task) or []
        la, lb = _by_doc(a, "loglikelihoods"), _by_doc(b, "loglikelihoods")
        docs = sorted((d for d in set(la) & set(lb) if len(la[d]) == len(lb[d]) and la[d]), key=str)
        self.docs = len(docs)
        self.requests = sum(len(lb[d]) for d in docs)
        self.diff = self.max_abs = self.worst = None
        self.beyond = 0      # documents with a request beyond the tolerance (or not finite)
        self.nonfinite = 0   # documents with a NaN or infinite loglikelihood on either engine
        choice = [d for d in docs if len(lb[d]) > 1]
        self.choice_docs = len(choice)  # multiple-choice documents
        self.flips = sum(1 for d in choice if _argmax(la[d]) != _argmax(lb[d]))
        if docs:
            xa = [np.asarray(la[d], dtype=float) for d in docs]
            xb = [np.asarray(lb[d], dtype=float) for d in docs]
            with np.errstate(invalid="ignore"):  # inf − inf: NaN, a disagreement like any other
                per_req = [x - y for x, y in zip(xa, xb)]
                allowed = [self.atol + self.rtol * np.abs(y) for y in xb]
                # np.max, not Python's max: a NaN anywhere makes the maximum NaN, wherever it stands
                self.max_abs = float(np.max(np.abs(np.concatenate(per_req))))
                # the request closest to (or furthest past) its tolerance: its |Δ| over what it may differ by
                self.worst = float(np.max(np.concatenate([np.abs(x) / t for x, t in zip(per_req, allowed)])))
            self.nonfinite = sum(1 for x, y in zip(xa, xb) if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))))
            self.beyond = sum(1 for x, t in zip(per_req, allowed) if np.any(~(np.abs(x) <= t)))
            if not self.nonfinite:
                self.diff = paired_bootstrap([float(np.mean(x)) for x in xa], [float(np.mean(y)) for y in xb],
                                             seed=seed)
        ga, gb = _by_doc(a, "responses"), _by_doc(b, "responses")
        gdocs = set(ga) & set(gb)
        self.generations = len(gdocs)
        self.identical = sum(1 for d in gdocs if ga[d] == gb[d])
        ra, rb = _task_routing(run, other, task), _task_routing(run, ref, task)
        self.routing = _layers_equal(ra, rb)
        self.routed_tokens = (_tokens(ra), _tokens(rb))
        self.preemptions = _preemptions(run, other, task) + _preemptions(run, ref, task)
        metrics = run.task_metrics(task)
        self.metric = metrics[0] if metrics else None
        self.values = tuple(run.metrics(v).get(task, {}).get(self.metric) for v in (other, ref)) if self.metric \
            else (None, None)
        self.metric_diffs = self._metric_diffs(run, a, b, seed)

    def _metric_diffs(self, run: Run, a: list, b: list, seed: int) -> list[tuple[str, Diff, float]]:
        """(metric, its paired difference other − reference over documents with the 95% bootstrap CI,
        the margin it is held to: ``MARGIN`` × |the reference's value|) for each of the task's metrics
        with per-document values (a perplexity's aggregate recomputed per resample, as the claims'
        intervals are)."""
        out = []
        for metric in run.task_metrics(self.task):
            ref_value = run.metrics(self.ref).get(self.task, {}).get(metric)
            if is_stderr(metric) or not isinstance(ref_value, (int, float)) or not math.isfinite(ref_value):
                continue
            d = paired_diff(a, b, metric, seed=seed)
            if d is not None:
                out.append((metric, d, MARGIN * abs(float(ref_value))))
        return out

    @property
    def shifted(self) -> list[tuple[str, Diff, float]]:
        """The metric differences whose 95% CI lies wholly beyond ± their margin."""
        return [(m, d, bound) for m, d, bound in self.metric_diffs if d.lo > bound or d.hi < -bound]

    @property
    def tolerance(self) -> str:
        return f"{self.atol:g} + {self.rtol:g}·|ll|" if self.rtol else f"{self.atol:g}"

    @property
    def loglikelihood_flag(self) -> bool:
        return self.max_abs is not None and (math.isnan(self.max_abs) or self.beyond > 0 or self.nonfinite > 0)

    @property
    def answer_flag(self) -> bool:
        return self.flips > 0

    @property
    def generation_flag(self) -> bool:
        return self.identical < self.generations

    @property
    def reasons(self) -> list[str]:
        """The table's flag cell: each way the engines disagree."""
        return [word for word, on in (("NaN/INFINITE", self.nonfinite > 0), ("BEYOND TOLERANCE", self.beyond > 0),
                                      ("ANSWERS DIFFER", self.answer_flag),
                                      ("GENERATIONS DIFFER", self.generation_flag),
                                      ("METRIC BEYOND MARGIN", bool(self.shifted))) if on]

    @property
    def flagged(self) -> bool:
        return bool(self.reasons)

    @property
    def compared(self) -> bool:
        return bool(self.docs or self.generations or self.routing)


def parity_rows(run: Run, seed: int = 0) -> list[Parity]:
    out = []
    for ref, others in groups(run):
        tasks = list(run.samples(ref))
        for other in others:
            for task in tasks:
                p = Parity(run, ref, other, task, seed=seed)
                if p.compared:
                    out.append(p)
    return out


def _engine_label(run: Run, variant: str) -> str:
    version = engine_version(run, variant)
    return engine_of(run, variant) + (f" {version}" if version else "")


def _signed(x: float) -> str:
    return f"{x:+.3g}"


def parity_lines(run: Run, rows: list[Parity]) -> list[str]:
    """The sentences opening the report: each way two engines disagree, or that they agree."""
    lines = []
    for p in rows:
        pair = f"{p.other} against {p.ref}, {p.task}"
        if p.nonfinite:
            lines.append(f"{DISAGREE}: {pair}: a NaN or infinite loglikelihood on {p.nonfinite} of {p.docs} "
                         f"documents (on either engine; max |Δ| {fmt_num(p.max_abs, 3)}).")
        if p.beyond:
            lines.append(f"{DISAGREE}: {pair}: loglikelihood max |Δ| {fmt_num(p.max_abs, 3)} is beyond the "
                         f"{p.dtype} tolerance of {p.tolerance} nats ({p.beyond} of {p.docs} documents).")
        if p.answer_flag:
            lines.append(f"{DISAGREE}: {pair}: the chosen answer (argmax over the choices' loglikelihoods) differs "
                         f"on {p.flips} of {p.choice_docs} documents.")
        if p.generation_flag:
            lines.append(f"{DISAGREE}: {pair}: greedy generations differ on {p.generations - p.identical} of "
                         f"{p.generations} documents (they must be identical, in every dtype).")
        for what, d, bound in p.shifted:
            lines.append(f"{DISAGREE}: {pair}: {what} differs by {_signed(d.mean)} [{_signed(d.lo)}, "
                         f"{_signed(d.hi)}] (95% CI over {d.n} documents), wholly beyond ±{bound:.3g}, the "
                         f"{MARGIN:.0%} of the reference's value that claim 2 judges by.")
    if rows and not lines:
        worst = max((p.max_abs for p in rows if p.max_abs is not None), default=None)
        share = max((p.worst for p in rows if p.worst is not None), default=None)
        gens = sum(p.generations for p in rows), sum(p.identical for p in rows)
        choices = sum(p.choice_docs for p in rows)
        tol = ", ".join(sorted({f"{p.dtype} {p.tolerance}" for p in rows}))
        text = f"Engines agree on {len(rows)} build × task comparison(s)"
        if worst is not None:
            text += (f": largest loglikelihood |Δ| {fmt_num(worst, 3)}, at most {share:.1%} of what a request may "
                     f"differ by (tolerance {tol} nats)")
        if choices:
            text += f"; the same answer chosen on {choices} of {choices} multiple-choice documents"
        if gens[0]:
            text += f"; generations identical on {gens[1]} of {gens[0]} documents"
        if any(p.metric_diffs for p in rows):
            text += f"; no metric differs beyond {MARGIN:.0%} of the reference's value"
        lines.append(text + ".")
    return lines


def _routing_cell(p: Parity) -> str:
    if not p.routing:
        return "-"
    cell = f"{p.routing[0]} / {p.routing[1]}"
    a, b = p.routed_tokens
    if p.routing[0] < p.routing[1] and a is not None and b is not None and a != b:
        cell += f" ({a} vs {b} tokens counted"
        if p.preemptions:
            cell += f"; vLLM preempted and recomputed {p.preemptions} request(s), counted again"
        cell += ")"
    return cell


def parity_table(run: Run, rows: list[Parity]) -> Table:
    cols = ["variant", "against", "engines", "task", "dtype", "docs", "requests", "mean Δ loglik", "95% CI",
            "max |Δ|", "tolerance", "answers differ", "generations identical", "routing layers equal", "metric",
            "flag"]
    table = Table("Engine parity", cols, empty="No build was evaluated on two engines.")
    for p in rows:
        ci = f"[{p.diff.lo:+.2e}, {p.diff.hi:+.2e}]" if p.diff is not None else "-"
        metric = "-"
        if p.metric and all(isinstance(x, (int, float)) for x in p.values):
            metric = f"{p.metric} {fmt_num(p.values[0])} vs {fmt_num(p.values[1])}"
        table.rows.append([
            p.other, p.ref, f"{_engine_label(run, p.other)} vs {_engine_label(run, p.ref)}", p.task, p.dtype,
            str(p.docs), str(p.requests), f"{p.diff.mean:+.2e}" if p.diff is not None else "-", ci,
            f"{p.max_abs:.2e}" if p.max_abs is not None else "-", p.tolerance,
            f"{p.flips} / {p.choice_docs}" if p.choice_docs else "-",
            f"{p.identical} / {p.generations}" if p.generations else "-", _routing_cell(p), metric,
            ", ".join(p.reasons)])
    if rows:
        bounds = ", ".join(f"{k} {a:g}" + (f" + {r:g}" if r else "") for k, (a, r) in TOLERANCE.items())
        table.notes.append("Δ: the other engine's loglikelihood minus the reference's, per document (mean over its "
                           "requests), 95% CI by the paired bootstrap over documents; max |Δ| over every request "
                           "(nan where any is). "
                           "A request may differ by atol + rtol × |the reference's loglikelihood| nats: "
                           f"{bounds}; {FLOAT32_SOURCE}; bfloat16's atol catches a broken engine, not rounding (its "
                           "kernels round differently at every layer: 0.36 nats measured on tiny builds), float16's "
                           "is 8 times finer (3 more mantissa bits), and their rtol is at most "
                           f"{MARGIN:.0%}. In every dtype a NaN or infinite loglikelihood, a multiple-choice "
                           "document whose chosen answer (argmax over its choices) differs, a greedy generation "
                           "that differs, and a task metric whose paired difference over documents has its 95% CI "
                           "wholly beyond "
                           f"{MARGIN:.0%} of the reference's value (the smallest margin a claim judges by: claim "
                           "2's) are flagged. Routing: MoE "
                           "layers whose tokens-per-expert counts are equal on both engines. Both count every "
                           "token each request feeds the model, as if it ran alone: a loglikelihood request its "
                           "context and continuation but the last token (a context shared by n requests n "
                           "times), a generation its prompt and its generated tokens but the one it stopped at. "
                           "Where the engines counted different totals (a generation that stopped at another "
                           "step, a request cut to another window, a request vLLM preempted and computed again), both are "
                           "shown.")
    return table


def _native_of(run: Run, variant: str) -> str | None:
    """The same build on the same engine under its native routing (None: the variant is native)."""
    spec = run.spec(variant)
    routing = spec.get("routing") or {}
    if not routing or (routing.get("name") == "native" and not routing.get("params")):
        return None
    want = {k: x for k, x in spec.items() if k not in ("name", "routing")}
    for v in run.variants:
        other = run.spec(v)
        r = other.get("routing") or {"name": "native"}  # None: the checkpoint's own routing
        if r.get("name") == "native" and not r.get("params") and \
                {k: x for k, x in other.items() if k not in ("name", "routing")} == want:
            return v
    return None


def _effect(run: Run, variant: str, native: str, task: str) -> dict:
    """{doc_id: per-request loglikelihood change} of ``variant`` against ``native``, same engine."""
    a, b = (_by_doc(run.samples(v).get(task) or [], "loglikelihoods") for v in (variant, native))
    return {d: np.asarray(a[d], dtype=float) - np.asarray(b[d], dtype=float) for d in set(a) & set(b)
            if len(a[d]) == len(b[d])}


def routing_effect_table(run: Run, rows: list[Parity]) -> Table:
    """Does a routing strategy change the outputs, and the same way on both engines? Per strategy and
    task: its loglikelihood change against native routing on each engine, and how far apart the two
    changes are (per request)."""
    cols = ["variant", "against", "task", "change vs native (reference)", "change vs native (other)",
            "max |difference of changes|", "changes outputs", "same change"]
    table = Table("Routing changes the outputs the same way on both engines", cols,
                  empty="No routing strategy other than native ran on two engines.")
    for p in rows:
        ref_native, other_native = _native_of(run, p.ref), _native_of(run, p.other)
        if ref_native is None or other_native is None:
            continue
        ea, eb = _effect(run, p.ref, ref_native, p.task), _effect(run, p.other, other_native, p.task)
        docs = sorted(set(ea) & set(eb), key=str)
        if not docs:
            continue
        ll = _by_doc(run.samples(p.ref).get(p.task) or [], "loglikelihoods")
        # each change is a difference of two loglikelihoods, each within tolerance: twice the tolerance
        same = all(np.all(np.abs(ea[d] - eb[d]) <= 2 * (p.atol + p.rtol * np.abs(np.asarray(ll[d], dtype=float))))
                   for d in docs)
        gap = max(float(np.max(np.abs(ea[d] - eb[d]))) for d in docs)
        size = max(float(np.max(np.abs(ea[d]))) for d in docs)
        mean = lambda e: float(np.mean([np.mean(e[d]) for d in docs]))  # noqa: E731
        table.rows.append([p.other, p.ref, p.task, f"{mean(ea):+.3e}", f"{mean(eb):+.3e}", f"{gap:.2e}",
                           "yes" if size > p.atol else "no", "yes" if same else "NO"])
    if table.rows:
        table.notes.append("change vs native: the mean per-document loglikelihood change from the same build's "
                           "native routing on the same engine; the same change: on every request the two engines' "
                           "changes differ by at most twice the dtype's tolerance (each change is a difference of "
                           "two loglikelihoods).")
    return table


def parity_flags(run: Run, rows: list[Parity]) -> list[str]:
    """Each engine disagreement among ``rows`` (``parity_rows``), one line each, for the answer card;
    none in a one-engine run or where the engines agree."""
    return [line for line in parity_lines(run, rows) if line.startswith(DISAGREE)]

