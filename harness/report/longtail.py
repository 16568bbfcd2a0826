"""The long-tail section's tables: accuracy per popularity bucket per model and per pair, the
training regime of the knowledge corpus, and the knowledge each build stored (in bits).

Regime and knowledge use ``moe_schema.capacity`` (pure python): the corpus meta travels in
each train result (``corpus``), with its ``regime`` already computed by the worker.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.report.buckets import ALL, BUCKETS, bucket_cell, bucket_groups, group_metrics
from harness.report.pairdiff import compare_pair
from harness.report.run import Run
from harness.report.seeds import fmt_mean_sd, model_pairs, seed_groups
from harness.report.tables import Table, fmt_num, fmt_params, fmt_value, pair_cells, pair_columns, pair_notes
from moe_schema.capacity import accuracy_by_attribute, knowledge_bits


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def bucket_table(run: Run) -> Table:
    cols = ["model", "group", "metric"] + [f"{b} (metric unit)" for b in (*BUCKETS, ALL)]
    table = Table("Accuracy per bucket", cols, empty="No per-bucket (head / torso / tail) results in this run.")
    seeded = False
    for g in bucket_groups(run):
        for metric in group_metrics(run, g):
            for model, variants in seed_groups(run).items():
                cells = []
                for b in BUCKETS + (ALL,):
                    vals = [bucket_cell(run, v, g, b, metric)[0] for v in variants]
                    cells.append(fmt_mean_sd([float(x) for x in vals if _num(x)], fmt_value))
                if any(c != "-" for c in cells):
                    seeded |= len(variants) > 1
                    table.rows.append([model, g.name, metric] + cells)
    if table.rows:
        table.notes.append("all: the whole group (lm-eval's group row where there is one, else the mean over its "
                           "documents)." + (" With seeds: mean ± standard deviation over seeds." if seeded else ""))
    return table


def bucket_pairs_table(run: Run) -> Table:
    rows = []
    for pair in model_pairs(run):
        for g in bucket_groups(run):
            metrics = group_metrics(run, g)
            if not metrics:
                continue
            for b in BUCKETS + (ALL,):
                cell = lambda v: bucket_cell(run, v, g, b, metrics[0])  # noqa: E731
                row = compare_pair(pair, g.tasks.get(b, g.name), metrics[0], cell)
                if row is not None:
                    rows.append((g.name, b, row))
    seeded = any(r.n_seeds > 1 for _, _, r in rows)
    cols = ["MoE model", "dense twin", "equal", "group", "metric", "bucket"] + pair_columns(seeded)
    table = Table("Pairs per bucket", cols, empty="No MoE model has a dense twin with per-bucket results.")
    for group, bucket, row in rows:
        table.rows.append([row.pair.moe, row.pair.dense, row.pair.kind, group, row.metric, bucket]
                          + pair_cells(run, row, seeded))
    if table.rows:
        table.notes += pair_notes(seeded)
    return table


# ---- regime and knowledge ------------------------------------------------------------------
def corpora(run: Run) -> dict[str, tuple[dict, dict]]:
    """{trained variant: (corpus meta with its regime, params)} from the ok train results."""
    out = {}
    for v in run.variants:
        for r in run.ok("train", v):
            if isinstance(r.get("corpus"), dict):
                out[v] = (r["corpus"], r.get("params") or run.params(v))
    return out


def regime_table(run: Run) -> Table:
    cols = ["variant", "total (params)", "tokens trained (count)", "epochs (count)", "tokens / param (ratio)",
            "tokens / active param (ratio)"] + [f"exposures per fact, {b} (count)" for b in BUCKETS] + [
        "fact bits (bits)", "capacity at 2 bits/param (bits)", "facts exceed it"]
    table = Table("Training regime", cols, empty="No train result carries a corpus regime.")
    found = corpora(run)
    for v, (corpus, params) in found.items():
        reg = corpus.get("regime") or {}
        if not reg:
            continue
        exp = reg.get("exposures_per_fact") or {}
        table.rows.append([v, fmt_params(params.get("total")), fmt_params(reg.get("tokens_trained")),
                           fmt_num(reg.get("epochs"), 3), fmt_num(reg.get("tokens_per_param"), 3),
                           fmt_num(reg.get("tokens_per_active_param"), 3)]
                          + [fmt_num((exp.get(b) or {}).get("exposures_mean"), 3) for b in BUCKETS]
                          + [fmt_params(reg.get("fact_bits")), fmt_params(reg.get("capacity_bits_at_2_per_param")),
                             fmt_num(reg.get("facts_exceed_capacity"))])
    sized = [(p.get("total"), v, c.get("regime") or {}) for v, (c, p) in found.items() if _num(p.get("total"))]
    if sized:
        total, v, reg = min(sized)
        if _num(reg.get("fact_bits")):
            exceed = reg["fact_bits"] > 2.0 * total
            table.notes.append(
                f"The corpus's facts hold {fmt_params(reg['fact_bits'])} bits; the smallest build, {v} "
                f"({fmt_params(total)} parameters), can store about {fmt_params(2.0 * total)} bits at ~2 bits per "
                f"parameter (Allen-Zhu & Li, arXiv 2404.05405), so the facts {'EXCEED' if exceed else 'do not exceed'} "
                "its capacity" + ("." if exceed else ": every build could in principle store them all."))
        table.notes.append("Exposures per fact: mean times an entity's facts were seen in training (its biography "
                           "count × epochs); ~2 bits/param needs ~1000 exposures, ~1 bit/param ~100.")
    return table


def _task_rows(corpus: dict, task: str) -> list[dict] | None:
    """The knowledge task's documents (with their attribute), read beside its YAML when reachable."""
    path = (corpus.get("tasks") or {}).get(task)
    if not path:
        return None
    jsonl = Path(path).with_suffix(".jsonl")
    try:
        return [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError):
        return None


