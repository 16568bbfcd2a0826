"""How much memory a new build may take on a device: the operating system's reading, torch-free.

On a CPU, free memory is the smaller of the kernel's ``MemAvailable`` (page cache counts as free)
and the room this process's memory cgroup, and every cgroup above it, still allows: in a 1 GiB
Slurm job on a 512 GB node, MemAvailable says 500 GB and the kernel kills the daemon at 1 GiB. On
CUDA it is the driver's own count. ``workers.host`` admits builds against it; probes' admission
and the daemon's hello read the same.

Every reader takes its files as arguments (``/proc`` and ``/sys/fs/cgroup`` by default), so a test
reaches each decision with fake files instead of a daemon.
"""

from __future__ import annotations

import os
from pathlib import Path

_UNLIMITED = 1 << 62  # cgroup v1 writes "no limit" as a page-rounded 2^63 - 1


def device_memory(device: str) -> dict:
    """``{"total", "free"}`` bytes of ``device`` now: CUDA's own count, or on a CPU the physical
    memory and ``cpu_available`` (the cgroup's room included). Admission, probes and hello read it."""
    if device.startswith("cuda"):
        import torch

        free, total = torch.cuda.mem_get_info(torch.device(device))
        return {"total": int(total), "free": int(free)}
    return {"total": os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free": cpu_available()}


def mem_available(meminfo: str | Path = "/proc/meminfo") -> int | None:
    """``MemAvailable`` of a meminfo file in bytes; None where the file or the line is missing or unreadable."""
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_available(meminfo: str | Path = "/proc/meminfo", proc_cgroup: str | None = None,
                  root: str | Path = "/sys/fs/cgroup") -> int:
    """Memory a new allocation can get: the smaller of MemAvailable (else the free pages sysconf
    counts) and the cgroups' room (``cgroup_room``), whichever of the two is the tighter."""
    free = mem_available(meminfo)
    if free is None:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    room = cgroup_room(proc_cgroup, root)
    return free if room is None else min(free, room)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return None if text in ("", "max") else int(text)


def _inactive_file(stat: Path, key: str) -> int:
    """Page cache the kernel reclaims before it kills (``memory.stat``'s inactive file pages)."""
    try:
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def cgroup_room(proc_cgroup: str | None = None, root: str | Path = "/sys/fs/cgroup") -> int | None:
    """Bytes this process's memory cgroup (v2, or v1's ``memory`` controller) and every cgroup
    above it still allow: the least of ``limit - (usage - inactive file cache)``; None without a
    limit. ``proc_cgroup``: the text of ``/proc/self/cgroup`` (read when None); ``root``: where the
    hierarchies are mounted (a test passes fake files)."""
    root = Path(root)
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    rooms = []
    for line in proc_cgroup.splitlines():
        if line.count(":") < 2:
            continue  # not an ``id:controllers:path`` line
        _, controllers, path = line.split(":", 2)  # a path may hold a colon
        v1 = "memory" in controllers.split(",")
        if not (v1 or controllers == ""):
            continue
        base = root / "memory" if v1 else (root / "unified" if (root / "unified" / "cgroup.procs").exists()
                                            and not (root / "cgroup.procs").exists() else root)
        limit_name, usage_name, stat_key = (("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
                                            if v1 else ("memory.max", "memory.current", "inactive_file"))
        folder = base / path.strip().lstrip("/")
        if not folder.is_dir():  # a namespace shows the host's path: our own cgroup is the mount's root
            folder = base
        while True:
            limit = _read_int(folder / limit_name)
            usage = _read_int(folder / usage_name)
            if limit is not None and limit < _UNLIMITED and usage is not None:
                used = max(0, usage - _inactive_file(folder / "memory.stat", stat_key))
                rooms.append(max(0, limit - used))
            if folder == base or base not in folder.parents:
                break
            folder = folder.parent
    return min(rooms) if rooms else None
