"""`harness run SUITE`: plan the jobs, skip the ones already done, dispatch the rest, report.

Every result is written the moment its job finishes, so an interrupted run loses nothing:
running it again (same or new folder) skips every job whose key already has a result.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import threading
import time
from pathlib import Path

import attrs
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from harness import plan as planner
from harness.pairs import match_pairs
from harness.store import Store, write_atomic, write_json_atomic
from harness.suite import Suite, load
from moe_schema.result import RECORD_KEYS
from moe_schema.devices import parse_price_args

console = Console(stderr=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", type=Path, help="suite YAML file")
    p.add_argument("--out", type=Path, help="run folder (default reports/<suite>-<UTC time>)")
    p.add_argument("--workers", help="worker endpoints, comma-separated, or @FILE with one per line, e.g. "
                                     "a cluster job's endpoints file (default: the suite's, else start local daemons)")
    p.add_argument("--workers-wait", type=float, default=600.0, metavar="SECONDS",
                   help="how long to wait for a --workers @FILE that is not there yet (default 600)")
    p.add_argument("--local-workers", type=int, help="how many local daemons to start (default: the suite's)")
    p.add_argument("--device", default="cpu", help="device for local daemons (default cpu)")
    p.add_argument("--threads", type=int, help="CPU threads per local daemon (default: torch's own for one "
                                               "CPU daemon, the cores shared out among several)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds of silence before a worker is lost")
    p.add_argument("--keys", type=Path, help="CURVE key folder (from `harness keys`: DIR or DIR/client) for "
                                             "tcp workers (local ipc daemons never use it)")
    p.add_argument("--shared-fs", action="store_true", help="every worker sees local task folders at their "
                   "paths (lets task folders over the shipping limit run on workers on other hosts)")
    p.add_argument("--no-cache", action="store_true", help="ignore the shared result cache")
    p.add_argument("--no-report", action="store_true", help="skip writing the report")
    p.add_argument("--scale", help="pick one entry of the suite's `scales:` (its size knob)")
    p.add_argument("--price", action="append", default=[], metavar="DEVICE=USD",
                   help="USD per device-hour for the report's costs, e.g. h100=2.5 (repeatable; moe_schema/devices.py)")


def run_folder(suite: Suite, out: Path | None) -> Path:
    if out is not None:
        return out
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return Path("reports") / f"{suite.name}-{stamp}"


def parse_endpoints(value: str | None, suite_workers: tuple[str, ...], wait_s: float = 0.0,
                    keys: Path | None = None) -> list[str]:
    """The workers to use: ``--workers`` (endpoints and ``@FILE``s), else the suite's; [] means start
    local daemons, which happens only when neither names any: a ``--workers`` that resolves to no
    endpoint is an EndpointsError, never a silent fallback. An ``@FILE`` is waited for and checked
    (harness/endpoints.py: missing after the wait, empty, stale)."""
    from harness.endpoints import EndpointsError, read_for_run
    from moe_schema.protocol import is_loopback  # torch-free

    given = value is not None
    items = [w.strip() for w in value.split(",")] if given else list(suite_workers)
    out: list[str] = []
    for item in items:
        if not item:
            continue
        if item.startswith("@"):
            out.extend(read_for_run(Path(item[1:]), wait_s, keys, say=lambda m: console.print(
                m, markup=False, highlight=False, soft_wrap=True)))
        else:
            try:
                is_loopback(item)
            except ValueError as exc:
                raise EndpointsError(f"--workers: {exc}") from None
            out.append(item)
    if given and not out:
        raise EndpointsError(f"--workers {value!r}: names no endpoint (refusing to start local daemons instead)")
    return out


def record_for(job: planner.PlannedJob, outcome: dict, authenticated: bool | None = True) -> dict:
    """One line of results.jsonl: the job's identity, its status and the worker's result, and
    whether that worker authenticated (harness.endpoints.authenticated; only such results are shared)."""
    rec = job.summary()
    rec.update(status=outcome["status"], error=outcome.get("error"), attempts=outcome.get("attempts", 1),
               worker=outcome.get("worker"), authenticated=authenticated, spec=job.spec)
    rec.update(outcome.get("result") or {})
    for field, empty in (("params", None), ("metrics", {}), ("timings", {})):
        rec.setdefault(field, empty)  # every line has them, whatever the job kind or outcome
    return rec


def compute_pairs(suite: Suite, records: list[dict]) -> list[dict]:
    params, is_moe = {}, {}
    for r in records:
        if r.get("kind") == "describe" and r.get("status") == "ok":
            params[r["variant"]] = r["params"]
            is_moe[r["variant"]] = bool(r.get("build", {}).get("moe"))
    return [p.to_dict() for p in match_pairs(params, is_moe, suite.pairing.tolerance)]


class _Interrupts:
    """Ctrl-C once: stop dispatching, let running jobs finish. Twice: cancel them."""

    def __init__(self):
        self.stop = threading.Event()
        self.cancel = threading.Event()
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if not self.stop.is_set():
            self.stop.set()
            console.print("[yellow]Ctrl-C: no new jobs; running jobs finish (Ctrl-C again cancels them)[/]")
        else:
            self.cancel.set()
            console.print("[red]Ctrl-C again: cancelling running jobs[/]")

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _phases(jobs: list[planner.PlannedJob]) -> list[list[planner.PlannedJob]]:
    """Train jobs first: the other jobs of a trained variant load its checkpoint."""
    train = [j for j in jobs if j.kind == "train"]
    rest = [j for j in jobs if j.kind != "train"]
    return [p for p in (train, rest) if p]


def execute(suite: Suite, jobs: list[planner.PlannedJob], store: Store, endpoints: list[str],
            local_workers: int, device: str, timeout: float, keys: Path | None,
            threads: int | None = None, coordinator: dict | None = None) -> dict[str, int]:
    """Run the jobs that have no result yet, phase by phase; return counts by status. ``coordinator``,
    when given, receives the coordinator's summary of the phases it ran (``add_summary``)."""
    counts = {"reused": 0, "ok": 0, "failed": 0, "not run": 0}
    todo = []
    for job in jobs:
        if store.done(job.key, job.kind, job.variant):
            counts["reused"] += 1
        else:
            todo.append(job)
    if not todo:
        return counts

    from harness.coordinator import Coordinator, Job  # ZeroMQ, no torch
    from harness.endpoints import authenticated
    from harness.local import start_local_workers

    started = None
    if not endpoints:
        n = min(local_workers, len(todo))
        console.print(f"starting {n} local worker daemon(s) on {device} ...")
        if not threads and device == "cpu" and n > 1:  # several CPU daemons share the cores, not oversubscribe
            import os

            threads = max(1, (os.cpu_count() or 1) // n)
        extra = ("--threads", str(threads)) if threads else ()
        if keys is not None:
            console.print("--keys: no tcp workers; local daemons listen on ipc sockets, without CURVE")
        started = start_local_workers(n, device=device, extra_args=extra)
        endpoints = list(started.endpoints)
    finished: set[str] = set()
    disk_errors: list[OSError] = []  # results that could not be stored (disk full, read-only)
    unshared: set[str] = set()  # workers whose results are not shared (harness.endpoints.authenticated)
    by_key = {j.key: j for j in todo}
    bundles: dict[str, dict | None] = {}  # task yaml path -> its folder's files, read once per run
    try:
        coord = Coordinator(endpoints, timeout_s=timeout, client_keys=keys,
                            exited=started.exit_reason if started is not None else None)
        # every worker answers before the first dispatch, so the first jobs spread over all of them
        for info in coord.hello():
            if "error" in info:
                console.print(f"[yellow]worker {info['endpoint']}: {info['error']}; going on without it[/]")
            else:
                loaded = len((info.get("holds") or {}).get("builds", []))
                engines = info.get("engines") if isinstance(info.get("engines"), dict) else {}
                hosts = f", engines {', '.join(f'{k} {v}' for k, v in engines.items())}" if engines else ""
                console.print(f"worker {info['endpoint']}: {info.get('device')} "
                              f"({(info.get('device_info') or {}).get('name', '?')}), {loaded} build(s) loaded{hosts}")
        with _Interrupts() as interrupts, Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.fields[note]}", markup=False), console=console, transient=False,
        ) as progress:
            bar = progress.add_task("jobs", total=len(todo), note="")
            coord.on_lost = lambda endpoint, reason: progress.console.print(f"[red]lost[/] {endpoint}: {reason}")

            held: dict = {}  # key -> its cross-run lock (harness.store.Store.lock), while this run runs it

            def on_result(job, outcome):
                planned = by_key[job.key]
                worker = outcome.get("worker")  # None: the job never reached one
                trusted = authenticated(worker, keys is not None) if worker else None
                if trusted is False and worker not in unshared:
                    unshared.add(worker)
                    progress.console.print(f"worker {escape(worker)} did not authenticate (tcp without --keys, or a "
                                           "socket not ours): its results stay in this run folder, out of the "
                                           "shared cache", style="yellow")
                try:
                    record = store.put(planned.key, record_for(planned, outcome, trusted),  # checked: see harness.store
                                       share=bool(trusted))
                except OSError as exc:  # disk full / read-only: no new jobs; running ones finish and are kept
                    if not disk_errors:
                        progress.console.print(f"[red]cannot write {escape(str(exc.filename))}: [Errno {exc.errno}] "
                                               f"{escape(exc.strerror or '')}[/]: no new jobs; running jobs finish")
                        interrupts.stop.set()
                    disk_errors.append(exc)
                    return
                finally:
                    if planned.key in held:
                        held.pop(planned.key).release()
                finished.add(planned.key)
                counts["ok" if record["status"] == "ok" else "failed"] += 1
                note = f"{planned.kind} {planned.variant}"
                if record["status"] != "ok":
                    progress.console.print(f"[red]failed[/] {escape(note)}: {escape(str(record.get('error')))}")
                progress.update(bar, advance=1, note=note)

            def on_progress(job, done, total, note=""):
                planned = by_key.get(job.key)
                label = f"{planned.kind} {planned.variant}" if planned else job.key[:8]
                progress.update(bar, note=f"{label}: {done}/{total} {note}".strip())

            def reused(j):
                counts["reused"] += 1
                finished.add(j.key)
                progress.update(bar, advance=1, note=f"{j.kind} {j.variant} (run elsewhere)")

            for phase in _phases(todo):
                pending, said = list(phase), False
                while pending and not interrupts.stop.is_set():
                    elsewhere = []

                    def claim(job, elsewhere=elsewhere):
                        """Just before ``job`` is sent: take its key's lock (held until its result is
                        stored), or leave it to the run that holds it; reuse what finished since."""
                        j = by_key[job.key]
                        lock = store.lock(j.key)
                        if lock is not None and not lock.try_acquire():
                            elsewhere.append(j)  # in flight in another run: wait for it, reuse it
                            return False
                        if lock is not None:
                            held[j.key] = lock
                        if store.done(j.key, j.kind, j.variant):  # finished by another run since this one looked
                            if lock is not None:
                                held.pop(j.key).release()
                            reused(j)
                            return False
                        if j.after is not None and not store.done(j.after, "train"):
                            on_result(j, {"status": "failed", "attempts": 0,
                                          "error": f"its train job {j.after[:12]} did not finish"})
                            return False
                        return True

                    try:
                        summary = coord.run(
                            [Job(key=j.key, spec=wire_spec(j.spec, bundles), affinity=j.affinity,
                                 needs=j.spec["variant"]["build"].get("trained", ""), provides=provides(j.spec))
                             for j in pending], on_result,
                            on_progress=on_progress, stop=interrupts.stop, cancel=interrupts.cancel, claim=claim)
                    finally:
                        for key in list(held):  # jobs not run (stopped): free for another run
                            held.pop(key).release()
                    if coordinator is not None:
                        add_summary(coordinator, summary)
                    if elsewhere and not said:
                        said = True
                        progress.console.print(f"{len(elsewhere)} job(s) in flight in another run sharing this "
                                               "cache: waiting for them, to reuse their results")
                    pending = []
                    for j in elsewhere:  # holding no lock while waiting: two runs never wait on each other
                        lock = store.lock(j.key)
                        if not lock.acquire(stop=interrupts.stop.is_set):
                            break
                        lock.release()
                        if store.done(j.key, j.kind, j.variant):
                            reused(j)
                        else:  # the other run stopped or the job failed there: run it here
                            pending.append(j)
        coord.close()
    finally:
        if started is not None:
            started.stop()
    if disk_errors:
        raise disk_errors[0]  # one line from harness.cli; what was stored stays in the cache
    counts["not run"] = len(todo) - len(finished)
    return counts