def knowledge_table(run: Run) -> Table:
    cols = ["variant", "total (params)"] + [f"{b} (bits)" for b in BUCKETS] + ["stored (bits)", "of the corpus's (fraction)",
                                                                          "bits / param (ratio)", "from"]
    table = Table("Knowledge stored", cols, empty="No knowledge-corpus evaluation in this run.")
    found = corpora(run)
    if not found:
        return table
    any_corpus = next(iter(found.values()))[0]
    # the exact knowledge tasks (<group>_values_<bucket>, chance 1/V) have their own table in answers.py;
    # this guess correction assumes 4-way choices
    groups = [g for g in bucket_groups(run) if g.form == "tasks" and not g.name.endswith("_values")
              and set(g.tasks.values()) <= set(any_corpus.get("tasks") or {})]
    for g in groups:
        for v in run.variants:
            corpus = found.get(v, (any_corpus, {}))[0]
            params = run.params(v)
            acc, source = {}, "bucket accuracy"
            for b, task in g.tasks.items():
                samples = run.samples(v).get(task, [])
                rows = _task_rows(corpus, task)
                if rows and samples and all(isinstance(s.get("doc_id"), int) and s["doc_id"] < len(rows) for s in samples):
                    acc[b], source = accuracy_by_attribute(rows, samples, "acc"), "accuracy per attribute"
                else:
                    value = run.metrics(v).get(task, {}).get("acc")
                    if _num(value):
                        acc[b] = float(value)
            acc = {b: a for b, a in acc.items() if b in (corpus.get("buckets") or {})}
            if not acc:
                continue
            k = knowledge_bits(corpus, acc, params.get("total"))
            table.rows.append([v, fmt_params(params.get("total"))]
                              + [fmt_num(k["by_bucket"].get(b), 4) for b in BUCKETS]
                              + [fmt_num(k["bits"], 4), f"{k['bits'] / k['fact_bits']:.1%}" if k["fact_bits"] else "-",
                                 fmt_num(k["bits_per_param"], 3), source])
    if table.rows:
        table.notes.append("Bits stored (moe_schema.capacity.knowledge_bits): per bucket, entities × Σ over "
                           "attributes of the guess-corrected fraction known, max(0, (acc − 1/4) / (3/4)), × log2 "
                           "of the attribute's value count. It understates partial knowledge; compare builds, not "
                           "the absolute number, with the ~2 bits/param ceiling.")
    return table
