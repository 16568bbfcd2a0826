"""A run folder, read back: plan, suite and job results, with the look-ups the report needs.

Torch-free. Everything tolerates partial runs: failed jobs, missing kinds, absent optional fields.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from moe_schema.merge import merge_routing  # noqa: F401  (telemetry of a sharded evaluation: shared)


def telemetry(result: dict) -> dict | None:
    """A result's routing telemetry; a merged sharded evaluation's per-shard telemetry, summed."""
    routing = result.get("routing")
    if not isinstance(routing, dict) and isinstance(result.get("routing_shards"), list):
        routing = merge_routing(result["routing_shards"])
    return routing if isinstance(routing, dict) else None

#: metrics where a smaller value is better (everything else: larger is better)
LOWER_IS_BETTER = ("perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "loss", "ter")
#: metric names tried first when a task has several
PREFERRED_METRICS = ("acc", "acc_norm", "exact_match", "f1", "mcc", "bleu")
#: relative tolerance for equal-active / equal-total pairing when neither plan nor suite names one
DEFAULT_PAIR_TOLERANCE = 0.10


class ReportError(Exception):
    """A run folder or baseline file the report cannot read; the message names the file and the problem."""


def lower_is_better(metric: str) -> bool:
    base = metric.split(",")[0]
    return base in LOWER_IS_BETTER or base.endswith("perplexity")


def is_stderr(metric: str) -> bool:
    return metric.split(",")[0].endswith("_stderr")


def metric_names(values: dict) -> list[str]:
    """The non-stderr numeric metric names of one task's metrics dict, preferred ones first."""
    names = [k for k, v in values.items()
             if not is_stderr(k) and isinstance(v, (int, float)) and not isinstance(v, bool)]
    return sorted(names, key=lambda m: (PREFERRED_METRICS.index(m) if m in PREFERRED_METRICS else 99, names.index(m)))


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def _usable(record, where: str) -> bool:
    """Does a stored record pass the record schema (``moe_schema.result.check_record``), with a
    string variant and task? One that does not (a hand edit, a truncated write, another tool's
    line) is skipped with one warning line naming the file and the line, so one bad record never
    takes the report, ``compare`` or ``check`` down with it."""
    from moe_schema.check import SchemaError
    from moe_schema.result import check_record

    try:
        check_record(record)
        for key in ("variant", "task"):
            if record.get(key) is not None and not isinstance(record[key], str):
                raise SchemaError(f"record.{key}", f"expected a string, got {type(record[key]).__name__}")
    except SchemaError as e:
        print(f"warning: {where}: skipped a malformed record: {e}", file=sys.stderr)
        return False
    return True


@dataclass
class Pair:
    """An MoE variant and its dense twin at equal ``kind`` ("active" or "total") parameters."""

    kind: str
    moe: str
    dense: str
    ratio: float  # the dense twin's parameter count over the MoE variant's, for ``kind``


