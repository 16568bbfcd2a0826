"""Cost per answer: what a correct answer and a million tokens cost on the device that produced them.

Prices are US dollars per device-hour from ``moe_schema.devices`` (the one device table), replaced by
the suite's ``prices:`` key and then by ``--price KEY=USD`` (``harness run`` / ``harness report``).
The device of a result is its ``env.device_name`` (an accelerator the table knows by name) or, on a
CPU, ``cpu``; a device the table does not know has no price, and its cells say so.

- seconds per correct answer = evaluation seconds / correct answers, per (variant, MC task); the
  seconds are the evaluate job's ``eval_s`` (else its ``timings.run_s``), shared among the tasks of
  one job by their document counts; correct answers = the sum of the documents' ``acc`` (else
  ``acc`` × documents);
- USD per correct answer = seconds per correct answer × USD per hour / 3600;
- USD per 1M tokens = USD per hour / 3600 / (tokens/s) × 10^6, for every throughput row.
"""

from __future__ import annotations

from dataclasses import dataclass

from moe_schema import devices
from harness.report.numbers import fmt, fmt_usd
from harness.report.run import Run
from harness.report.tables import Table

MC_METRIC = "acc"


def prices(run: Run) -> dict[str, float]:
    return run.prices()


def price_of(run: Run, device_name: str | None, device_kind: str | None = None) -> tuple[str | None, float | None]:
    """(price key, USD per hour) of a device, (None, None) when the table has no price for it."""
    key = devices.price_key(device_name, device_kind)
    return key, (prices(run).get(key) if key else None)


def record_device(record: dict) -> tuple[str | None, str | None]:
    env = record.get("env") if isinstance(record.get("env"), dict) else {}
    return env.get("device_name"), env.get("device")


def variant_device(run: Run, variant: str, kind: str | None = None) -> tuple[str | None, str | None]:
    """(device name, device kind) of the first ok result of ``variant`` (of ``kind``) that names one."""
    for r in run.ok(kind, variant):
        name, dev = record_device(r)
        if name or dev:
            return name, dev
    return None, None


@dataclass
class AnswerCost:
    variant: str
    task: str
    docs: int
    correct: float
    seconds: float
    device: str
    key: str | None
    usd_per_hour: float | None

    @property
    def accuracy(self) -> float:
        return self.correct / self.docs if self.docs else float("nan")

    @property
    def seconds_per_correct(self) -> float | None:
        return self.seconds / self.correct if self.correct > 0 else None

    @property
    def usd_per_correct(self) -> float | None:
        s = self.seconds_per_correct
        return devices.usd(s, self.usd_per_hour) if s is not None and self.usd_per_hour is not None else None


def _num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def answer_costs(run: Run) -> list[AnswerCost]:
    """Per (variant, MC task): documents, correct answers, evaluation seconds and their device."""
    acc: dict[tuple[str, str], dict] = {}
    for v in run.variants:
        for r in run.ok("evaluate", v):
            seconds = r.get("eval_s") if _num(r.get("eval_s")) else (r.get("timings") or {}).get("run_s")
            if not _num(seconds):
                continue
            samples = r.get("samples") or {}
            tasks = [t for t, m in (r.get("metrics") or {}).items() if isinstance(m, dict) and _num(m.get(MC_METRIC))]
            docs = {t: len(samples.get(t) or []) for t in tasks}
            total_docs = sum(docs.values())
            if not tasks or total_docs == 0:
                continue
            name, kind = record_device(r)
            for t in tasks:
                rows = samples.get(t) or []
                per_doc = [d.get(MC_METRIC) for d in rows if isinstance(d, dict) and _num(d.get(MC_METRIC))]
                correct = float(sum(per_doc)) if len(per_doc) == len(rows) else r["metrics"][t][MC_METRIC] * len(rows)
                cell = acc.setdefault((v, t), {"docs": 0, "correct": 0.0, "seconds": 0.0, "device": (name, kind)})
                cell["docs"] += docs[t]
                cell["correct"] += correct
                cell["seconds"] += seconds * docs[t] / total_docs
    out = []
    for (v, t), c in acc.items():
        name, kind = c["device"]
        key, price = price_of(run, name, kind)
        out.append(AnswerCost(v, t, c["docs"], c["correct"], c["seconds"], name or kind or "?", key, price))
    return out


def cost_per_answer_table(run: Run, costs: list[AnswerCost] | None = None) -> Table:
    costs = answer_costs(run) if costs is None else costs
    cols = ["variant", "task", "accuracy (fraction correct)", "documents (count)", "correct answers (count)",
            "evaluation time (s)", "time per correct answer (s)", "device", "price (USD/hour)",
            "cost per correct answer (USD)", "cost per 1,000 correct answers (USD)"]
    table = Table("Cost per correct answer", cols,
                  empty="No multiple-choice task (an acc metric) with a measured evaluation time in this run.")
    for c in costs:
        usd = c.usd_per_correct
        table.rows.append([c.variant, c.task, fmt(c.accuracy), f"{c.docs:,}", (f"{int(c.correct):,}" if float(c.correct).is_integer() else fmt(c.correct)), fmt(c.seconds),
                           fmt(c.seconds_per_correct) if c.seconds_per_correct is not None else "no correct answer",
                           c.device + (f" ({c.key})" if c.key else ""),
                           fmt(c.usd_per_hour) if c.usd_per_hour is not None else "no price",
                           fmt_usd(usd) if usd is not None else "-", fmt_usd(usd * 1000) if usd is not None else "-"])
    if table.rows:
        table.notes.append("Time: the evaluation job's seconds (shared among its tasks by document count); cost: that "
                           "time at the device's price per hour. Correct answers: documents scored correct (acc). "
                           "Compare variants on one device; TokenArena (arXiv 2605.00300) found dollars per correct "
                           "answer varying 6.2x for one model across endpoints.")
    return table


def prices_table(run: Run) -> Table:
    """The prices this report used, and where each came from."""
    table = Table("Device prices used", ["device", "price (USD/hour)", "from"], empty="")
    suite = run.suite_prices()
    used = {c.key for c in answer_costs(run) if c.key} | {k for k in (probe_price_keys(run)) if k}
    for key in sorted(used):
        src = ("command line (--price)" if key in run.price_overrides else "suite (prices:)" if key in suite
               else "default (moe_schema/devices.py)")
        table.rows.append([key, fmt(prices(run)[key]), src])
    if table.rows:
        table.notes.append("Override with the suite's `prices: {h100: 2.5}` or `--price h100=2.5` (repeatable).")
    return table


def probe_price_keys(run: Run) -> set:
    keys = set()
    for v, p in run.probes():
        keys.add(probe_price(run, v, p)[0])
    return keys


def probe_price(run: Run, variant: str, probe: dict) -> tuple[str | None, float | None]:
    """(key, USD per hour) of the device a probe ran on: its ``device.name``, else its variant's device."""
    d = probe.get("device") if isinstance(probe.get("device"), dict) else {"name": probe.get("device")}
    name, kind = variant_device(run, variant, "probe")
    key, price = price_of(run, d.get("name") or name, kind)
    return key, price


def usd_per_million(tokens_per_s, usd_per_hour) -> float | None:
    if not _num(tokens_per_s) or tokens_per_s <= 0 or usd_per_hour is None:
        return None
    return devices.usd_per_million_tokens(tokens_per_s, usd_per_hour)
