"""The report's answers, rendered: verdict sentences and tables, token efficiency, sweeps, knowledge
stored, figures over seeds, and the trained MoE under each routing strategy.

The logic lives in :mod:`verdicts`, :mod:`curves`, :mod:`sweeps` and :mod:`knowledge`; this module
only words and tabulates it.
"""

from __future__ import annotations

from harness.report.bootstrap import paired_diff
from harness.report.buckets import BUCKETS, main_metrics, member_tasks, task_samples
from harness.report.card import regime_ids, tally
from harness.report.curves import (OLMOE_SECONDS_FRACTION, OLMOE_TOKEN_FRACTION, PairEfficiency, pair_efficiency,
                                   seed_label)
from harness.report.knowledge import BITS_PER_PARAM, regime_sentence, stored, values_groups
from harness.report.numbers import fmt, fmt_ci, fmt_effect, fmt_level, fmt_signed, unit, with_unit
from harness.report.run import Run
from harness.report.seeds import fmt_mean_sd, has_seeds, model_pairs, routing_pairs, seed_groups
from harness.report.stats import ALPHA, MAX_SEEDS, POWER, t_interval
from harness.report.sweeps import sweep_series, sweep_tasks
from harness.report.tables import Table, fmt_params, fmt_value
from harness.report.verdicts import (INCONCLUSIVE, PREDICTIONS, Verdict, all_verdicts, comparisons,
                                     heldout_tasks, short_name, strategy_role, untrained_variants)


def ci_text(v: Verdict) -> str:
    e = v.evidence
    if e.source == "none":
        return f"no interval ({e.why_none})"
    src = (f"over {e.n} seeds (t-interval of the per-seed differences)" if e.source == "seeds"
           else f"within-seed paired bootstrap over {e.n} documents")
    raw = fmt_ci(e.lo, e.hi, mean=e.mean)
    if v.family > 1:
        adj = fmt_ci(v.adj_lo, v.adj_hi, mean=e.mean)
        return (f"95% CI {src} {raw}; Holm-adjusted ({fmt_level(v.level)}, family of {v.family}) {adj}"
                + (f", raw verdict {v.raw_verdict}" if v.raw_verdict != v.verdict else ""))
    return f"95% CI {src} {raw}"


def _by(x: float, up: str, down: str, u: str = "") -> str:
    """"better by 0.01 bits/byte" for x ≥ 0, "worse by ..." below (``up`` / ``down`` name the two ways)."""
    return f"{up if x >= 0 else down} by {fmt(abs(x))}" + (f" {u}" if u else "")


def _advantage(v: Verdict) -> str:
    a, e, u = v.extra, v.evidence, unit(v.metric)
    values = f"{fmt(v.values[0])} vs {fmt(v.values[1])} {u}"
    what = f"on {v.task} {v.metric} ({values})"
    if v.claim == "1":
        return f"the MoE is {_by(e.mean, 'better', 'worse', u)} {what}"
    if v.claim == "2":
        margin = f"{fmt(-v.boundary)} {u}" + (f" ({a['margin_rel']:.0%} of the twin's value)" if "margin_rel" in a else "")
        return (f"the dense twin is {_by(e.mean, 'better', 'worse', u)} {what}; equivalence margin {margin}: "
                "the claim holds while the MoE's lead stays under it")
    if v.claim == "3":
        acc = a.get("acc")
        acc_s = f"; accuracy over all values {fmt(acc[0], 3)} vs {fmt(acc[1], 3)}" if acc else ""
        return (f"against its equal-{a.get('kind')} twin the MoE is {_by(e.mean, 'ahead', 'behind', u)} "
                f"on {v.task} {v.metric} ({values}{acc_s})")
    if v.claim == "3t":  # advantage = twin − MoE: positive, the MoE stores less, as predicted
        acc = a.get("acc")
        acc_s = f"; accuracy over all values {fmt(acc[0], 3)} vs {fmt(acc[1], 3)}" if acc else ""
        return (f"against its equal-total twin the MoE is {_by(-e.mean, 'ahead', 'behind', u)} on {v.task} "
                f"{v.metric} ({fmt(v.values[1])} vs {fmt(v.values[0])} {u}{acc_s})")
    if v.claim == "5":
        return f"native routing is {_by(e.mean, 'better', 'worse', u)} than {a['strategy']} {what}"
    if v.claim == "9":  # values: each side's change, quantized − exact; advantage: the twin's loss − the MoE's
        return (f"at {a['setting']} the MoE's {v.task} {v.metric} changed by {fmt_signed(v.values[0])} {u} against "
                f"its exact build, its equal-{a['kind']} twin's by {fmt_signed(v.values[1])} {u}: the MoE loses "
                f"{_by(e.mean, 'less', 'more', u)}; margin {fmt(a['margin'])} {u} ({a['margin_rel']:.0%} of the "
                "twin's exact value): the claim holds while the MoE's extra loss stays under it")
    return f"advantage {fmt_signed(e.mean)} {u} {what}"


