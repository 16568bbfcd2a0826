"""Free memory on a CPU worker, read from fake /proc and cgroup files (workers.memory): what
admission, probes and hello compare a build's bytes with. Free memory is min(MemAvailable, the
room of the process's cgroup and of every cgroup above it); taken as either alone, a job the
kernel kills would be admitted."""

from __future__ import annotations

import os

import pytest

from workers.memory import cgroup_room, cpu_available, device_memory, mem_available

GiB, MiB = 1 << 30, 1 << 20


def _meminfo(tmp_path, kib: int | None, name: str = "meminfo"):
    p = tmp_path / name
    lines = ["MemTotal:       32000000 kB", "MemFree:         1000000 kB"]
    if kib is not None:
        lines.append(f"MemAvailable:   {kib} kB")
    p.write_text("\n".join([*lines, "Buffers:          100 kB"]) + "\n")
    return p


def _v2(tmp_path, levels: dict[str, tuple]) -> object:
    """A cgroup v2 mount with ``{path: (max, current, inactive_file)}`` per level."""
    root = tmp_path / "v2"
    root.mkdir(parents=True, exist_ok=True)
    (root / "cgroup.procs").write_text("")
    for path, (limit, current, inactive) in levels.items():
        d = root / path
        d.mkdir(parents=True, exist_ok=True)
        if limit is not None:
            (d / "memory.max").write_text(f"{limit}\n")
        if current is not None:
            (d / "memory.current").write_text(f"{current}\n")
        if inactive is not None:
            (d / "memory.stat").write_text(f"anon 5\nfile 9\ninactive_file {inactive}\nactive_file 3\n")
    return root


# ---------------------------------------------------------------- MemAvailable against the cgroup's room

