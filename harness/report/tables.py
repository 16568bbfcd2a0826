"""The report's tables as plain data (title, columns, rows of strings), shared by Markdown, HTML and text.

Each builder takes a loaded :class:`~harness.report.run.Run` and returns a :class:`Table` whose
``empty`` line says why a section has no rows, so no section vanishes silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.report.run import Run, is_stderr

BUCKETS = ("head", "torso", "tail")
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
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.0f}"


def fmt_num(x, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return str(x)
        return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.{digits}g}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(fmt_num(v, digits) for v in x) + "]"
    if isinstance(x, dict):
        return "{" + ", ".join(f"{k}: {fmt_num(v, digits)}" for k, v in x.items()) + "}"
    return str(x)


def fmt_value(x) -> str:
    """A metric value: 4 decimals, or 4 significant digits when large (perplexities)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return "-"
    return f"{x:.4f}" if abs(x) < 1000 else f"{x:.4g}"


def fmt_metric(value, stderr=None) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    return f"{fmt_value(value)} ± {fmt_value(stderr)}" if isinstance(stderr, (int, float)) else fmt_value(value)


def fmt_diff(d) -> tuple[str, str, str]:
    """(difference, CI, marker) for a bootstrap Diff, or a reason (str) / None when there is none."""
    if d is None or isinstance(d, str):
        return "-", d or "no shared per-document samples", ""
    return f"{d.mean:+.4f}", f"[{d.lo:+.4f}, {d.hi:+.4f}]", "*" if d.significant else ""


def is_bucket_metric(metric: str) -> bool:
    return any(metric.endswith("_" + b) for b in BUCKETS)


def main_metrics(run: Run, task: str) -> list[str]:
    """The task's metrics without the per-bucket ones (those get their own section)."""
    return [m for m in run.task_metrics(task) if not is_bucket_metric(m)]


def primary_metric(run: Run, task: str) -> str | None:
    names = main_metrics(run, task)
    return names[0] if names else None


# ---- load balance --------------------------------------------------------------------------
def load_balance(routing: dict | None) -> dict:
    """Mean experts/token, worst max/mean expert load, mean CV and normalised entropy over layers."""
    if not routing or not routing.get("layers"):
        return {}
    layers = routing["layers"]
    out = {}
    ept = [l.get("experts_per_token_mean") for l in layers if isinstance(l.get("experts_per_token_mean"), (int, float))]
    if ept:
        out["experts_per_token"] = sum(ept) / len(ept)
    mom, cvs, ent = [], [], []
    for l in layers:
        counts = [c for c in l.get("tokens_per_expert") or [] if isinstance(c, (int, float))]
        mean = sum(counts) / len(counts) if counts else 0
        if isinstance(l.get("max_over_mean"), (int, float)):
            mom.append(l["max_over_mean"])
        elif mean > 0:
            mom.append(max(counts) / mean)
        if isinstance(l.get("cv"), (int, float)):
            cvs.append(l["cv"])
        if isinstance(l.get("entropy"), (int, float)) and len(counts) > 1:
            ent.append(l["entropy"] / math.log(len(counts)))
    if mom:
        out["max_over_mean"] = max(mom)
    if cvs:
        out["cv"] = sum(cvs) / len(cvs)
    if ent:
        out["entropy_norm"] = sum(ent) / len(ent)
    dropped = [l.get("dropped") for l in layers if isinstance(l.get("dropped"), (int, float))]
    if dropped:
        out["dropped"] = sum(dropped)
    return out


# ---- tables --------------------------------------------------------------------------------
def variants_table(run: Run) -> Table:
    tasks = run.tasks()
    metric_cols = [(t, m) for t in tasks for m in main_metrics(run, t)]
    cols = ["variant", "family", "routing", "total", "active", "total (no emb)", "active (no emb)",
            "experts/token", "max/mean load"] + [f"{t} {m}" for t, m in metric_cols]
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
    return table


def pair_diffs(run: Run, kind: str, seed: int = 0):
    """[(pair, task, metric, moe value, dense value, Diff | None)] for the pairs of ``kind``."""
    from harness.report.bootstrap import paired_diff

    out = []
    for pair in run.pairs():
        if pair.kind != kind:
            continue
        ma, md = run.metrics(pair.moe), run.metrics(pair.dense)
        sa, sd = run.samples(pair.moe), run.samples(pair.dense)
        for task in run.tasks():
            if task not in ma or task not in md:
                continue
            for metric in main_metrics(run, task):
                if metric not in ma[task] or metric not in md[task]:
                    continue
                diff = paired_diff(sa.get(task, []), sd.get(task, []), metric, seed=seed)
                if diff is None:
                    diff = no_ci_reason(sa.get(task, []), sd.get(task, []), metric)
                out.append((pair, task, metric, ma[task][metric], md[task][metric], diff))
    return out