def add_summary(total: dict, summary) -> dict:
    """Fold one phase's ``coordinator.Summary`` into the run's: lists joined, counts summed. What it
    holds (workers lost, jobs quarantined, late replies) is in no job's result, so it is shown at the
    end of the run and kept in plan.json for the report's provenance."""
    for name, value in attrs.asdict(summary).items():
        if isinstance(value, list):
            total[name] = total.get(name, []) + value
        else:
            total[name] = round(total.get(name, 0) + value, 3)
    return total


def provides(spec: dict) -> str:
    """What a worker keeps once ``spec`` succeeds: a train job's checkpoint, by its train key."""
    if spec["kind"] != "train":
        return ""
    from moe_schema.train import train_key  # torch-free

    return train_key(spec)


def wire_spec(spec: dict, bundles: dict) -> dict:
    """The spec as sent: an evaluate job on a local task carries the task folder's files (when small
    enough; see moe_schema.taskfiles), so a worker on another host needs no shared filesystem.
    Jobs of the same task share one files map; the stored spec (plan, results) never holds them."""
    task = spec.get("task")
    if spec.get("kind") != "evaluate" or not task or not task.get("path") or "digest" not in task:
        return spec
    if task["path"] not in bundles:
        from moe_schema.taskfiles import bundle

        bundles[task["path"]] = bundle(task["path"])
    files = bundles[task["path"]]
    return spec if files is None else {**spec, "task": {**task, "files": files}}