def power_text(v: Verdict) -> str:
    p = v.power
    if p is None:
        return ""
    if p.mde is None:
        return f" No interval, so no detectable difference either: {p.note}."
    if v.values and all(x == 0 for x in v.values):
        return " Both sides score exactly 0: nothing measurable to compare at this size."
    if p.mde == 0:
        return " Every seed gave the same difference (spread 0): the interval has no width to judge against."
    test = f"α={ALPHA} two-sided, power {POWER}"
    out = f" The smallest difference this run could detect ({test}) is {fmt(p.mde)}"
    target = (f"detecting the observed {fmt(p.effect)}" if v.boundary == 0 else
              f"telling the observed difference from the margin ({fmt(p.effect)} away)")
    if v.evidence.source == "seeds":
        more = (f"{p.more_seeds} more seed(s) ({v.evidence.n + p.more_seeds} in all)" if p.more_seeds is not None
                else f"more than {MAX_SEEDS:,} seeds" if p.effect else "no number of seeds (it is zero)")
        return out + f"; {target} would take {more} at the measured seed spread."
    more = (f"{p.more_docs:,} more documents ({v.evidence.n + p.more_docs:,} in all)" if p.more_docs is not None
            else "no number of documents (it is zero)")
    return out + f"; {target} would take {more}; {p.note} (train a second seed)."


def sentence(v: Verdict, regime_id: str | None = None) -> str:
    """One sentence (a few clauses) per verdict: verdict, number, interval, power, dissent, and its regime
    (by id when the regime is stated once above, else in full)."""
    parts = [f"{title(v.claim)} {v.verdict.upper()} for {v.subject}: {_advantage(v)}; {ci_text(v)}."]
    if v.claim == "2" and v.extra.get("cost_ratio"):
        parts.append(f" Cost: the dense twin takes {fmt(v.extra['cost_ratio'], 3)}× the MoE's FLOPs per token "
                     f"({fmt_params(v.extra['flops_dense'])} vs {fmt_params(v.extra['flops_moe'])}, "
                     f"{v.extra['cost_from']}).")
    if v.verdict == INCONCLUSIVE:
        parts.append(power_text(v))
    for seed, adv in v.disagree:
        parts.append(f" Seed {seed} disagrees in sign ({fmt_signed(adv)}).")
    if v.extra.get("unequal_tokens"):
        parts.append(" Caution: the pair did not train on the same tokens "
                     f"({', '.join(f'{a:,} vs {b:,}' for a, b in v.extra['unequal_tokens'])}).")
    parts.append(f" (Regime {regime_id}.)" if regime_id else " " + regime_sentence(v.regimes))
    return "".join(parts)


MISSING = {"1": "no equal-active pair with held-out loss (tasks *_heldout_seen / *_heldout_unseen, or "
                "train.heldout_curve)",
           "2": "no equal-total pair with held-out loss",
           "3": "no per-bucket knowledge task with a tail bucket evaluated on an equal-active pair",
           "5": "no MoE checkpoint evaluated under another routing strategy beside its native one",
           "9": ("no MoE and dense twin each evaluated on one engine at an exact setting (f32 weights, f32 KV "
                 "cache) and a quantized one")}


