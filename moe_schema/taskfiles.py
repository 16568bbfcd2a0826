"""A local lm-eval task's folder, shipped with its jobs: workers on other hosts need no shared filesystem.

lm-eval indexes a local task from its YAML's folder (the other YAMLs, ``!function`` helpers, data
files beside them), so the unit is that folder: every regular file under it except hidden ones and
``__pycache__``. The harness reads it once per run. Its digest (sha256 over the relative paths and
contents) goes into the job spec, so a job's key changes when any file of its task changes; the
files themselves travel only in the message to the worker (not in plan.json or the results), for a
folder of at most ``SHIP_LIMIT`` bytes. A worker writes them once into
``$MOE_HARNESS_HOME/tasks/<digest>/`` (``unpack``: checked against the digest, names confined to the
folder) and evaluates from there. A larger folder is not shipped: the workers read it at its path.
A worker holds a shipped folder in use (``using``: a shared ``flock`` on ``tasks/.locks/<digest>.lock``,
taken before the folder is looked for and kept until the job ends), and eviction removes only
folders it can lock exclusively, so daemons sharing a home never evict one another's task in use.

Torch-free: the harness (``bundle``) and the workers (``unpack``) both use it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from moe_schema.home import harness_home
from moe_schema.locks import KeyLock

SHIP_LIMIT = 16 * 1024 * 1024
_CHUNK = 1 << 20


class TaskFilesError(ValueError):
    """A shipped task folder that cannot be used (bad names, digest mismatch); one line."""


def _listing(folder: Path) -> list[tuple[str, Path]]:
    """The folder's files to digest and ship; a symbolic link is followed only to a file inside
    the folder (shipped as its content), one leading out is refused: a task folder never ships a
    private file from elsewhere (``TaskFilesError``)."""
    out = []
    real_root = Path(os.path.realpath(folder))
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
            continue
        if p.is_symlink() or any(q.is_symlink() for q in p.parents if folder in q.parents):
            real = Path(os.path.realpath(p))
            if real != real_root and real_root not in real.parents:
                raise TaskFilesError(f"{folder / rel}: a symbolic link to {real}, outside the task folder; "
                                     "copy the file into the folder instead")
        if p.is_file():
            out.append((rel.as_posix(), p))
    return sorted(out)  # by name, as ``unpack`` orders them


def check_links(folder: str | Path) -> None:
    """Refuse a task folder holding a symbolic link out of it (``TaskFilesError``, one line)."""
    _listing(Path(folder))


def _digest(entries) -> str:
    """sha256 over ``(relative name, sha256 of content)`` pairs in name order; entries: (name, chunks)."""
    total = hashlib.sha256()
    for name, chunks in entries:
        h = hashlib.sha256()
        for chunk in chunks:
            h.update(chunk)
        total.update(name.encode() + b"\0" + h.hexdigest().encode() + b"\n")
    return total.hexdigest()[:24]


def _chunks(path: Path):
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def folder_digest(yaml_path: str | Path) -> tuple[str, int]:
    """``(digest, total bytes)`` of the folder holding ``yaml_path``, read in chunks."""
    listing = _listing(Path(yaml_path).parent)
    return _digest((name, _chunks(p)) for name, p in listing), sum(p.stat().st_size for _, p in listing)


def folder_bytes(yaml_path: str | Path) -> int:
    """What the folder holding ``yaml_path`` would ship, in bytes (its files' sizes; nothing read)."""
    return sum(p.stat().st_size for _, p in _listing(Path(yaml_path).parent))


def bundle(yaml_path: str | Path) -> dict[str, bytes] | None:
    """The folder's files ``{relative name: bytes}`` to ship, or None when it is over ``SHIP_LIMIT``."""
    listing = _listing(Path(yaml_path).parent)
    if sum(p.stat().st_size for _, p in listing) > SHIP_LIMIT:
        return None
    return {name: p.read_bytes() for name, p in listing}


def unpack(files: dict, digest: str, yaml_name: str, home: str | Path | None = None) -> Path:
    """Write shipped ``files`` once under ``<home>/tasks/<digest>/``; return the task YAML's path there."""
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, bytes) for k, v in files.items()):
        raise TaskFilesError("expected a map of relative file names to bytes")
    for name in files:
        parts = PurePosixPath(name).parts
        if not name or name.startswith("/") or "\\" in name or any(p in ("..", ".", "") for p in parts):
            raise TaskFilesError(f"file name {name!r} is not a plain relative path inside the task folder")
    if yaml_name not in files:
        raise TaskFilesError(f"the task file {yaml_name!r} is not among the {len(files)} files shipped")
    actual = _digest((name, [files[name]]) for name in sorted(files))
    if actual != digest:
        raise TaskFilesError(f"the files shipped do not match their digest ({actual} != {digest})")
    root = harness_home(home) / "tasks"
    final = root / digest
    if (final / yaml_name).is_file():
        os.utime(final)  # last used now: eviction goes by it
    else:
        tmp = root / f".tmp-{digest}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            for name, data in files.items():
                target = tmp / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            try:
                os.rename(tmp, final)
            except OSError:  # another job unpacked the same folder first: theirs is identical
                if not (final / yaml_name).is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        evict(root, keep=final)
    return final / yaml_name