def merge_sharded(jobs: list[planner.PlannedJob], store: Store) -> dict[str, str]:
    """Merge the shards of each split evaluation into one result (exactly as unsplit).

    Returns {shard key: merged key} for the shards merged, so results.jsonl lists the merged
    result in their place."""
    from moe_schema.merge import merge_shards, merge_timings

    replaced: dict[str, str] = {}
    for merged_key, shards in planner.shard_groups(jobs).items():
        recs = [store.get(j.key) for j in shards]
        if not all(r and r.get("status") == "ok" for r in recs):
            continue
        first = shards[0]
        rec = {**first.summary(), "key": merged_key, "status": "ok", "error": None, "shard": None,
               "spec": {k: v for k, v in first.spec.items() if k != "shard"},
               "attempts": sum(r.get("attempts", 1) for r in recs),
               "worker": sorted({r.get("worker") or "" for r in recs}),
               "authenticated": all(r.get("authenticated") is not False for r in recs)}
        result = merge_shards([{k: v for k, v in r.items() if k not in RECORD_KEYS} for r in recs])
        rec.update(result)
        rec.pop("shard", None)
        rec["timings"] = merge_timings([r.get("timings") for r in recs])  # worker time over all shards
        store.put(merged_key, rec, share=rec["authenticated"])
        replaced.update({j.key: merged_key for j in shards})
    return replaced