@dataclass
class Run:
    path: Path
    plan: dict
    suite: dict
    records: list[dict]
    variant_order: list[str] = field(default_factory=list)
    price_overrides: dict = field(default_factory=dict)  # --price KEY=USD (moe_schema.devices.parse_price_args)
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir) -> "Run":
        path = Path(run_dir)
        if not path.is_dir():
            raise ReportError(f"{path}: no such run folder")
        plan = _read_json(path / "plan.json") if (path / "plan.json").is_file() else {}
        if not isinstance(plan, dict):
            raise ReportError(f"{path / 'plan.json'}: expected a JSON object, got {type(plan).__name__}")
        suite = {}
        if (path / "suite.yaml").is_file():
            try:
                suite = yaml.safe_load((path / "suite.yaml").read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as e:
                raise ReportError(f"{path / 'suite.yaml'}: not valid YAML ({e})") from None
        records = cls._load_records(path)
        if not records and not plan:
            raise ReportError(f"{path}: neither results.jsonl, jobs/*.json nor plan.json found; is this a run folder?")
        order = [v["name"] for v in plan.get("variants", []) if isinstance(v, dict) and "name" in v]
        for r in records:
            if r.get("variant") and r["variant"] not in order:
                order.append(r["variant"])
        return cls(path=path, plan=plan, suite=suite if isinstance(suite, dict) else {}, records=records,
                   variant_order=order)

    @staticmethod
    def _load_records(path: Path) -> list[dict]:
        by_key: dict[str, dict] = {}
        jsonl = path / "results.jsonl"
        if jsonl.is_file():
            for i, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ReportError(f"{jsonl}:{i}: not valid JSON ({e.msg})") from None
                if not isinstance(rec, dict):
                    raise ReportError(f"{jsonl}:{i}: expected a JSON object, got {type(rec).__name__}")
                if _usable(rec, f"{jsonl}:{i}"):
                    by_key[rec["key"]] = rec  # a later line for the same key wins
        elif (path / "jobs").is_dir():
            for f in sorted((path / "jobs").glob("*.json")):
                rec = _read_json(f)
                if _usable(rec, str(f)):
                    by_key[rec["key"]] = rec
            merged = {(r.get("variant"), r.get("task")) for r in by_key.values() if r.get("merged_from")}
            by_key = {k: r for k, r in by_key.items() if not (r.get("shard") and (r.get("variant"), r.get("task")) in merged)}
        return list(by_key.values())

    # ---- look-ups ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.plan.get("suite") or self.suite.get("name") or self.path.name

    @property
    def variants(self) -> list[str]:
        return list(self.variant_order)

    def ok(self, kind: str | None = None, variant: str | None = None) -> list[dict]:
        return [r for r in self.records if r.get("status", "ok") == "ok"
                and (kind is None or r.get("kind") == kind) and (variant is None or r.get("variant") == variant)]

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r.get("status", "ok") != "ok"]

    def spec(self, variant: str) -> dict:
        for v in self.plan.get("variants", []):
            if isinstance(v, dict) and v.get("name") == variant:
                return v
        for r in self.records:
            if r.get("variant") == variant and isinstance(r.get("spec"), dict):
                return r["spec"].get("variant", {}) or {}
        return {}

    def params(self, variant: str) -> dict:
        """Parameter accounting: a describe result first, else any result carrying params."""
        for kind in ("describe", "evaluate", "probe", "train"):
            for r in self.ok(kind, variant):
                if isinstance(r.get("params"), dict):
                    return r["params"]
        return {}

    def untrained(self, variant: str) -> bool:
        """True for a build with random weights: instantiated from a config and never trained
        (no ``trained`` source, no train result). Checkpoints and trained builds are False."""
        build = self.spec(variant).get("build") or {}
        return isinstance(build, dict) and "config" in build and not build.get("trained") \
            and self.training(variant) is None

    def build(self, variant: str) -> dict:
        for r in self.ok(None, variant):
            if isinstance(r.get("build"), dict):
                return r["build"]
        return {}

    def is_moe(self, variant: str) -> bool:
        spec = self.spec(variant)
        if "is_moe" in spec:
            return bool(spec["is_moe"])
        if "moe" in self.build(variant):
            return bool(self.build(variant)["moe"])
        return bool(self.params(variant).get("num_experts"))

    def routing_name(self, variant: str) -> str:
        routing = self.spec(variant).get("routing")
        if not routing:
            return "native" if self.is_moe(variant) else "-"
        params = routing.get("params") or {}
        inner = ",".join(f"{k}={v}" for k, v in params.items())
        return f"{routing.get('name')}({inner})" if inner else str(routing.get("name"))

    def metrics(self, variant: str) -> dict[str, dict]:
        """{task: {metric: value}} over the variant's evaluations (read-only: cached)."""
        if ("metrics", variant) in self._memo:
            return self._memo[("metrics", variant)]
        out: dict[str, dict] = self._memo.setdefault(("metrics", variant), {})
        for r in self.ok("evaluate", variant):
            for task, values in (r.get("metrics") or {}).items():
                out.setdefault(task, {}).update(values)
        return out

    def samples(self, variant: str) -> dict[str, list]:
        """{task: per-document samples} over the variant's evaluations (read-only: cached)."""
        if ("samples", variant) in self._memo:
            return self._memo[("samples", variant)]
        out: dict[str, list] = self._memo.setdefault(("samples", variant), {})
        for r in self.ok("evaluate", variant):
            for task, rows in (r.get("samples") or {}).items():
                out.setdefault(task, []).extend(rows)
        return out

    def tasks(self) -> list[str]:
        seen: list[str] = []
        for v in self.variants:
            for t in self.metrics(v):
                if t not in seen:
                    seen.append(t)
        return seen

    def task_metrics(self, task: str) -> list[str]:
        """Metric names of ``task`` across all variants, preferred first."""
        merged: dict = {}
        for v in self.variants:
            merged.update({k: val for k, val in self.metrics(v).get(task, {}).items() if k not in merged})
        return metric_names(merged)

    def evaluation(self, variant: str, task: str) -> dict | None:
        """The variant's ok evaluate result that holds ``task`` (its samples or its metrics)."""
        return next((r for r in self.ok("evaluate", variant)
                     if task in (r.get("samples") or {}) or task in (r.get("metrics") or {})), None)

    def routing(self, variant: str) -> dict | None:
        return self.routing_with_source(variant)[0]

    def routing_with_source(self, variant: str) -> tuple[dict | None, str]:
        """(routing telemetry, the job kind it came from): evaluation first (the real task tokens),
        else probes, describe, train. Telemetry that saw no token (a describe job's) is skipped; a
        merged sharded evaluation's per-shard telemetry is summed."""
        for kind in ("evaluate", "probe", "describe", "train"):
            for r in self.ok(kind, variant):
                routing = telemetry(r)
                if routing is not None and any(
                        sum(c for c in (l.get("tokens_per_expert") or []) if isinstance(c, (int, float))) > 0
                        for l in routing.get("layers") or []):
                    return routing, kind
        return None, ""

    def lower_is_better(self, task: str, metric: str) -> bool:
        """From the evaluation's own ``higher_is_better`` where recorded, else by the metric's name."""
        for r in self.ok("evaluate"):
            hib = (r.get("higher_is_better") or {}).get(task)
            if isinstance(hib, dict) and isinstance(hib.get(metric), bool):
                return not hib[metric]
        return lower_is_better(metric)

    def probes(self, variant: str | None = None) -> list[tuple[str, dict]]:
        """(variant, probe dict) for every ok probe result."""
        out = []
        for r in self.ok("probe", variant):
            if isinstance(r.get("probe"), dict):
                probe = dict(r["probe"])
                if not probe.get("name"):
                    job_probe = (r.get("spec") or {}).get("probe")
                    probe["name"] = job_probe.get("name") if isinstance(job_probe, dict) else "probe"
                out.append((r.get("variant"), probe))
        return out

    def trained_by(self, variant: str) -> list[dict]:
        """The train results behind a variant: its own, else those of the train job whose key its build
        names (``{"trained": key}``: the same checkpoint on another engine or under another router)."""
        own = self.ok("train", variant)
        if own:
            return own
        key = (self.spec(variant).get("build") or {}).get("trained")
        return [r for r in self.ok("train") if key is not None and (r.get("build") or {}).get("train_key") == key]

    def training(self, variant: str) -> dict | None:
        for r in self.trained_by(variant):
            if isinstance(r.get("train"), dict):
                return r["train"]
        return None

    def seed_of(self, variant: str) -> list:
        seeds = set()
        for r in self.records:
            if r.get("variant") != variant:
                continue
            spec = r.get("spec") or {}
            if "seed" in spec:
                seeds.add(spec["seed"])
        build = self.spec(variant).get("build") or {}
        if "seed" in build:
            seeds.add(f"build:{build['seed']}")
        return sorted(seeds, key=str)

    # ---- prices (harness.report.costs) ------------------------------------------------------
    def suite_prices(self) -> dict:
        """The suite's ``prices:`` (plan.json, else suite.yaml), checked; {} when absent."""
        from moe_schema.devices import check_prices
        from moe_schema.check import SchemaError

        for source in (self.plan, self.suite):
            if isinstance(source.get("prices"), dict):
                try:
                    return check_prices("prices", source["prices"])
                except SchemaError as e:
                    raise ReportError(f"{self.path}: {e}") from None
        return {}

    def prices(self) -> dict[str, float]:
        """USD per device-hour: the defaults, then the suite's ``prices:``, then ``--price``."""
        from moe_schema.devices import price_table

        return price_table(self.suite_prices(), self.price_overrides)

    # ---- pairs ---------------------------------------------------------------------------
    def pair_tolerance(self) -> float:
        """The suite's ``pairing.tolerance`` (from plan.json, else suite.yaml), else the suite default."""
        for source in (self.plan, self.suite):
            pairing = source.get("pairing")
            if isinstance(pairing, dict) and isinstance(pairing.get("tolerance"), (int, float)):
                return float(pairing["tolerance"])
        return DEFAULT_PAIR_TOLERANCE

    def pairs(self) -> list[Pair]:
        """Equal-active and equal-total pairs from described parameters (``harness.pairs.match_pairs``).

        Falls back to the pairs recorded in plan.json when the matcher is not available.
        """
        params = {v: self.params(v) for v in self.variants if self.params(v)}
        is_moe = {v: self.is_moe(v) for v in params}
        try:
            from harness.pairs import match_pairs
        except ImportError:
            match_pairs = None
        if match_pairs is not None and params:
            raw = match_pairs(params, is_moe, self.pair_tolerance())
        else:
            raw = self.plan.get("pairs") or []
        return [_as_pair(p) for p in raw]


def _as_pair(p) -> Pair:
    get = (lambda k: p.get(k)) if isinstance(p, dict) else (lambda k: getattr(p, k, None))
    ratio = get("ratio")
    return Pair(kind=str(get("kind")), moe=str(get("moe")), dense=str(get("dense")),
                ratio=float(ratio) if isinstance(ratio, (int, float)) else float("nan"))