def _in_use_lock(root: Path, digest: str, shared: bool) -> KeyLock:
    """The lock saying a shipped folder is in use (shared) or being evicted (exclusive). Lock files
    stay (as ``moe_schema.locks`` explains); they are empty."""
    return KeyLock(root / ".locks" / f"{digest}.lock", shared=shared)


@contextmanager
def using(files: dict, digest: str, yaml_name: str, home: str | Path | None = None):
    """``unpack``, holding the folder in use until the block ends: no worker sharing this home
    evicts it meanwhile. Yields the task YAML's path."""
    if not (isinstance(digest, str) and digest.isalnum()):  # it names the lock file
        raise TaskFilesError(f"digest {str(digest)[:80]!r} is not a hex digest")
    lock = _in_use_lock(harness_home(home) / "tasks", digest, shared=True)
    lock.acquire()  # before looking for the folder: an eviction under way finishes first
    try:
        yield unpack(files, digest, yaml_name, home)
    finally:
        lock.release()


#: what a worker keeps of shipped task folders: least recently used go first past these
KEEP_BYTES = int(os.environ.get("MOE_HARNESS_TASKS_KEEP_MIB", "1024")) << 20
KEEP_AGE_S = 7 * 24 * 3600


def _bytes(folder: Path) -> int:
    total = 0
    try:
        for p in folder.rglob("*"):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    except OSError:  # evicted by another worker while counted
        pass
    return total


def evict(root: str | Path, keep: Path | None = None, keep_bytes: int | None = None,
          keep_age_s: float = KEEP_AGE_S, now: float | None = None, say=None) -> list[str]:
    """Remove shipped task folders under ``root`` unused for ``keep_age_s``, then the least recently
    used until the rest hold at most ``keep_bytes`` (``keep``, the one in use, stays, and so does
    every folder another job holds in use: ``using``); each removal is said (``say``, default stderr: the daemon's log) and its digest returned. Workers kept every
    folder they were ever sent."""
    import sys
    import time

    keep_bytes = KEEP_BYTES if keep_bytes is None else keep_bytes
    now = time.time() if now is None else now
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    root = Path(root)
    used: dict[Path, float] = {}
    for p in (root.iterdir() if root.is_dir() else ()):
        try:
            if p.is_dir() and not p.name.startswith("."):
                used[p] = p.stat().st_mtime
        except OSError:  # evicted by another worker meanwhile
            continue
    folders = sorted(used, key=used.get)
    sizes = {p: _bytes(p) for p in folders}
    total, gone = sum(sizes.values()), []
    for p in folders:
        if keep is not None and p == keep:
            continue
        age = now - used[p]
        if age <= keep_age_s and total <= keep_bytes:
            continue
        lock = _in_use_lock(root, p.name, shared=False)
        if not lock.try_acquire():
            continue  # in use by a job of a worker sharing this home: never evicted under it
        try:
            if not p.is_dir():
                continue  # evicted by another worker meanwhile
            shutil.rmtree(p, ignore_errors=True)
        finally:
            lock.release()
        total -= sizes[p]
        gone.append(p.name)
        why = f"unused for {age / 86400:.1f} days" if age > keep_age_s else f"over {keep_bytes >> 20} MiB kept"
        say(f"evicted task folder {p.name} ({sizes[p] / 2**20:.1f} MiB, {why})")
    return gone


# ---------------------------------------------------------------- the task's data paths

#: a task YAML's keys that may name local data (lm-eval passes them to ``datasets.load_dataset``)
DATA_KEYS = ("dataset_path", "dataset_kwargs.data_files", "dataset_kwargs.data_dir")


def _is_url(value: str) -> bool:
    return "://" in value


