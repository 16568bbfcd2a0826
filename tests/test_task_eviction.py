"""Workers sharing a home never evict a shipped task folder another one is using (issue 32 §3).

Eviction (moe_schema/taskfiles.py) went by age and size alone, so a second daemon on the same home
removed the folder a first one was evaluating from ("unknown task"). A job now holds its folder in
use (``taskfiles.using``, a shared flock) and eviction skips folders it cannot lock. Two real
processes here: one holds a folder as a job does, the other unpacks folders and evicts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

HOLD = r"""
import sys
from moe_schema import taskfiles
files = {"t.yaml": b"task: held\n", "data.bin": b"h" * (1 << 20)}
digest = taskfiles._digest((n, [files[n]]) for n in sorted(files))
with taskfiles.using(files, digest, "t.yaml", sys.argv[1]) as path:
    print(path.parent, flush=True)
    sys.stdin.readline()  # the job runs until the test says
"""

UNPACK = r"""
import sys
from moe_schema import taskfiles
for i in sys.argv[2].split(","):  # each new folder evicts what is over the size kept (said on stderr)
    files = {"t.yaml": f"task: t{i}\n".encode(), "data.bin": bytes([int(i)]) * (1 << 20)}
    taskfiles.unpack(files, taskfiles._digest((n, [files[n]]) for n in sorted(files)), "t.yaml", sys.argv[1])
"""


def _unpack(home: Path, numbers: str) -> list[str]:
    """Another worker process on the same home unpacks folders ``numbers``, keeping 2 MiB."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MOE_HARNESS_TASKS_KEEP_MIB": "2"}
    out = subprocess.run([sys.executable, "-c", UNPACK, str(home), numbers], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return [line.split()[3] for line in out.stderr.splitlines() if line.startswith("evicted task folder ")]


def test_a_task_folder_in_use_by_another_worker_is_not_evicted_until_its_job_ends(tmp_path):
    """The folder held by a job in one process is the oldest (8 days unused) and over the size
    kept, yet the other process's evictions pass it by; once the job ends, the next eviction takes
    it. The folder not in use that is over the size goes at once (the neighbouring case)."""
    home = tmp_path / "home"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(home)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        held = Path(holder.stdout.readline().strip())
        assert (held / "t.yaml").is_file()
        old = time.time() - 8 * 86400
        os.utime(held, (old, old))  # unused for 8 days, by its time stamp
        gone = _unpack(home, "1,2,3")  # 4 MiB with the held one, 2 MiB kept
        assert held.name not in gone and (held / "data.bin").stat().st_size == 1 << 20
        assert len(gone) == 2  # folders 1 and 2 went instead, each when the next came
    finally:
        holder.stdin.write("\n")
        holder.stdin.close()
        assert holder.wait(60) == 0
    gone = _unpack(home, "4")
    assert held.name in gone and not held.exists()