def no_ci_reason(samples_a: list, samples_b: list, metric: str) -> str:
    """Why a metric has no paired interval: no samples, or values that are not per-document numbers."""
    values = [s.get(metric) for s in samples_a[:1] + samples_b[:1] if metric in s]
    if not samples_a or not samples_b:
        return "no per-document samples"
    if values and not all(isinstance(v, (int, float)) for v in values):
        return "corpus-level metric: no per-document value"
    return "no shared documents"


def pairs_table(run: Run, kind: str, diffs=None) -> Table:
    diffs = pair_diffs(run, kind) if diffs is None else diffs
    title = {"active": "Equal-active pairs", "total": "Equal-total pairs"}.get(kind, f"{kind} pairs")
    cols = ["MoE variant", "dense twin", f"{kind} ratio (dense/MoE)", "task", "metric", "MoE", "dense",
            "Δ (MoE − dense)", "95% CI (paired bootstrap)", "docs", "sig."]
    table = Table(title, cols, empty=f"No MoE variant has a dense twin at equal {kind} parameters in this run.")
    for pair, task, metric, a, b, d in diffs:
        diff_s, ci_s, mark = fmt_diff(d)
        if isinstance(d, str) and isinstance(a, (int, float)) and isinstance(b, (int, float)):
            diff_s = fmt_value(a - b) if abs(a - b) >= 1000 else f"{a - b:+.4f}"
        if mark:
            better = (d.mean < 0) if run.lower_is_better(task, metric) else (d.mean > 0)
            mark = "* MoE better" if better else "* dense better"
        table.rows.append([pair.moe, pair.dense, f"{pair.ratio:.3f}", task, metric, fmt_value(a), fmt_value(b),
                           diff_s, ci_s, str(d.n) if not isinstance(d, (str, type(None))) else "-", mark])
    if table.rows:
        table.notes.append("CI: 95% paired bootstrap over the documents both variants answered (2000 resamples, "
                           "seed 0); * marks a CI that excludes zero.")
    else:
        paired = [p for p in run.pairs() if p.kind == kind]
        if paired:
            table.empty = (f"{len(paired)} {kind}-parameter pair(s) found, but no task was evaluated on both sides.")
    return table


def bucket_table(run: Run) -> Table:
    cols = ["variant", "task", "metric"] + list(BUCKETS)
    table = Table("Long-tail buckets", cols,
                  empty="No per-bucket (head / torso / tail) results in this run.")
    for v in run.variants:
        metrics, samples = run.metrics(v), run.samples(v)
        for task in run.tasks():
            vals = metrics.get(task, {})
            bases = sorted({m.rsplit("_", 1)[0] for m in vals if is_bucket_metric(m) and not is_stderr(m)})
            if bases:
                for base in bases:
                    table.rows.append([v, task, base] + [fmt_metric(vals.get(f"{base}_{b}")) for b in BUCKETS])
                continue
            rows = [s for s in samples.get(task, []) if "bucket" in s]
            metric = primary_metric(run, task)
            if rows and metric:
                per = bucket_means(rows, metric)
                table.rows.append([v, task, metric] + [fmt_metric(per.get(b)) for b in BUCKETS])
    return table


def bucket_means(samples: list[dict], metric: str) -> dict[str, float]:
    sums: dict[str, list] = {}
    for s in samples:
        value = s.get(metric)
        if isinstance(value, (int, float)) and "bucket" in s:
            sums.setdefault(str(s["bucket"]), []).append(float(value))
    return {b: sum(v) / len(v) for b, v in sums.items()}


def bucket_values(run: Run, variant: str, task: str) -> tuple[str, dict[str, float]] | None:
    """(metric, {bucket: value}) for one variant and task, from bucket metrics or tagged samples."""
    vals = run.metrics(variant).get(task, {})
    bases = sorted({m.rsplit("_", 1)[0] for m in vals if is_bucket_metric(m) and not is_stderr(m)})
    if bases:
        base = bases[0]
        return base, {b: vals[f"{base}_{b}"] for b in BUCKETS if f"{base}_{b}" in vals}
    rows = [s for s in run.samples(variant).get(task, []) if "bucket" in s]
    metric = primary_metric(run, task)
    if rows and metric:
        return metric, bucket_means(rows, metric)
    return None


def probe_tables(run: Run) -> list[Table]:
    """One table per probe name, every row of every variant, the known columns first."""
    by_name: dict[str, list] = {}
    for variant, probe in run.probes():
        by_name.setdefault(str(probe.get("name")), []).append((variant, probe))
    tables = []
    for name, entries in by_name.items():
        extra: list[str] = []
        for _, probe in entries:
            for row in probe.get("rows") or []:
                extra += [k for k in row if k not in PROBE_COLUMNS and k not in extra]
        present = [c for c in PROBE_COLUMNS if any(c in row for _, p in entries for row in p.get("rows") or [])]
        cols = ["variant"] + present + extra
        table = Table(f"Probe: {name}", cols, empty=f"The {name} probe returned no rows.")
        notes: dict[str, list] = {}
        for variant, probe in entries:
            rows = probe.get("rows") or []
            for row in rows:
                table.rows.append([variant] + [fmt_num(row.get(c)) for c in cols[1:]])
            # figures outside the rows (params, device, memory peaks, ...) as one note line
            scalars = {k: v for k, v in probe.items() if k not in ("name", "rows") and v is not None}
            if scalars:
                notes.setdefault(", ".join(f"{k} = {fmt_num(v)}" for k, v in scalars.items()), []).append(variant)
        for line, who in notes.items():
            table.notes.append(("all variants" if len(who) == len(entries) > 1 else ", ".join(who)) + ": " + line)
        tables.append(table)
    return tables