def title(key: str) -> str:
    """How a sentence names a claim ("Claim 3 (long-tail knowledge)") or a prediction beside one."""
    if key in PREDICTIONS:
        return f"Beside claim {PREDICTIONS[key][3]}, in a family of its own: {short_name(key)}:"
    return f"Claim {key} ({short_name(key)})"


def verdict_lines(run: Run, verdicts: dict | None = None) -> list[str]:
    """Per claim: its tally, then one sentence per comparison; each regime stated once, where it first
    appears, and named by id after."""
    verdicts = all_verdicts(run) if verdicts is None else verdicts
    ids, stated, out = regime_ids(verdicts), set(), []
    untrained = bool(untrained_variants(run))
    for claim, vs in verdicts.items():
        if not vs and claim in PREDICTIONS:
            continue  # a prediction beside a claim is shown where the run checks it, and not otherwise
        if not vs:
            why = ("its comparisons read untrained builds (random weights)" if untrained and _could_speak(run, claim)
                   else MISSING[claim])
            out.append(f"{title(claim).rstrip(':')}: no verdict: {why}.")
            continue
        out.append(f"{title(claim).rstrip(':')}, over {len(vs)} comparison(s): {tally(vs)}.")
        for v in vs:
            sent = regime_sentence(v.regimes)
            if sent not in stated:
                stated.add(sent)
                out.append(f"Regime {ids[sent]}: {sent.removeprefix('Regime: ')}")
            out.append(sentence(v, ids[sent]))
    return out


def _could_speak(run: Run, claim: str) -> bool:
    """Would the claim have comparisons if untrained builds counted? (The raw claim functions, unfiltered.)"""
    return bool(comparisons(claim)(run))


def verdict_table(run: Run, verdicts: dict | None = None) -> Table:
    verdicts = all_verdicts(run) if verdicts is None else verdicts
    cols = ["claim", "comparison", "task", "metric (unit)", "verdict (Holm)", "raw verdict",
            "advantage (metric unit; + favours the claim)", "raw 95% CI (metric unit)",
            "Holm-adjusted CI (metric unit)", "adjusted level (% confidence)", "p (two-sided)", "CI from",
            "boundary (metric unit)", "detectable (metric unit; α=0.05, power 0.8)", "more to detect (seeds or docs)",
            "seeds against (advantage)"]
    table = Table("Verdicts, in numbers", cols, empty="No claim this run can speak to.")
    for vs in verdicts.values():
        for v in vs:
            e, p = v.evidence, v.power
            more = "-"
            if p is not None and p.more_seeds is not None:
                more = f"{p.more_seeds} seeds"
            elif p is not None and p.more_docs is not None:
                more = f"{p.more_docs:,} docs"
            mean, lo, hi = fmt_effect(e.mean, e.lo, e.hi)
            _, alo, ahi = fmt_effect(e.mean, v.adj_lo, v.adj_hi)
            table.rows.append([v.claim, v.subject, v.task, f"{v.metric} ({unit(v.metric)})", v.verdict, v.raw_verdict,
                               mean, f"[{lo}, {hi}]" if e.lo is not None else "-",
                               f"[{alo}, {ahi}]" if v.adj_lo is not None else "-", fmt_level(v.level),
                               fmt(v.p, 3) if v.p is not None else "-",
                               {"seeds": f"{e.n} seeds (t)", "bootstrap": f"{e.n} docs (bootstrap)"}.get(e.source, "-"),
                               fmt_signed(v.boundary), fmt(p.mde) if p is not None and p.mde is not None else "-", more,
                               ", ".join(f"s{s} ({fmt_signed(a)})" for s, a in v.disagree) or "-"])
    if table.rows:
        table.notes.append("advantage: the difference oriented so that positive favours the claim (claim 1: twin − "
                           "MoE loss; claim 2: MoE − twin loss; claim 3: MoE − equal-active twin bits; 3t, the paper's "
                           "prediction at equal total parameters, in a family of its own: equal-total twin − MoE "
                           "bits; claim 5: other routing − native loss; claim 9: the twin's quality lost to quantization − the MoE's). holds: the whole CI above the boundary; does not hold: wholly below; "
                           "else inconclusive (a CI touching the boundary is inconclusive). The verdict uses the "
                           "Holm-adjusted CI; the raw verdict the 95% one.")
    return table


