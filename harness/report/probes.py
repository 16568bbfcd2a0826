"""Probe tables: latency, throughput, memory, routing (experts touched), the MoE's decode cost between
its dense twins, and a plain table for any other probe.

Probe results look like ``{"name", "params", "rows": [...], "device": {...}, ...}``; each row one
(phase, batch size, context) point. Rows carry their roofline (``roofline_ms``: the time the bytes
read and FLOPs done would take at the device's bandwidth and peak) next to the measurement.
"""

from __future__ import annotations

import math

from harness.report.costs import probe_price, usd_per_million
from harness.report.numbers import fmt_usd
from harness.report.parity import engine_of, engines_in
from harness.report.run import Run
from harness.report.tables import Table, fmt_num
from moe_schema.engines import is_default

#: probe row columns shown first by the plain table, in this order; any other keys follow as they come
PROBE_COLUMNS = ("batch_size", "context", "phase", "ms_p50", "ms_p90", "ms_p95", "ms_p99", "ms_mean", "ms_std",
                 "tokens_per_s", "roofline_ms", "measured_over_roofline")
SPECIAL = ("latency", "throughput", "memory", "routing")


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def fmt_bytes(n) -> str:
    if not _num(n) or not math.isfinite(n):
        return "-"
    for div, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(n) >= div:  # three significant figures, never in e-notation (1,010 KiB, not 1.01e+03)
            v = n / div
            return f"{v:,.0f} {unit}" if abs(v) >= 100 else f"{v:.3g} {unit}"
    return f"{n:.0f} B"


def probe_rows(run: Run, name: str) -> list[tuple[str, dict, dict]]:
    """(variant, probe, row) for every row of every ok ``name`` probe."""
    return [(v, p, row) for v, p in run.probes() if p.get("name") == name for row in p.get("rows") or []
            if isinstance(row, dict)]


def _tokens_in(row: dict) -> str:
    return fmt_num(row.get("prompt_length") if row.get("phase") == "prefill" else row.get("context"))


def step_tokens(row: dict) -> float:
    """Tokens one timed step handles: batch × prompt for prefill, batch for decode."""
    bs = row.get("batch_size") or 1
    return bs * (row.get("prompt_length") or 1) if row.get("phase") == "prefill" else bs


def roofline_tokens_per_s(row: dict) -> float | None:
    roof = row.get("roofline_ms")
    return step_tokens(row) * 1000.0 / roof if _num(roof) and roof > 0 else None


def _device_notes(run: Run, name: str) -> list[str]:
    """One line per distinct device/implementation setting of the ``name`` probes."""
    lines: dict[str, list] = {}
    for v, p in run.probes():
        if p.get("name") != name:
            continue
        d = p.get("device") if isinstance(p.get("device"), dict) else {"name": p.get("device")}
        parts = [f"device {d.get('name', '?')}" + (f" ({d['dtype']})" if d.get("dtype") else "")]
        if _num(d.get("bandwidth_gbs")):
            parts.append(f"roofline peaks {d['bandwidth_gbs']:.3g} GB/s, {fmt_num(d.get('tflops'), 3)} TFLOP/s"
                         f" ({d.get('source', '?')})")
        for key in ("experts_implementation", "compile", "torch_threads"):
            if p.get(key) is not None:
                parts.append(f"{key} {p[key]}")
        lines.setdefault(", ".join(parts), []).append(v)
    n = len({v for v, p in run.probes() if p.get("name") == name})
    return [("all variants" if len(who) == n > 1 else ", ".join(who)) + ": " + line for line, who in lines.items()]


def _by_engine(run: Run, table: Table, rows: list | None = None) -> None:
    """In a run with variants on another engine than the default one: an ``engine`` column after the
    variant and, where probe ``rows`` (one per table row) carry them, the served engine's time to
    first token and time per output token. A run on the default engine alone keeps its table."""
    if all(is_default(e) for e in engines_in(run)):
        return
    served = rows is not None and any(_num(r.get("ttft_s")) or _num(r.get("tpot_s")) for _, _, r in rows)
    table.columns[1:1] = ["engine"]
    if served:
        table.columns += ["TTFT (ms)", "TPOT (ms)"]
    for i, row in enumerate(table.rows):
        row.insert(1, engine_of(run, row[0]))
        if served:
            r = rows[i][2]
            row += [fmt_num(r["ttft_s"] * 1000, 3) if _num(r.get("ttft_s")) else "-",
                    fmt_num(r["tpot_s"] * 1000, 3) if _num(r.get("tpot_s")) else "-"]