def routing_table(run: Run) -> Table:
    cols = ["variant", "routing", "layers", "experts", "experts/token (mean)", "max/mean load (worst layer)",
            "CV (mean)", "entropy / log(E)", "dropped"]
    table = Table("Routing", cols, empty="No routing telemetry in this run (no MoE variant, or none recorded).")
    for v in run.variants:
        routing = run.routing(v)
        if not routing:
            continue
        bal = load_balance(routing)
        experts = max((len(l.get("tokens_per_expert") or []) for l in routing["layers"]), default=0)
        table.rows.append([v, run.routing_name(v), str(len(routing["layers"])), str(experts),
                           fmt_num(bal.get("experts_per_token"), 3), fmt_num(bal.get("max_over_mean"), 3),
                           fmt_num(bal.get("cv"), 3), fmt_num(bal.get("entropy_norm"), 3), fmt_num(bal.get("dropped"))])
    return table


def training_table(run: Run) -> Table:
    cols = ["variant", "steps", "tokens", "first loss", "final loss", "tokens/s", "MFU"]
    table = Table("Training", cols, empty="No training results in this run.")
    for v in run.variants:
        train = run.training(v)
        if not train:
            continue
        curve = train.get("curve") or []
        table.rows.append([v, fmt_num(curve[-1].get("step")) if curve else "-",
                           fmt_params(curve[-1].get("tokens")) if curve else "-",
                           fmt_num(curve[0].get("loss")) if curve else "-", fmt_num(curve[-1].get("loss")) if curve else "-",
                           fmt_num(train.get("tokens_per_s")), fmt_num(train.get("mfu"))])
    return table


def provenance_table(run: Run) -> Table:
    """Key/value lines: suite, job counts, versions, git sha, devices, seeds, timings, failures."""
    table = Table("Provenance", ["item", "value"])
    records = run.records
    kinds: dict[str, list] = {}
    for r in records:
        kinds.setdefault(r.get("kind", "?"), []).append(r)
    versions, devices, hosts, shas = {}, set(), set(), set()
    for r in records:
        env = r.get("env") or {}
        if env.get("device"):
            devices.add(str(env["device"]))
        if env.get("hostname"):
            hosts.add(str(env["hostname"]))
        for k, val in (env.get("versions") or {}).items():
            if k in ("git_sha", "git", "git_hash"):
                shas.add(str(val))
            else:
                versions.setdefault(k, set()).add(str(val))
        for k in ("git_sha", "git_hash"):
            if env.get(k):
                shas.add(str(env[k]))
    add = lambda k, v: table.rows.append([k, v])  # noqa: E731
    add("suite", run.name)
    add("run folder", str(run.path))
    add("jobs", f"{len(records)} results ({len(run.failed)} failed) of {len(run.plan.get('jobs', [])) or '?'} planned; "
        + ", ".join(f"{k}: {len(v)}" for k, v in sorted(kinds.items())))
    add("versions", "; ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(versions.items())) or "not recorded")
    add("git sha", ", ".join(sorted(shas)) or "not recorded")
    add("devices", ", ".join(sorted(devices)) or "not recorded")
    add("hosts", ", ".join(sorted(hosts)) or "not recorded")
    seeds = {v: run.seed_of(v) for v in run.variants}
    add("seeds", "; ".join(f"{v}: {', '.join(map(str, s))}" for v, s in seeds.items() if s) or "not recorded")
    for kind, recs in sorted(kinds.items()):
        load = sum((r.get("timings") or {}).get("load_s", 0) or 0 for r in recs)
        run_s = sum((r.get("timings") or {}).get("run_s", 0) or 0 for r in recs)
        cached = sum(1 for r in recs if (r.get("timings") or {}).get("model_cached"))
        add(f"time: {kind}", f"load {load:.1f} s, run {run_s:.1f} s over {len(recs)} jobs ({cached} on a cached model)")
    for r in run.failed:
        what = r.get("task") or r.get("probe") or ""
        add("FAILED", f"{r.get('kind')} {r.get('variant')} {what}: {r.get('error')} (attempts: {r.get('attempts')})")
    return table


def text_table(table: Table) -> str:
    """A fixed-width plain-text rendering for the terminal."""
    if not table.rows:
        return f"{table.title}: {table.empty}\n"
    widths = [max(len(str(c)), *(len(str(r[i])) for r in table.rows)) for i, c in enumerate(table.columns)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [table.title, line(table.columns), line("-" * w for w in widths)] + [line(r) for r in table.rows]
    return "\n".join(out + table.notes) + "\n"