def _confined(value: str, folder: Path, where: str, outside_ok: bool, root: Path | None = None) -> str:
    """``value`` (a path or glob, relative to ``folder``) as an absolute path inside ``root``
    (default ``folder``); one that leaves it (``../``, an absolute path elsewhere, a symlink out)
    is refused unless ``outside_ok``."""
    root = root or folder
    path = Path(value).expanduser()
    absolute = path if path.is_absolute() else folder / path
    resolved = Path(os.path.normpath(absolute))
    real = Path(os.path.realpath(resolved))
    inside = all(p == root or root in p.parents for p in (resolved, real))
    if not inside and not outside_ok:
        raise TaskFilesError(f"{where}: {value!r} is outside the task folder {root}; a task reads its data "
                             f"from its own folder (the suite's `eval: {{data_outside_task_folder: true}}` "
                             f"allows other paths, read on each worker)")
    return str(resolved)


def data_paths(config: dict, folder: str | Path, *, outside_ok: bool = False, where: str = "task",
               root: str | Path | None = None) -> dict:
    """A task config (one YAML, includes merged) with its local data paths made absolute against
    the task's own ``folder``: lm-eval hands ``dataset_kwargs.data_files`` / ``data_dir`` to
    ``datasets``, which reads a relative one against the process's working directory, so a worker
    started elsewhere read whatever file stood there under that name (while the job key covered
    the shipped one). A path outside the folder is refused (``TaskFilesError``) unless the suite
    opts in. ``dataset_path`` is local when it starts with ``/ ./ ../ ~`` or names something in
    the folder; otherwise it is a hub dataset or a builder (``json``): a hub dataset's
    ``data_files`` are names inside that dataset and left alone. Torch- and yaml-free: the suite
    parser checks a task file with it, the worker resolves each YAML lm-eval loads with it
    (``folder``: that YAML's; ``root``: the task folder shipped, which confines them all)."""
    folder = Path(os.path.normpath(Path(folder).resolve()))
    root = Path(os.path.normpath(Path(root).resolve())) if root is not None else folder
    out = dict(config)
    dpath = out.get("dataset_path")
    hub = False
    if isinstance(dpath, str) and dpath and not _is_url(dpath):
        if dpath.startswith(("/", "./", "../", "~")) or (folder / dpath).exists():
            out["dataset_path"] = _confined(dpath, folder, f"{where}.dataset_path", outside_ok, root)
        else:
            hub = "/" in dpath  # org/name on the hub; a bare name is a builder (json, csv, ...)
    kwargs = out.get("dataset_kwargs")
    if not isinstance(kwargs, dict) or hub:
        return out
    kwargs = dict(kwargs)
    local = out.get("dataset_path")
    base = Path(local) if isinstance(local, str) and Path(local).is_absolute() and Path(local).is_dir() else None
    if isinstance(kwargs.get("data_dir"), str) and not _is_url(kwargs["data_dir"]):
        data_dir = str(base / kwargs["data_dir"]) if base is not None else kwargs["data_dir"]
        kwargs["data_dir"] = _confined(data_dir, folder, f"{where}.dataset_kwargs.data_dir", outside_ok, root)
        if base is None:
            base = Path(kwargs["data_dir"])  # datasets reads relative data_files inside data_dir

    def fix(value, at):
        if isinstance(value, str):
            if _is_url(value):
                return value
            if base is not None and not Path(value).is_absolute():  # datasets reads it inside that folder
                _confined(str(base / value), folder, at, outside_ok, root)
                return value
            return _confined(value, folder, at, outside_ok, root)
        if isinstance(value, list):
            return [fix(v, f"{at}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: fix(v, f"{at}.{k}") for k, v in value.items()}
        return value

    if "data_files" in kwargs:
        kwargs["data_files"] = fix(kwargs["data_files"], f"{where}.dataset_kwargs.data_files")
    out["dataset_kwargs"] = kwargs
    return out


def count_documents(config: dict, folder: str | Path) -> int | None:
    """How many documents a local task evaluates (its ``test_split``, else ``validation_split``)
    when its data is jsonl, csv or text files named in ``dataset_kwargs.data_files`` (lines
    counted, csv's header aside); None where that cannot be told without lm-eval."""
    split = config.get("test_split") or config.get("validation_split")
    try:
        resolved = data_paths(config, folder, outside_ok=True)
    except TaskFilesError:
        return None
    files = (resolved.get("dataset_kwargs") or {}).get("data_files") if isinstance(resolved.get("dataset_kwargs"), dict) else None
    if isinstance(files, dict):
        files = files.get(split)
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
        return None
    total = 0
    for name in files:
        path = Path(name)
        if _is_url(name) or not path.is_file() or path.suffix not in (".jsonl", ".csv", ".txt", ".json"):
            return None
        with open(path, "rb") as f:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(_CHUNK), b""))
        if path.suffix == ".json" and lines <= 1:  # one JSON array, not one document per line
            return None
        total += max(0, lines - (path.suffix == ".csv"))
    return total