def latency_table(run: Run) -> Table:
    cols = ["variant", "phase", "batch (sequences)", "prompt / context (tokens)", "p50 (ms)", "p90 (ms)", "p99 (ms)",
            "mean ± std (ms)", "throughput (tokens/s)", "roofline (ms)", "bound", "measured / roofline (ratio)",
            "experts touched (count)", "S-MBU (fraction)", "S-MFU (fraction)"]
    table = Table("Latency", cols, empty="No latency probe in this run.")
    for v, _, r in probe_rows(run, "latency"):
        ms = f"{fmt_num(r.get('ms_mean'), 3)} ± {fmt_num(r.get('ms_std'), 2)}" if _num(r.get("ms_mean")) else "-"
        table.rows.append([v, str(r.get("phase", "-")), fmt_num(r.get("batch_size")), _tokens_in(r),
                           fmt_num(r.get("ms_p50"), 3), fmt_num(r.get("ms_p90"), 3), fmt_num(r.get("ms_p99"), 3), ms,
                           fmt_num(r.get("tokens_per_s")), fmt_num(r.get("roofline_ms"), 3),
                           str(r.get("roofline_bound") or "-"), fmt_num(r.get("measured_over_roofline"), 3),
                           fmt_num(r.get("experts_touched"), 3), fmt_num(r.get("s_mbu"), 3),
                           fmt_num(r.get("s_mfu"), 3)])
    table.notes = _device_notes(run, "latency")
    _by_engine(run, table, probe_rows(run, "latency"))
    if table.rows:
        table.notes.append("Prefill: one prompt of the given length per sequence; decode: ms per step (one token "
                           "per sequence) at the given context. measured / roofline: how many times slower than "
                           "the roofline the measurement is. S-MBU / S-MFU: bandwidth and FLOP utilisation "
                           "counting only the experts the step activated, as MoE-CAP (arXiv 2412.07067) "
                           "defines them, against the device peaks above.")
    return table


def throughput_table(run: Run) -> Table:
    cols = ["variant", "phase", "batch (sequences)", "prompt / context (tokens)", "throughput (tokens/s)",
            "cost per 1M tokens (USD)", "roofline throughput (tokens/s)", "measured / roofline (ratio)",
            "p50 (ms)", "experts touched (count)", "S-MBU (fraction)", "S-MFU (fraction)"]
    table = Table("Throughput", cols, empty="No throughput probe in this run.")
    priced: dict = {}
    for v, p, r in probe_rows(run, "throughput"):
        key, price = probe_price(run, v, p)
        usd = usd_per_million(r.get("tokens_per_s"), price)
        priced[key or "?"] = price
        table.rows.append([v, str(r.get("phase", "-")), fmt_num(r.get("batch_size")), _tokens_in(r),
                           fmt_num(r.get("tokens_per_s")), fmt_usd(usd) if usd is not None else "no price",
                           fmt_num(roofline_tokens_per_s(r)),
                           fmt_num(r.get("measured_over_roofline"), 3), fmt_num(r.get("ms_p50"), 3),
                           fmt_num(r.get("experts_touched"), 3), fmt_num(r.get("s_mbu"), 3),
                           fmt_num(r.get("s_mfu"), 3)])
    table.notes = _device_notes(run, "throughput")
    if table.rows:
        table.notes.append("Cost per 1M tokens: the device's USD per hour / 3600 / throughput × 10^6, at "
                           + ", ".join(f"{k} ${fmt_num(p)}/h" if p is not None else f"{k}: no price (give one with "
                                       "--price)" for k, p in priced.items()) + " (moe_schema/devices.py; override "
                           "with the suite's prices: or --price DEVICE=USD).")
    _by_engine(run, table, probe_rows(run, "throughput"))
    return table


