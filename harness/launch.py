"""`harness launch slurm`: write (and with --submit, submit) an sbatch script that starts worker
daemons across nodes: one per GPU, or on CPU-only nodes ``--daemons-per-node`` of them.

    harness keys ~/moe-keys
    harness launch slurm --out slurm/ --nodes 2 --gpus-per-node 4 --keys ~/moe-keys --submit
    harness run suite.yaml --workers @slurm/endpoints.txt --keys ~/moe-keys

The daemons and the job's collector get the server folder only (``~/moe-keys/server``): the collector
checks each daemon by a CURVE handshake (harness/endpoints.py), so no client secret is needed there.
``--keys`` is required whatever ``--bind-host`` says (loopback included), unless ``--insecure``.

What the job does (see ``slurm_script``):

- ``srun`` starts one task per daemon, each ``harness worker`` (the installed entry point, so no
  ``workers/`` folder in the submit directory can shadow the package) with ``--threads`` from
  ``SLURM_CPUS_PER_TASK`` and its own log, ``daemon-<job>-<node>-<task>.log``;
- each daemon binds a port the OS picks (two jobs on one node cannot collide) and prints it;
  ``harness endpoints collect`` reads those, asks each daemon for hello and writes
  ``<out>/endpoints.txt`` (naming the job) with the daemons that answered, once they are up;
- the file is removed when the job ends (scancel, time limit, daemons gone);
- ``--signal`` sends the daemons SIGTERM ``--warn-s`` seconds before the time limit; a daemon then
  cancels its job, replies and exits within ``--grace-s``, shorter than Slurm's KillWait, so the
  coordinator hears of it and no job is killed mid-reply.

Checked before anything is written: CPUs per daemon (>= 1, and with ``sinfo`` here, that a node of
the partition has that many for all its daemons: otherwise the job would pend forever) and the
grace against ``scontrol``'s KillWait.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import attrs

from harness.store import write_atomic


@attrs.frozen
class SlurmOptions:
    out: Path
    nodes: int = 1
    device: str = "cuda"              # "cuda": one daemon per GPU; "cpu": CPU-only nodes
    gpus_per_node: int = 1
    daemons_per_node: int = 1         # CPU only (on GPU nodes: one per GPU)
    cpus_per_daemon: int = 8
    keys: Path | None = None
    insecure: bool = False
    bind_host: str = "0.0.0.0"        # 127.0.0.1 on a one-node cluster on loopback (keys all the same)
    time: str = "04:00:00"
    warn_s: int = 120                 # SIGTERM to the daemons this long before the time limit
    grace_s: float = 20.0             # a daemon's time to stop after SIGTERM (< KillWait)
    start_timeout_s: float = 600.0    # how long the job waits for its daemons to come up
    partition: str | None = None
    account: str | None = None
    harness: str = "harness"          # the installed `harness` entry point on the nodes
    job_name: str = "moe-harness-workers"
    sbatch_args: tuple = ()

    @property
    def per_node(self) -> int:
        return self.gpus_per_node if self.device == "cuda" else self.daemons_per_node

    def check(self) -> None:
        if self.device not in ("cuda", "cpu"):
            raise ValueError(f"--device {self.device}: expected cuda (one daemon per GPU) or cpu")
        if self.nodes < 1:
            raise ValueError(f"--nodes {self.nodes}: must be >= 1")
        if self.device == "cuda" and self.gpus_per_node < 1:
            raise ValueError(f"--gpus-per-node {self.gpus_per_node}: must be >= 1 (or --device cpu)")
        if self.device == "cpu" and self.daemons_per_node < 1:
            raise ValueError(f"--daemons-per-node {self.daemons_per_node}: must be >= 1")
        if self.cpus_per_daemon < 1:
            raise ValueError(f"--cpus-per-daemon {self.cpus_per_daemon}: must be >= 1 (torch threads per daemon)")
        if not 0 < self.grace_s < self.warn_s:
            raise ValueError(f"--grace-s {self.grace_s:g}: must be > 0 and below --warn-s {self.warn_s}")
        if self.keys is None and not self.insecure:
            raise ValueError("--keys DIR is required: every tcp daemon authenticates its clients, loopback "
                             "included (any local user reaches 127.0.0.1, and a job runs code as you); make "
                             "them with `harness keys DIR`, or pass --insecure for plaintext")
        if self.keys is not None:
            self.server_keys()

    def server_keys(self) -> Path:
        """The daemons' key folder (DIR/server or the server folder given), checked as a daemon will."""
        from moe_schema.protocol import SERVER_KEY, key_folder, server_keys

        folder = key_folder(self.keys, SERVER_KEY)
        if not (folder / f"{SERVER_KEY}.key_secret").is_file():
            raise ValueError(f"--keys {self.keys}: no server.key_secret there (run `harness keys {self.keys}`)")
        server_keys(folder)  # what the daemons would refuse (loose modes), refused before submitting
        return folder

    def check_cluster(self) -> None:
        """What only the cluster knows: CPUs on its nodes, KillWait. Skipped where slurm is absent."""
        cpus = node_cpus(self.partition)
        need = self.cpus_per_daemon * self.per_node
        if cpus is not None and need > cpus:
            where = f"partition {self.partition}" if self.partition else "this cluster"
            fit = max(1, cpus // self.per_node)
            raise ValueError(f"--cpus-per-daemon {self.cpus_per_daemon} x {self.per_node} daemon(s) per node = "
                             f"{need} CPUs, but the largest node of {where} has {cpus}: the job would pend "
                             f"forever; pass --cpus-per-daemon {fit}")
        kill_wait = slurm_kill_wait()
        if kill_wait is not None and self.grace_s >= kill_wait:
            raise ValueError(f"--grace-s {self.grace_s:g}: must be below slurm's KillWait ({kill_wait} s), or "
                             "slurm kills a stopping daemon before it replies")


def node_cpus(partition: str | None) -> int | None:
    """The most CPUs one node of ``partition`` (or of any) has, per ``sinfo``; None without sinfo."""
    if shutil.which("sinfo") is None:
        return None
    cmd = ["sinfo", "-h", "-o", "%c"] + (["-p", partition] if partition else [])
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    counts = [int(m) for m in re.findall(r"\d+", done.stdout)] if done.returncode == 0 else []
    return max(counts) if counts else None


def slurm_kill_wait() -> int | None:
    """Slurm's KillWait in seconds (``scontrol show config``); None where it cannot be read."""
    if shutil.which("scontrol") is None:
        return None
    try:
        done = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^KillWait\s*=\s*(\d+)", done.stdout, re.M)
    return int(m.group(1)) if m else None


def check_out_free(endpoints: Path) -> None:
    """One ``--out`` per running job: a second job there would replace the first's endpoints file."""
    from harness.endpoints import job_of, slurm_job_state

    try:
        job = job_of(endpoints.read_text())
    except OSError:
        return
    if job is not None and slurm_job_state(job) in ("RUNNING", "PENDING"):
        raise ValueError(f"--out {endpoints.parent}: {endpoints.name} there belongs to running slurm job {job}; "
                         f"give this job its own --out (or `scancel {job}` first)")


def default_harness() -> str:
    """The `harness` entry point beside this python (a venv's bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "harness"
    return str(beside) if beside.is_file() else (shutil.which("harness") or "harness")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scheduler", choices=["slurm"], help="the cluster scheduler")
    p.add_argument("--out", type=Path, required=True, help="folder for the script, logs and endpoints.txt "
                   "(on a filesystem the nodes and the coordinator share)")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--device", choices=["cuda", "cpu"], help="cuda: one daemon per GPU (default); "
                   "cpu: CPU-only nodes (also implied by --gpus-per-node 0)")
    p.add_argument("--gpus-per-node", type=int, help="GPUs (and daemons) per node (default 1; 0: CPU-only)")
    p.add_argument("--daemons-per-node", type=int, default=1, help="daemons per CPU-only node (default 1)")
    p.add_argument("--cpus-per-daemon", "--cpus-per-gpu", dest="cpus_per_daemon", type=int,
                   help="CPUs (torch threads) per daemon, for #SBATCH and srun (default 8 on GPUs, 1 on CPUs)")
    p.add_argument("--keys", type=Path, help="CURVE key folder from `harness keys` (DIR or DIR/server, on a "
                   "filesystem the nodes share); required unless --insecure, loopback included")
    p.add_argument("--insecure", action="store_true", help="no CURVE: anyone who reaches a daemon's port runs "
                   "code as you, and its results stay out of the shared cache")
    p.add_argument("--bind-host", default="0.0.0.0",
                   help="address daemons bind (default all interfaces; 127.0.0.1 for a cluster on loopback)")
    p.add_argument("--time", default="04:00:00", help="sbatch --time (default 04:00:00)")
    p.add_argument("--warn-s", type=int, default=120, help="SIGTERM to the daemons this many seconds "
                   "before the time limit (default 120)")
    p.add_argument("--grace-s", type=float, default=20.0, help="a daemon's time to stop after SIGTERM; "
                   "below slurm's KillWait (default 20)")
    p.add_argument("--start-timeout", type=float, default=600.0,
                   help="seconds the job waits for its daemons to come up (default 600)")
    p.add_argument("--partition")
    p.add_argument("--account")
    p.add_argument("--harness", default=None, help="the installed `harness` command on the nodes "
                   "(default: the one beside this python)")
    p.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                   help="extra #SBATCH line, e.g. --sbatch-arg=--qos=high (repeatable)")
    p.add_argument("--submit", action="store_true", help="submit the script with sbatch")


def options(args: argparse.Namespace) -> SlurmOptions:
    device = args.device or ("cpu" if args.gpus_per_node == 0 else "cuda")
    if device == "cpu" and args.gpus_per_node not in (None, 0):
        raise ValueError(f"--device cpu with --gpus-per-node {args.gpus_per_node}: CPU-only nodes have no GPUs "
                         "to ask for; drop one of them")
    gpus = 0 if device == "cpu" else (1 if args.gpus_per_node is None else args.gpus_per_node)
    cpus = args.cpus_per_daemon if args.cpus_per_daemon is not None else (8 if device == "cuda" else 1)
    return SlurmOptions(out=args.out.resolve(), nodes=args.nodes, device=device, gpus_per_node=gpus,
                        daemons_per_node=args.daemons_per_node, cpus_per_daemon=cpus,
                        keys=args.keys.resolve() if args.keys else None, insecure=args.insecure,
                        bind_host=args.bind_host, time=args.time, warn_s=args.warn_s, grace_s=args.grace_s,
                        start_timeout_s=args.start_timeout, partition=args.partition, account=args.account,
                        harness=args.harness or default_harness(), sbatch_args=tuple(args.sbatch_arg))


def main(args: argparse.Namespace) -> int:
    try:
        opts = options(args)
        opts.check()
        opts.check_cluster()
        check_out_free(opts.out / "endpoints.txt")
        script = write_slurm_script(opts)
    except ValueError as exc:
        print(f"harness launch: {exc}", file=sys.stderr)
        return 2
    endpoints = opts.out / "endpoints.txt"
    print(f"wrote {script}")
    print(f"endpoints (written once the daemons are up, removed when the job ends): {endpoints}"
          f"  → harness run SUITE --workers @{endpoints}" + (f" --keys {client_hint(opts.keys)}" if opts.keys else ""))
    if not args.submit:
        print(f"submit with: sbatch {script}")
        return 0
    if shutil.which("sbatch") is None:
        print("harness launch: --submit: sbatch is not on PATH (is this a slurm login node?)", file=sys.stderr)
        return 1
    done = subprocess.run(["sbatch", str(script)], capture_output=True, text=True)
    print((done.stdout or done.stderr).strip())
    return done.returncode


def client_hint(keys: Path) -> str:
    """What `harness run --keys` takes: the folder given when it holds client/, else a placeholder."""
    return str(keys) if (Path(keys) / "client").is_dir() else "CLIENT_KEY_FOLDER"


def write_slurm_script(opts: SlurmOptions) -> Path:
    opts.check()
    opts.out.mkdir(parents=True, exist_ok=True)
    return write_atomic(opts.out / "workers.sbatch", slurm_script(opts), mode=0o755)


def slurm_script(opts: SlurmOptions) -> str:
    q = shlex.quote
    out = Path(opts.out)
    gpu = opts.device == "cuda"
    n = opts.per_node
    what = "one moe-harness worker daemon per GPU" if gpu else f"{n} CPU moe-harness worker daemon(s) per node"
    lines = ["#!/bin/bash", f"# Written by `harness launch slurm`: {what}.",
             f"#SBATCH --job-name={opts.job_name}", f"#SBATCH --nodes={opts.nodes}",
             f"#SBATCH --ntasks-per-node={n}"]
    if gpu:
        lines.append("#SBATCH --gpus-per-task=1")
    lines += [f"#SBATCH --cpus-per-task={opts.cpus_per_daemon}", f"#SBATCH --time={opts.time}",
              f"#SBATCH --signal=TERM@{opts.warn_s}", f"#SBATCH --output={out}/slurm-%j.out"]
    if opts.partition:
        lines.append(f"#SBATCH --partition={opts.partition}")
    if opts.account:
        lines.append(f"#SBATCH --account={opts.account}")
    lines += [f"#SBATCH {arg}" for arg in opts.sbatch_args]
    server = opts.server_keys() if opts.keys else None  # the job needs no client secret: hosts get none
    security = f"--keys {q(str(server))}" if server else ("--insecure" if opts.insecure else "")
    device = "cuda:0" if gpu else "cpu"  # slurm sets CUDA_VISIBLE_DEVICES: each task sees its GPU as cuda:0
    # the job's memory (slurm's MB are MiB) split over its daemons: admission by the cgroup's limit,
    # said up front, where reading the cgroup could not (a node's cgroup layout hidden from the task)
    memory = ('MEM=""; if [ -n "${SLURM_MEM_PER_CPU:-}" ]; then MEM="--memory-limit '
              '$((SLURM_MEM_PER_CPU * SLURM_CPUS_PER_TASK))MiB"; elif [ -n "${SLURM_MEM_PER_NODE:-}" ]; then '
              f'MEM="--memory-limit $((SLURM_MEM_PER_NODE / {n}))MiB"; fi; ')
    daemon = (f'{memory}exec "$HARNESS" worker --device {device} --bind "tcp://{opts.bind_host}:*" '
              f'--threads "$SLURM_CPUS_PER_TASK" --grace-s {opts.grace_s:g} {security}').rstrip() + " $MEM"
    keys_arg = f" --keys {q(str(server))}" if server else ""
    srun = (f"srun --ntasks-per-node={n} --cpus-per-task={opts.cpus_per_daemon}"
            + (" --gpus-per-task=1" if gpu else "") + " --kill-on-bad-exit=0 \\")
    lines += [
        "set -uo pipefail",
        "",
        f"export HARNESS={q(opts.harness)}",
        f"OUT={q(str(out))}",
        'ENDPOINTS="$OUT/endpoints.txt"',
        "",
        "# The endpoints file goes when the job does, if it still names this job.",
        'cleanup() { "$HARNESS" endpoints remove --file "$ENDPOINTS" --job "$SLURM_JOB_ID"; }',
        "trap cleanup EXIT",
        "# scancel: pass SIGTERM on to the daemons (each cancels its job, replies, exits 0), then clean up.",
        'trap \'kill -TERM "$SRUN" 2>/dev/null\' TERM INT',
        "",
        "# One task per daemon, each with its own log; the OS picks each daemon's port (no collisions).",
        f'{srun}',
        f'  --output="$OUT/daemon-%j-%N-%t.log" bash -c {q(daemon)} &',
        "SRUN=$!",
        "",
        "# Listed once up: only the daemons that answered hello, under a header naming this job.",
        f'"$HARNESS" endpoints collect --file "$ENDPOINTS" --job "$SLURM_JOB_ID" --logs "$OUT" '
        f'--expect {opts.nodes * n} --timeout {opts.start_timeout_s:g} --pid "$SRUN"{keys_arg} '
        '|| kill -TERM "$SRUN" 2>/dev/null',
        "",
        "# Serve until scancel, the time limit's warning signal, or the daemons end; `wait` returns",
        "# early when a trapped signal arrives, so wait until srun is really gone.",
        'while kill -0 "$SRUN" 2>/dev/null; do wait "$SRUN"; done',
    ]
    return "\n".join(lines) + "\n"