def main(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    from harness.endpoints import EndpointsError
    from moe_schema.protocol import is_loopback  # torch-free

    suite = load(args.suite, scale=args.scale)
    prices = parse_price_args(args.price)  # a bad --price: exit 2 before anything runs
    try:  # before the run folder exists: a refused hand-off leaves nothing behind
        if args.keys is not None:
            from moe_schema.protocol import client_keys

            try:
                client_keys(args.keys)  # missing, loose (a secret others can read) or the old layout
            except ValueError as exc:
                raise EndpointsError(f"--keys: {exc}") from None
        endpoints = parse_endpoints(args.workers, suite.workers, args.workers_wait, args.keys)
    except EndpointsError as exc:
        console.print(f"harness run: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    remote = [ep for ep in endpoints if not is_loopback(ep)]
    too_big = planner.unshippable_tasks(suite) if remote and not args.shared_fs else []
    if too_big:
        console.print(f"harness run: {too_big[0]}, and worker {remote[0]} is on another host, where it would "
                      "fail; put the folder on a filesystem every worker shares and pass --shared-fs",
                      markup=False, highlight=False, soft_wrap=True)
        return 2
    for line in planner.large_unlimited_tasks(suite):
        console.print(f"warning: {line}", style="yellow", markup=False, highlight=False, soft_wrap=True)
    vs, jobs = planner.expand(suite)
    refused = planner.local_engine_refusals(vs, args.device) if not endpoints else []
    if refused:
        console.print(f"harness run: {refused[0]}", markup=False, highlight=False, soft_wrap=True)
        return 2
    run_dir = run_folder(suite, args.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / "suite.yaml", Path(args.suite).read_bytes())
    store = Store(run_dir, use_cache=not args.no_cache,
                  say=lambda m: console.print(m, markup=False, highlight=False, soft_wrap=True))
    write_json_atomic(run_dir / "plan.json", planner.plan_document(suite, vs, jobs))
    console.print(f"[bold]{suite.name}[/]: {len(vs)} variants, {len(jobs)} jobs → {run_dir}")

    coordinator: dict = {}
    counts = execute(suite, jobs, store, endpoints, args.local_workers or suite.local_workers, args.device,
                     args.timeout, args.keys, args.threads, coordinator=coordinator)

    replaced = merge_sharded(jobs, store)
    keys = list(dict.fromkeys(replaced.get(j.key, j.key) for j in jobs))
    records = store.records(keys)
    pairs = compute_pairs(suite, records)
    write_json_atomic(run_dir / "plan.json", {**planner.plan_document(suite, vs, jobs, pairs),
                                              "coordinator": coordinator or None})
    store.write_results_jsonl(keys)
    if not args.no_report:
        from harness.report import write_report

        written = write_report(run_dir, prices)
        console.print(f"report: {written.get('md', run_dir / 'report.md')}")
    elapsed = time.perf_counter() - t0
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
    if coordinator:
        from harness.report.provenance import coordinator_line

        console.print(coordinator_line(coordinator))
    console.print(f"done in {elapsed:.1f}s: {summary or 'nothing to do'}")
    return 0 if counts["failed"] == 0 and counts["not run"] == 0 else 1


def dump_suite(suite: Suite) -> str:
    return yaml.safe_dump(suite.raw, sort_keys=False)