def memory_table(run: Run) -> Table:
    cols = ["variant", "batch (sequences)", "context (tokens)", "weights (bytes)", "KV cache (bytes)",
            "KV cache, analytic (bytes)", "activations, peak (bytes)", "peak (bytes)"]
    table = Table("Memory", cols, empty="No memory probe in this run.")
    methods: dict[str, set] = {}
    for v, _, r in probe_rows(run, "memory"):
        table.rows.append([v, fmt_num(r.get("batch_size")), fmt_num(r.get("context")), fmt_bytes(r.get("weights_bytes")),
                           fmt_bytes(r.get("kv_cache_bytes")), fmt_bytes(r.get("kv_cache_bytes_analytic")),
                           fmt_bytes(r.get("activations_peak_bytes")), fmt_bytes(r.get("peak_bytes"))])
        for part, key in (("weights", "weights_method"), ("KV cache", "kv_cache_method"),
                          ("activations", "activations_method")):
            if r.get(key):
                methods.setdefault(part, set()).add(str(r[key]))
    table.notes = [f"How obtained, {part}: {'; '.join(sorted(m))}." for part, m in methods.items()]
    table.notes += _device_notes(run, "memory")
    return table


def routing_probe_table(run: Run) -> Table:
    cols = ["variant", "phase", "batch (sequences)", "tokens (count)", "experts touched, mean over layers (count)",
            "of (experts)", "fraction (of experts)",
            "uniform routing would touch (count)", "per layer (count)"]
    table = Table("Experts touched", cols, empty="No routing probe in this run.")
    for v, _, r in probe_rows(run, "routing"):
        table.rows.append([v, str(r.get("phase", "-")), fmt_num(r.get("batch_size")), fmt_num(r.get("tokens")),
                           fmt_num(r.get("experts_touched"), 3), fmt_num(r.get("num_experts")),
                           fmt_num(r.get("experts_touched_fraction"), 3), fmt_num(r.get("experts_touched_uniform"), 3),
                           fmt_num(r.get("experts_touched_per_layer"), 3)])
    if table.rows:
        table.notes.append("Distinct experts a forward pass reads, per MoE layer: decode at batch b touches at most "
                           "b × top-k experts; once it touches them all, decode reads every expert's weights, "
                           "like the dense model of equal total parameters.")
    failed = [r for r in run.failed if r.get("kind") == "probe" and "routing" in str(r.get("probe"))]
    if failed:
        table.notes.append(f"Not run on {', '.join(str(r.get('variant')) for r in failed)}: "
                           f"{str(failed[0].get('error')).splitlines()[0]}")
    return table


def plain_probe_tables(run: Run) -> list[Table]:
    """One table per probe name without a table of its own: every row, the known columns first."""
    by_name: dict[str, list] = {}
    for variant, probe in run.probes():
        if probe.get("name") not in SPECIAL:
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
            for row in probe.get("rows") or []:
                table.rows.append([variant] + [fmt_num(row.get(c)) for c in cols[1:]])
            # figures outside the rows (params, device, memory peaks, ...) as one note line
            scalars = {k: v for k, v in probe.items() if k not in ("name", "rows") and v is not None}
            if scalars:
                notes.setdefault(", ".join(f"{k} = {fmt_num(v)}" for k, v in scalars.items()), []).append(variant)
        for line, who in notes.items():
            table.notes.append(("all variants" if len(who) == len(entries) > 1 else ", ".join(who)) + ": " + line)
        tables.append(table)
    return tables


# ---- decode cost against the dense twins ---------------------------------------------------
def decode_rows(run: Run, variant: str) -> tuple[str, list[dict]]:
    """(probe name, decode rows by batch size) at the largest context: the throughput probe's, else latency's."""
    for name in ("throughput", "latency"):
        rows = [r for v, _, r in probe_rows(run, name) if v == variant and r.get("phase") == "decode"
                and _num(r.get("batch_size"))]
        if rows:
            ctx = max(r.get("context") or 0 for r in rows)
            return name, sorted((r for r in rows if (r.get("context") or 0) == ctx), key=lambda r: r["batch_size"])
    return "", []


def decode_ms_per_token(run: Run) -> dict[str, tuple[float, int]]:
    """Per variant: decode ms per step, p50, at batch 1 (else its smallest batch), latency probe first."""
    out = {}
    for name in ("latency", "throughput"):
        for v, _, r in probe_rows(run, name):
            if v in out and out[v][2] != name or r.get("phase") != "decode" or not _num(r.get("ms_p50")):
                continue
            bs = r.get("batch_size") or 1
            if v not in out or bs < out[v][1]:
                out[v] = (float(r["ms_p50"]), bs, name)
    return {v: (ms, bs) for v, (ms, bs, _) in out.items()}


