"""What made the numbers: suite, job counts, versions, git sha, devices, seeds, timings, failures."""

from __future__ import annotations

import subprocess
from pathlib import Path

from harness.report.run import Run
from harness.report.tables import Table

#: the repository the harness runs from (the code that planned and ran the jobs)
REPO = Path(__file__).resolve().parents[2]


def git_sha(repo: Path = REPO) -> str:
    """``git rev-parse HEAD`` of ``repo`` (with " (modified)" when the tree has changes), else "unknown"."""
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if sha.returncode != 0 or not sha.stdout.strip():
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return sha.stdout.strip() + (" (modified)" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _seeds_line(run: Run) -> str:
    eval_seeds, train_seeds, build_seeds = set(), set(), set()
    for r in run.records:
        spec = r.get("spec") or {}
        if r.get("kind") == "train" and "seed" in spec:
            train_seeds.add(spec["seed"])
        elif "seed" in spec:
            eval_seeds.add(spec["seed"])
    for v in run.variants:
        spec = run.spec(v)
        if "train_seed" in spec:
            train_seeds.add(spec["train_seed"])
        if isinstance((spec.get("build") or {}).get("seed"), int):
            build_seeds.add(spec["build"]["seed"])
    parts = [f"{what} {', '.join(map(str, sorted(s, key=str)))}" for what, s in
             (("evaluation/probe", eval_seeds), ("training", train_seeds), ("build init", build_seeds)) if s]
    return "; ".join(parts) or "not recorded"


def coordinator_line(summary: dict) -> str:
    """The coordinator's summary of a run (``harness.run.add_summary``) in one line:
    ``1 worker lost (ipc://...: silent for 2.0 s), 1 job quarantined (3f2a...), 0 late replies``."""
    lost, quarantined = summary.get("lost") or [], summary.get("quarantined") or []
    plural = lambda n, word: f"{n} {word}{'' if n == 1 else 's'}"  # noqa: E731
    parts = [plural(len(lost), "worker") + " lost" + (f" ({'; '.join(lost)})" if lost else ""),
             plural(len(quarantined), "job") + " quarantined"
             + (f" ({', '.join(k[:12] for k in quarantined)})" if quarantined else ""),
             plural(summary.get("late_replies") or 0, "late reply").replace("replys", "replies")]
    if summary.get("not_run"):
        parts.append(f"{len(summary['not_run'])} not run (stopped)")
    return "coordinator: " + ", ".join(parts)


def provenance_table(run: Run, repo_sha: str | None = None) -> Table:
    table = Table("Provenance", ["item", "value"])
    records = run.records
    kinds: dict[str, list] = {}
    for r in records:
        kinds.setdefault(r.get("kind", "?"), []).append(r)
    versions, devices, hosts, shas = {}, set(), set(), set()
    for r in records:
        env = r.get("env") or {}
        if env.get("device"):
            devices.add(f"{env['device_name']} ({env['device']})" if env.get("device_name") else str(env["device"]))
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
    add("git sha (harness repository, at report time)", repo_sha if repo_sha is not None else git_sha())
    if shas:
        add("git sha (recorded by workers)", ", ".join(sorted(shas)))
    add("devices", ", ".join(sorted(devices)) or "not recorded")
    add("hosts", ", ".join(sorted(hosts)) or "not recorded")
    add("seeds", _seeds_line(run))
    coordinator = run.plan.get("coordinator")
    add("coordinator", coordinator_line(coordinator).removeprefix("coordinator: ") if coordinator
        else "no jobs dispatched by the last `harness run` (all reused), or not recorded")
    total_load = total_run = 0.0
    for kind, recs in sorted(kinds.items()):
        load = sum((r.get("timings") or {}).get("load_s", 0) or 0 for r in recs)
        run_s = sum((r.get("timings") or {}).get("run_s", 0) or 0 for r in recs)
        cached = sum(1 for r in recs if (r.get("timings") or {}).get("model_cached"))
        merged = sum(1 for r in recs if r.get("merged_from"))
        total_load, total_run = total_load + load, total_run + run_s
        add(f"time: {kind}", f"load {load:.1f} s, run {run_s:.1f} s over {len(recs)} jobs ({cached} on a cached model"
            + (f", {merged} merged from shards" if merged else "") + ")")
    add("time: total", f"load {total_load:.1f} s, run {total_run:.1f} s (worker time, summed over jobs)")
    for r in run.failed:
        what = r.get("task") or r.get("probe") or ""
        if isinstance(what, dict):
            what = what.get("name", "")
        add("FAILED", f"{r.get('kind')} {r.get('variant')} {what}: {r.get('error')} (attempts: {r.get('attempts')})")
    return table