@pytest.mark.parametrize("mem_gib, room_gib, want_gib", [(8, 2, 2), (2, 8, 2), (3, 3, 3)])
def test_free_memory_is_the_smaller_of_memavailable_and_the_cgroup_room_either_way(tmp_path, mem_gib, room_gib,
                                                                                  want_gib):
    """A 2 GiB cgroup on a machine with 8 GiB available gives 2 GiB; 8 GiB of cgroup room on a
    machine with 2 GiB available gives 2 GiB: whichever limit is tighter wins, in both orders."""
    root = _v2(tmp_path, {"job": (room_gib * GiB, 0, None)})
    got = cpu_available(_meminfo(tmp_path, mem_gib * GiB // 1024), "0::/job\n", root)
    assert got == want_gib * GiB


def test_without_a_cgroup_limit_free_memory_is_memavailable(tmp_path):
    """No limit anywhere ("max"): MemAvailable alone, in bytes (the file counts kB)."""
    root = _v2(tmp_path, {"job": ("max", 5 * GiB, None)})
    assert cpu_available(_meminfo(tmp_path, 1234), "0::/job\n", root) == 1234 * 1024


def test_without_memavailable_free_memory_falls_back_to_the_free_pages_and_keeps_the_cgroup(tmp_path):
    """A kernel without MemAvailable (or an unreadable meminfo): the free pages sysconf counts, and
    still no more than the cgroup's room."""
    pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    none = _v2(tmp_path, {"job": ("max", 1, None)})
    assert cpu_available(_meminfo(tmp_path, None), "0::/job\n", none) == pytest.approx(pages, rel=0.05)
    assert cpu_available(tmp_path / "missing", "0::/job\n", none) == pytest.approx(pages, rel=0.05)
    tight = _v2(tmp_path / "t", {"job": (MiB, 0, None)})
    assert cpu_available(_meminfo(tmp_path, None), "0::/job\n", tight) == MiB


@pytest.mark.parametrize("text, want", [
    ("MemAvailable:   2048 kB\n", 2048 * 1024),
    ("MemTotal: 9 kB\nMemAvailable: 1 kB\nSwapFree: 7 kB\n", 1024),
    ("MemTotal: 9 kB\n", None),             # no such line
    ("MemAvailable: lots kB\n", None),      # not a number
    ("MemAvailable:\n", None),              # no value
    ("XMemAvailable: 5 kB\n", None),        # another line's name
])
def test_memavailable_is_read_in_bytes_and_a_bad_line_reads_as_unknown(tmp_path, text, want):
    """MemAvailable counts kB: 2048 kB is 2 MiB; a missing or garbled line is unknown, not 0 or a crash."""
    (tmp_path / "m").write_text(text)
    assert mem_available(tmp_path / "m") == want


def test_a_cpu_device_reports_the_machine_total_and_the_reading_of_free():
    """hello's total is the physical memory; free is never more than the total, and positive."""
    mem = device_memory("cpu")
    assert mem["total"] == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < mem["free"] <= mem["total"]


def test_a_cuda_device_reports_the_drivers_free_and_total_of_that_device(monkeypatch):
    """CUDA's own count, (free, total) in that order, of the device named (not the current one). The
    driver's function is replaced: this machine has no GPU, and the decision is which number is which."""
    import torch

    asked = []

    def mem_get_info(device):
        asked.append(device)
        return 3 * GiB, 80 * GiB

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    assert device_memory("cuda:1") == {"total": 80 * GiB, "free": 3 * GiB}
    assert asked == [torch.device("cuda:1")]


# ---------------------------------------------------------------- the cgroup's room

def test_the_readers_read_this_processs_own_cgroup_and_the_kernels_files_by_default(tmp_path):
    """Without arguments: /proc/self/cgroup (here v1 or v2, whichever this host has) under /sys/fs/cgroup.
    A fake hierarchy with a 4 GiB limit at its root (our own cgroup's path is not in it: the mount's root
    is read) gives 3 GiB of room only if /proc/self/cgroup was read."""
    import inspect
    from workers import memory

    for folder, limit, usage in ((tmp_path, "memory.max", "memory.current"),
                                 (tmp_path / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes")):
        folder.mkdir(exist_ok=True)
        (folder / limit).write_text(f"{4 * GiB}\n")
        (folder / usage).write_text(f"{GiB}\n")
    assert cgroup_room(root=tmp_path) == 3 * GiB
    defaults = {name: {k: p.default for k, p in inspect.signature(f).parameters.items()}
                for name, f in (("room", memory.cgroup_room), ("cpu", memory.cpu_available),
                                ("avail", memory.mem_available))}
    assert defaults["room"]["root"] == defaults["cpu"]["root"] == "/sys/fs/cgroup"
    assert defaults["cpu"]["meminfo"] == defaults["avail"]["meminfo"] == "/proc/meminfo"


@pytest.fixture
def colon_root(tmp_path):
    return _v2(tmp_path, {"system.slice/a:b.service": (2 * GiB, 0, 0), "system.slice": (8 * GiB, GiB, 0)})


def test_a_cgroup_path_with_a_colon_is_our_own_cgroup(colon_root):
    assert cgroup_room("0::/system.slice/a:b.service\n", colon_root) == 2 * GiB


def test_a_cgroup_path_is_taken_as_written_below_the_mount(tmp_path):
    root = _v2(tmp_path, {"Xorg.slice": (3 * GiB, 0, 0)})
    assert cgroup_room("0::/Xorg.slice\n", root) == cgroup_room("0::Xorg.slice \n", root) == 3 * GiB


def test_a_line_that_names_no_hierarchy_is_skipped(colon_root):
    """Fewer than two colons is no ``id:controllers:path`` line; it is not read as the mount's root."""
    (colon_root / "memory.max").write_text(f"{GiB}\n")
    (colon_root / "memory.current").write_text("0\n")
    assert cgroup_room("garbage\n", colon_root) is None
    assert cgroup_room("0:/x\n", colon_root) is None
    assert cgroup_room("garbage\n0::/\n", colon_root) == GiB

def test_room_is_the_limit_less_the_usage_less_reclaimable_page_cache(tmp_path):
    """4 GiB limit, 3 GiB used of which 1 GiB is inactive file cache: 2 GiB of room (the kernel
    reclaims the cache before it kills). Other memory.stat lines (active_file, file) are not it."""
    root = _v2(tmp_path, {"job": (4 * GiB, 3 * GiB, GiB)})
    assert cgroup_room("0::/job\n", root) == 2 * GiB


def test_room_is_never_negative_and_cache_over_usage_counts_as_nothing_used(tmp_path):
    """Usage over the limit: 0 bytes of room, not a negative number admission would compare with;
    more inactive cache than usage: the whole limit is room."""
    over = _v2(tmp_path / "a", {"job": (GiB, 2 * GiB, 0)})
    assert cgroup_room("0::/job\n", over) == 0
    cache = _v2(tmp_path / "b", {"job": (GiB, MiB, 2 * MiB)})
    assert cgroup_room("0::/job\n", cache) == GiB


@pytest.mark.parametrize("own, parent, want", [(GiB, 4 * GiB, GiB), (4 * GiB, GiB, GiB), ("max", GiB, GiB),
                                               (GiB, "max", GiB), ("max", "max", None)])
def test_the_tightest_of_the_cgroup_and_its_ancestors_wins_in_either_order(tmp_path, own, parent, want):
    """A job's step under a job: the step's limit or the job's, whichever leaves less; "max" at a
    level means no limit there; no limit at any level means no room figure at all."""
    root = _v2(tmp_path, {"job": (parent, 0, None), "job/step": (own, 0, None)})
    assert cgroup_room("0::/job/step\n", root) == want


def test_every_ancestor_counts_not_only_the_parent(tmp_path):
    """The limit three levels up binds when the two levels below have none."""
    root = _v2(tmp_path, {"a": (3 * MiB, MiB, 0), "a/b": ("max", 0, None), "a/b/c": ("max", 0, None)})
    assert cgroup_room("0::/a/b/c\n", root) == 2 * MiB


def test_a_level_with_a_limit_but_no_usage_file_gives_no_room_figure(tmp_path):
    """A limit without its usage (a controller not enabled there) is skipped, not read as zero usage."""
    root = _v2(tmp_path, {"job": (GiB, None, None)})
    assert cgroup_room("0::/job\n", root) is None
    root2 = _v2(tmp_path / "x", {"job": (None, GiB, None)})
    assert cgroup_room("0::/job\n", root2) is None


def test_a_cgroup_path_not_mounted_here_is_read_at_the_mount_root(tmp_path):
    """In a cgroup namespace /proc/self/cgroup shows the host's path; our cgroup is the mount's root."""
    root = _v2(tmp_path, {"": (5 * MiB, 2 * MiB, 0)})
    assert cgroup_room("0::/host/slice/job\n", root) == 3 * MiB


def test_a_hybrid_host_reads_cgroup_v2_under_unified(tmp_path):
    """Hybrid mounts put v2 under ``unified/`` (no cgroup.procs at the root): read there; with a
    cgroup.procs at the root too, the root is v2's mount."""
    root = tmp_path / "h"
    (root / "unified" / "job").mkdir(parents=True)
    (root / "unified" / "cgroup.procs").write_text("")
    (root / "unified" / "job" / "memory.max").write_text(str(7 * MiB))
    (root / "unified" / "job" / "memory.current").write_text(str(MiB))
    assert cgroup_room("0::/job\n", root) == 6 * MiB
    (root / "job").mkdir()
    (root / "job" / "memory.max").write_text(str(2 * MiB))
    (root / "job" / "memory.current").write_text("0")
    (root / "cgroup.procs").write_text("")
    assert cgroup_room("0::/job\n", root) == 2 * MiB


def test_cgroup_v1_reads_the_memory_controller_and_its_own_names(tmp_path):
    """v1: ``memory.limit_in_bytes`` / ``usage_in_bytes`` / ``total_inactive_file`` under
    ``memory/``, found on a line listing memory among other controllers; its huge "no limit" number
    is no limit, one below 2^62 is a limit."""
    v1 = tmp_path / "memory" / "slurm" / "job_7"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text(str(GiB))
    (v1 / "memory.usage_in_bytes").write_text(str(300 * MiB))
    (v1 / "memory.stat").write_text(f"inactive_file {999 * MiB}\ntotal_inactive_file {100 * MiB}\n")
    (v1.parent / "memory.limit_in_bytes").write_text("9223372036854771712")
    (v1.parent / "memory.usage_in_bytes").write_text(str(50 * GiB))
    text = "5:cpu:/other\n4:memory,hugetlb:/slurm/job_7\n"
    assert cgroup_room(text, tmp_path) == GiB - 200 * MiB


@pytest.mark.parametrize("limit, want", [(1 << 62, None), ((1 << 62) - 1, (1 << 62) - 1 - MiB), ("", None)])
def test_v1s_no_limit_number_starts_at_two_to_the_62(tmp_path, limit, want):
    """v1 writes "no limit" as 2^63 - 1 rounded to a page: from 2^62 up it is no limit, just below
    it a limit; an empty file is no limit."""
    d = tmp_path / "memory" / "job"
    d.mkdir(parents=True)
    (d / "memory.limit_in_bytes").write_text(str(limit))
    (d / "memory.usage_in_bytes").write_text(str(MiB))
    assert cgroup_room("4:memory:/job\n", tmp_path) == want


def test_lines_of_other_controllers_and_malformed_lines_are_not_memory_limits(tmp_path):
    """cpu's line, a line without two colons, a missing /proc file: no room figure (None)."""
    d = tmp_path / "memory" / "job"
    d.mkdir(parents=True)
    (d / "memory.limit_in_bytes").write_text(str(GiB))
    (d / "memory.usage_in_bytes").write_text("0")
    assert cgroup_room("4:cpu,cpuacct:/job\n", tmp_path) is None
    assert cgroup_room("4:memoryx:/job\n", tmp_path) is None
    assert cgroup_room("garbage\n", tmp_path / "nothing") is None
    assert cgroup_room("4:cpu:/x\n4:memory:/job\n", tmp_path) == GiB


def test_the_defaults_read_this_machines_own_files():
    """With no arguments the readers read /proc/meminfo, /proc/self/cgroup and /sys/fs/cgroup: what the
    daemon's hello reports is this machine's MemAvailable, within what moved between two reads."""
    from pathlib import Path

    assert mem_available() == pytest.approx(mem_available("/proc/meminfo"), rel=0.05)
    here = cgroup_room(Path("/proc/self/cgroup").read_text(), "/sys/fs/cgroup")
    room = cgroup_room()
    assert (room is None) == (here is None) and (room is None or room == pytest.approx(here, rel=0.05))
    want = mem_available("/proc/meminfo") if here is None else min(mem_available("/proc/meminfo"), here)
    assert cpu_available() == pytest.approx(want, rel=0.05)
    assert device_memory("cpu")["free"] == pytest.approx(want, rel=0.05)


def test_a_cuda_device_is_never_read_as_the_cpus_memory():
    """Without CUDA, asking for a CUDA device's memory is an error, not the host's RAM passed off as
    the GPU's (admission would load a build the GPU cannot hold)."""
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        mem = device_memory("cuda:0")
        assert 0 < mem["free"] <= mem["total"] == torch.cuda.mem_get_info(0)[1]
    else:
        with pytest.raises((RuntimeError, AssertionError, ValueError)):
            device_memory("cuda:0")