# ---- token efficiency -------------------------------------------------------------------------
def _reach_cell(reach, twin: float | None, fmt=lambda x: f"{x:,.0f}") -> str:
    if not reach.reached:
        return "not reached"
    frac = f" ({reach.x / twin:.3f})" if twin else ""
    return ("≤ " if reach.bound else "") + f"{fmt(reach.x)}{frac}"


def _seconds(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def efficiency_table(run: Run, effs: list[PairEfficiency] | None = None) -> Table:
    effs = pair_efficiency(run, [p for p in model_pairs(run, native_only=True) if p.kind == "active"]) \
        if effs is None else effs
    cols = ["MoE", "equal-active twin", "held-out", "seed", "twin final loss (nats/token)", "twin tokens (count)",
            "MoE tokens to reach it (count, fraction)", "twin time (s)", "MoE time to reach it (s, fraction)", "device"]
    table = Table("Token efficiency", cols,
                  empty="No train result carries train.heldout_curve for an equal-active pair: no token efficiency.")
    for e in effs:
        for s in e.seeds:
            table.rows.append([e.pair.moe, e.pair.dense, e.kind, seed_label(s.moe), f"{s.target:.4f}",
                               f"{s.twin_tokens:,.0f}", _reach_cell(s.tokens, s.twin_tokens),
                               _seconds(s.twin_seconds) if s.twin_seconds else "-",
                               _reach_cell(s.seconds, s.twin_seconds, _seconds) if s.twin_seconds else "-",
                               ", ".join(e.devices)])
        tok, sec = e.token_ci(), e.seconds_ci()
        mean_t, mean_s = e.mean("token_fraction"), e.mean("seconds_fraction")
        tok_s = (f"{tok.mean:.3f} [{tok.lo:.3f}, {tok.hi:.3f}]" if tok else f"{mean_t:.3f}" if mean_t is not None
                 else f"not reached in {e.not_reached} of {len(e.seeds)} seeds")
        sec_s = (f"{sec.mean:.3f} [{sec.lo:.3f}, {sec.hi:.3f}]" if sec else f"{mean_s:.3f}" if mean_s is not None
                 else "-")
        table.rows.append([e.pair.moe, e.pair.dense, e.kind, f"mean of {len(e.seeds)}", "", "", tok_s, "", sec_s,
                           f"OLMoE ~{OLMOE_TOKEN_FRACTION:.2f} tokens, ~{OLMOE_SECONDS_FRACTION:.2f} wall-clock"])
    if table.rows:
        table.notes += [
            "Fraction: tokens (or training seconds) the MoE needed to reach its equal-active twin's final held-out "
            "loss, over the twin's; below 1 the MoE is more token-efficient. Interpolated linearly in log(tokens) "
            "between the MoE's two evaluations around the crossing; '≤' where its first evaluation was already "
            "below the target; 'not reached' where it never got there.",
            "Mean rows: mean over seeds with the 95% t-interval over seeds. Reference: OLMoE-1B-7B reached "
            "OLMo-1B's quality with ~1/3 of the tokens (arXiv 2409.02060, Fig. 4) and ~1/2 the wall-clock "
            "(23.6k vs 37.5k tokens/s/GPU), at 1.3B active parameters, far above this run's size.",
            "Seconds are training wall-clock on the device named, excluding the held-out evaluations."]
    return table


# ---- sweeps -------------------------------------------------------------------------------------
def sweep_table(run: Run, series=None) -> Table:
    series = sweep_series(run) if series is None else series
    cols = ["setting", "value", "MoE", "dense twin", "equal", "task", "metric", "Δ MoE − dense (metric unit)",
            "95% CI (metric unit)", "CI from",
            "sign change"]
    table = Table("Sweeps", cols, empty="No variant carries a sweep point: no sweep in this run.")
    for s in series:
        changes = {b for _, b in s.sign_changes()}
        for i, p in enumerate(s.points):
            iv = p.interval
            table.rows.append([s.setting + (f" ({s.fixed})" if s.fixed else ""), str(p.value), s.moe, s.dense, s.kind,
                               s.task, s.metric, fmt_signed(p.mean), f"[{fmt_signed(iv[0])}, {fmt_signed(iv[1])}]" if iv else "-",
                               {"seeds": f"{p.row.n_seeds} seeds (t)",
                                "bootstrap": "docs (bootstrap)"}.get(iv[2] if iv else "", "-"),
                               f"sign changes from {s.points[i - 1].value}" if i in changes else ""])
    if table.rows:
        table.notes.append("Δ: MoE − dense twin at each point of the sweep (pairs form within one point and one "
                           "seed); CI over seeds where the point trained two or more, else the within-seed paired "
                           "bootstrap. 'sign change': Δ's sign differs from the previous point's.")
    return table


# ---- knowledge stored ---------------------------------------------------------------------------
def knowledge_bits_table(run: Run) -> Table:
    cols = (["model", "group", "total (params)"] + [f"{b} (bits/doc)" for b in BUCKETS]
            + [f"stored, {b} (bits)" for b in BUCKETS] + ["stored (bits)", "of the corpus's fact bits (fraction)",
                                                          "bits / param (ratio)", "ceiling", "acc, tail (fraction correct)",
                                                          "chance 1/V (fraction)"])
    table = Table("Knowledge stored (exact tasks)", cols,
                  empty="No exact knowledge task (<group>_values_<bucket> with a bits metric) in this run.")
    for g in values_groups(run):
        for model, variants in seed_groups(run).items():
            found = [s for s in (stored(run, v, g) for v in variants) if s is not None]
            if not found:
                continue
            col = lambda f: fmt_mean_sd([x for x in (f(s) for s in found) if x is not None], fmt_value)  # noqa: E731
            table.rows.append(
                [model, g.name, fmt_params(found[0].total_params)]
                + [col(lambda s, b=b: s.per_doc.get(b)) for b in BUCKETS]
                + [col(lambda s, b=b: (s.by_bucket or {}).get(b)) for b in BUCKETS]
                + [col(lambda s: s.bits),
                   col(lambda s: s.bits / s.fact_bits if s.bits is not None and s.fact_bits else None),
                   col(lambda s: s.bits_per_param), f"{BITS_PER_PARAM:g} bits/param",
                   col(lambda s: s.acc.get("tail")),
                   f"{found[0].chance:.4f}" if found[0].chance is not None else "-"])
    if table.rows:
        table.notes.append("bits/doc: the task's mean per-document bits (Allen-Zhu & Li, arXiv 2404.05405: log2 V "
                           "minus the cross-entropy in bits of the right value over all V values, floored at 0). "
                           "Bits stored in a bucket = mean bits/doc × entities in the bucket × attributes per "
                           "entity; bits / param = their sum / total parameters, beside the ~2 bits/param "
                           "ceiling. With seeds: mean ± sd over seeds.")
    return table


# ---- every figure over seeds ---------------------------------------------------------------------
def seeds_table(run: Run) -> Table:
    hidden = member_tasks(run) - set(heldout_tasks(run))
    tasks = [t for t in run.tasks() if t not in hidden or t.endswith("_tail")]
    shown = [(t, m) for t in tasks for m in (main_metrics(run, t) if t.endswith("_tail") else main_metrics(run, t)[:1])]
    cols = ["model", "seeds"] + [with_unit(f"{t} {m}", m) for t, m in shown] + ["final train loss (nats/token)",
                                                                              "train throughput (tokens/s)"]
    table = Table("Over seeds", cols, empty="No model was trained with more than one seed.")
    if not has_seeds(run):
        return table
    for model, variants in seed_groups(run).items():
        cells = []
        for t, m in shown:
            vals = [run.metrics(v).get(t, {}).get(m) for v in variants]
            cells.append(fmt_mean_sd([float(x) for x in vals if isinstance(x, (int, float))], fmt_value))
        train = [run.training(v) or {} for v in variants]
        for k in ("final_loss", "tokens_per_s"):
            cells.append(fmt_mean_sd([float(t[k]) for t in train if isinstance(t.get(k), (int, float))], fmt_value))
        table.rows.append([model, ", ".join(str(v.rsplit("#s", 1)[-1]) for v in variants) if len(variants) > 1
                           else "1"] + cells)
    table.notes.append("mean ± sample standard deviation over training seeds (the seeds column lists them).")
    return table


def seed_pairs_table(run: Run) -> Table:
    """Each pair's difference seed by seed, with that seed's paired bootstrap over documents, then the
    mean over seeds with its t-interval: the two kinds of interval side by side."""
    cols = ["MoE (or routing)", "twin (or native)", "equal", "task", "metric", "seed", "Δ (metric unit)",
            "95% CI (metric unit)",
            "CI from"]
    table = Table("Pair differences seed by seed", cols, empty="No pair was trained with more than one seed.")
    if not has_seeds(run):
        return table
    pairs = model_pairs(run, native_only=True) + routing_pairs(run)
    for pair in pairs:
        if len(pair.seeds) < 2:
            continue
        for task, metric in sweep_tasks(run):
            rows, diffs = [], []
            for a, b in pair.seeds:
                va, vb = run.metrics(a).get(task, {}).get(metric), run.metrics(b).get(task, {}).get(metric)
                if not (isinstance(va, (int, float)) and isinstance(vb, (int, float))):
                    continue
                d = paired_diff(task_samples(run, a, task), task_samples(run, b, task), metric)
                diffs.append(va - vb)
                rows.append([seed_label(a), fmt_signed(va - vb), f"[{fmt_signed(d.lo)}, {fmt_signed(d.hi)}]" if d else "-",
                             f"{d.n} docs (bootstrap)" if d else "-"])
            if not rows:
                continue
            head = [pair.moe, pair.dense, pair.kind, task, metric]
            table.rows += [head + r for r in rows]
            ci = t_interval(diffs)
            if ci is not None:
                table.rows.append(head + [f"mean of {ci.n}", fmt_signed(ci.mean), f"[{fmt_signed(ci.lo)}, {fmt_signed(ci.hi)}]",
                                          f"{ci.n} seeds (t)"])
    if table.rows:
        table.notes.append("Δ: first − second of the same seed. Per seed: the paired bootstrap over the documents "
                           "both answered (evaluation noise of that one trained pair); mean rows: the t-interval "
                           "over the per-seed Δ (training noise, n − 1 degrees of freedom).")
    return table


# ---- routing on the trained MoE -------------------------------------------------------------------
def routing_answers_table(run: Run) -> Table:
    pairs = routing_pairs(run)
    tasks = [(t, "bits_per_byte") for t in heldout_tasks(run)]
    tasks += [(g.tasks["tail"], "bits") for g in values_groups(run) if "tail" in g.tasks]
    cols = ["routing", "role", "variants (model)"] + [with_unit(f"{t} {m}", m) for t, m in tasks]
    table = Table("Trained MoE under each routing", cols,
                  empty="No trained MoE evaluated under more than its native routing.")
    natives = {}
    for p in pairs:
        natives.setdefault(p.dense, [b for _, b in p.seeds])
    for native, variants in natives.items():
        rows = [(native, "native", "native", variants)] + [
            (p.moe, run.routing_name(p.seeds[0][0]), strategy_role(run, *p.seeds[0]), [a for a, _ in p.seeds])
            for p in pairs if p.dense == native]
        for name, routing, role, vs in rows:
            cells = [fmt_mean_sd([float(x) for x in (run.metrics(v).get(t, {}).get(m) for v in vs)
                                  if isinstance(x, (int, float))], fmt_value) for t, m in tasks]
            table.rows.append([routing, role, name] + cells)
    if table.rows:
        table.notes.append("The same trained checkpoints, evaluated under each routing strategy: held-out bits per "
                           "byte (lower is better) and tail-bucket knowledge bits per fact (higher is better); "
                           "mean ± sd over seeds.")
    return table
