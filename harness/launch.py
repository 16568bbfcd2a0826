"""`harness launch slurm`: write (and with --submit, submit) an sbatch script that starts one
worker daemon per GPU across nodes.

    harness keys ~/moe-keys
    harness launch slurm --out workers/ --nodes 2 --gpus-per-node 4 --keys ~/moe-keys --submit
    harness run suite.yaml --workers @workers/endpoints.txt --keys ~/moe-keys

When the job starts, the script writes ``<out>/endpoints.txt``: one ``tcp://NODE:PORT`` per
daemon (node names from ``scontrol show hostnames``, ports ``--port + local task index``), then
``srun`` starts one task per GPU, each a daemon bound on all interfaces of its node with CURVE
keys. The daemons serve until the job ends (``scancel`` sends SIGTERM: they stop gracefully).
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import attrs


@attrs.frozen
class SlurmOptions:
    out: Path
    nodes: int = 1
    gpus_per_node: int = 1
    port: int = 5555
    keys: Path | None = None
    insecure: bool = False
    time: str = "04:00:00"
    partition: str | None = None
    account: str | None = None
    cpus_per_gpu: int = 8
    python: str = "python"
    job_name: str = "moe-harness-workers"
    sbatch_args: tuple = ()

    def check(self) -> None:
        if self.nodes < 1 or self.gpus_per_node < 1:
            raise ValueError(f"--nodes {self.nodes} --gpus-per-node {self.gpus_per_node}: both must be >= 1")
        if not (1024 <= self.port and self.port + self.gpus_per_node - 1 <= 65535):
            raise ValueError(f"--port {self.port}: ports {self.port}..{self.port + self.gpus_per_node - 1} "
                             "must lie in 1024..65535")
        if self.keys is None and not self.insecure:
            raise ValueError("--keys DIR is required (daemons listen off loopback); make them with "
                             "`harness keys DIR`, or pass --insecure for plaintext")
        if self.keys is not None and not (Path(self.keys) / "server.key_secret").is_file():
            raise ValueError(f"--keys {self.keys}: no server.key_secret there (run `harness keys {self.keys}`)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scheduler", choices=["slurm"], help="the cluster scheduler")
    p.add_argument("--out", type=Path, required=True, help="folder for the script, logs and endpoints.txt")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=1)
    p.add_argument("--port", type=int, default=5555, help="first port; GPU i of a node listens on PORT+i")
    p.add_argument("--keys", type=Path, help="CURVE key folder from `harness keys` (on a shared filesystem)")
    p.add_argument("--insecure", action="store_true", help="no CURVE: plaintext on the cluster network")
    p.add_argument("--time", default="04:00:00", help="sbatch --time (default 04:00:00)")
    p.add_argument("--partition")
    p.add_argument("--account")
    p.add_argument("--cpus-per-gpu", type=int, default=8)
    p.add_argument("--python", default=sys.executable, help="python with moe-harness installed on the nodes")
    p.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                   help="extra #SBATCH line, e.g. --sbatch-arg=--qos=high (repeatable)")
    p.add_argument("--submit", action="store_true", help="submit the script with sbatch")


def main(args: argparse.Namespace) -> int:
    opts = SlurmOptions(out=args.out.resolve(), nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                        port=args.port, keys=args.keys.resolve() if args.keys else None,
                        insecure=args.insecure, time=args.time, partition=args.partition,
                        account=args.account, cpus_per_gpu=args.cpus_per_gpu, python=args.python,
                        sbatch_args=tuple(args.sbatch_arg))
    try:
        script = write_slurm_script(opts)
    except ValueError as exc:
        print(f"harness launch: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {script}")
    print(f"endpoints (once the job runs): {opts.out / 'endpoints.txt'}  → harness run --workers @{opts.out / 'endpoints.txt'}")
    if not args.submit:
        print(f"submit with: sbatch {script}")
        return 0
    if shutil.which("sbatch") is None:
        print("harness launch: --submit: sbatch is not on PATH (is this a slurm login node?)", file=sys.stderr)
        return 1
    done = subprocess.run(["sbatch", str(script)], capture_output=True, text=True)
    print((done.stdout or done.stderr).strip())
    return done.returncode


def write_slurm_script(opts: SlurmOptions) -> Path:
    opts.check()
    opts.out.mkdir(parents=True, exist_ok=True)
    path = opts.out / "workers.sbatch"
    path.write_text(slurm_script(opts))
    path.chmod(0o755)
    return path


def slurm_script(opts: SlurmOptions) -> str:
    q = shlex.quote
    out = Path(opts.out)
    lines = ["#!/bin/bash", "# Written by `harness launch slurm`: one moe-harness worker daemon per GPU.",
             f"#SBATCH --job-name={opts.job_name}", f"#SBATCH --nodes={opts.nodes}",
             f"#SBATCH --ntasks-per-node={opts.gpus_per_node}", "#SBATCH --gpus-per-task=1",
             f"#SBATCH --cpus-per-task={opts.cpus_per_gpu}", f"#SBATCH --time={opts.time}",
             f"#SBATCH --output={out}/slurm-%j.out"]
    if opts.partition:
        lines.append(f"#SBATCH --partition={opts.partition}")
    if opts.account:
        lines.append(f"#SBATCH --account={opts.account}")
    lines += [f"#SBATCH {arg}" for arg in opts.sbatch_args]
    security = f"--keys {q(str(opts.keys))}" if opts.keys else "--insecure"
    daemon = (f"exec {q(opts.python)} -m workers.daemon --device cuda:0 "
              f'--bind "tcp://0.0.0.0:$((MOE_HARNESS_PORT + SLURM_LOCALID))" {security}')
    lines += [
        "set -euo pipefail",
        "",
        f"export MOE_HARNESS_PORT={opts.port}",
        f"ENDPOINTS={q(str(out / 'endpoints.txt'))}",
        "",
        "# Every daemon's endpoint is known before any starts: node names x ports. Written whole, then",
        "# renamed, so `harness run --workers @endpoints.txt` never reads half a file.",
        'tmp="$ENDPOINTS.$SLURM_JOB_ID.tmp"',
        ': > "$tmp"',
        'for node in $(scontrol show hostnames "$SLURM_JOB_NODELIST"); do',
        f"  for ((i = 0; i < {opts.gpus_per_node}; i++)); do",
        '    echo "tcp://$node:$((MOE_HARNESS_PORT + i))" >> "$tmp"',
        "  done",
        "done",
        'mv "$tmp" "$ENDPOINTS"',
        "",
        "# One task per GPU (slurm sets CUDA_VISIBLE_DEVICES, so each sees its GPU as cuda:0).",
        "# scancel sends SIGTERM: each daemon cancels its job, replies, and exits 0.",
        f"srun --ntasks-per-node={opts.gpus_per_node} --gpus-per-task=1 --kill-on-bad-exit=0 \\",
        f"  bash -c {q(daemon)}",
    ]
    return "\n".join(lines) + "\n"