def twins(run: Run) -> dict[str, dict[str, str]]:
    """{MoE variant: {"active": dense twin, "total": dense twin}} from the run's pairs."""
    out: dict[str, dict] = {}
    for p in run.pairs():
        out.setdefault(p.moe, {}).setdefault(p.kind, p.dense)
    return out


TWIN_GAP = 0.10  # twins whose step times differ by less than this share cannot place the MoE between them


def position(moe: float, active: float, total: float) -> float | None:
    """Where the MoE's step time lies between its twins': 0 = costs like the equal-active twin, 1 = like
    the equal-total twin. None where the twins cost about the same (launch-bound tiny builds)."""
    if not all(_num(x) for x in (moe, active, total)) or abs(total - active) < TWIN_GAP * max(active, total):
        return None
    return (moe - active) / (total - active)


def crossover(points: list[tuple[int, float | None]]) -> int | None:
    """The first batch size whose position is ≥ 0.5 (closer to the equal-total twin)."""
    return next((bs for bs, pos in points if pos is not None and pos >= 0.5), None)


def decode_twins_table(run: Run) -> Table:
    cols = ["MoE variant", "batch (sequences)", "MoE (tokens/s)", "equal-active (tokens/s)", "equal-total (tokens/s)",
            "position, measured (0 active - 1 total)", "position, roofline (0 active - 1 total)", "experts touched (count)"]
    table = Table("MoE decode cost between its dense twins", cols,
                  empty="No MoE variant with both dense twins has decode probe rows.")
    for moe, tw in twins(run).items():
        if "active" not in tw or "total" not in tw:
            continue
        rows = {n: {r["batch_size"]: r for r in decode_rows(run, v)[1]}
                for n, v in (("moe", moe), ("active", tw["active"]), ("total", tw["total"]))}
        measured, roofline = [], []
        for bs in sorted(set(rows["moe"]) & set(rows["active"]) & set(rows["total"])):
            m, a, t = rows["moe"][bs], rows["active"][bs], rows["total"][bs]
            pm = position(m.get("ms_p50"), a.get("ms_p50"), t.get("ms_p50"))
            pr = position(m.get("roofline_ms"), a.get("roofline_ms"), t.get("roofline_ms"))
            measured.append((bs, pm)), roofline.append((bs, pr))
            table.rows.append([moe, fmt_num(bs), fmt_num(m.get("tokens_per_s")), fmt_num(a.get("tokens_per_s")),
                               fmt_num(t.get("tokens_per_s")), fmt_num(pm, 3), fmt_num(pr, 3),
                               fmt_num(m.get("experts_touched"), 3)])
        if measured:
            say = lambda bs: f"from batch {bs}" if bs else "not within the batch sizes probed"  # noqa: E731
            table.notes.append(f"{moe} (twins {tw['active']}, {tw['total']}): decode costs more like the equal-total "
                               f"twin {say(crossover(roofline))} by the roofline, {say(crossover(measured))} as "
                               "measured.")
    _by_engine(run, table)
    if table.rows:
        table.notes.insert(0, "position: where the MoE's decode step time lies between its twins' (0 = like the "
                              "equal-active twin, 1 = like the equal-total twin); the crossover is where it passes "
                              "0.5: past it, the MoE is no longer cheap to decode. '-': the twins' step times differ by less "
                              f"than {TWIN_GAP:.0%}, too little to place the MoE between them.")
    return table


def probe_param_note(run: Run) -> list[str]:
    """Counts and parameters of the probes that ran, one line."""
    seen: dict[str, dict] = {}
    for _, p in run.probes():
        seen.setdefault(str(p.get("name")), p.get("params") or {})
    if not seen:
        return []
    return ["Probes: " + "; ".join(f"{n} ({', '.join(f'{k}={fmt_num(v)}' for k, v in ps.items() if v is not None)})"
                                   for n, ps in seen.items())]


__all__ = ["fmt_bytes", "latency_table", "throughput_table", "memory_table", "routing_probe_table",
           "plain_probe_tables", "decode_twins_table", "decode_rows", "decode_ms_per_token", "twins"]
