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

A task names its own files by absolute paths too (``/data/me/tasks/mine/test.jsonl`` beside
``/data/me/tasks/mine/mine.yaml``): a path inside the folder is a path inside the task, wherever
the folder lands. The worker is told the folder a shipped copy came from (``origin``) and
``data_paths`` maps such a data path into the copy; an ``include:`` (read by lm-eval itself) is
shipped relative to its YAML (``portable_includes``), and the digest covers the files as shipped.

Torch-free: the harness (``bundle``) and the workers (``unpack``) both use it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from moe_schema.hashing import entries_digest as _digest
from moe_schema.hashing import file_chunks as _chunks
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


def _shipped(name: str, path: Path, folder: Path):
    """A file's content as shipped, in chunks: a YAML's includes made portable, the rest as it is."""
    if name.endswith((".yaml", ".yml")):
        return [portable_includes(path.read_bytes(), path.parent, folder)]
    return _chunks(path)


def folder_digest(yaml_path: str | Path) -> tuple[str, int]:
    """``(digest, total bytes)`` of the folder holding ``yaml_path`` as shipped, read in chunks."""
    folder = Path(yaml_path).parent
    listing = _listing(folder)
    return (_digest((name, _shipped(name, p, folder)) for name, p in listing),
            sum(p.stat().st_size for _, p in listing))


def folder_bytes(yaml_path: str | Path) -> int:
    """What the folder holding ``yaml_path`` would ship, in bytes (its files' sizes; nothing read)."""
    return sum(p.stat().st_size for _, p in _listing(Path(yaml_path).parent))


def bundle(yaml_path: str | Path) -> dict[str, bytes] | None:
    """The folder's files ``{relative name: bytes}`` to ship, or None when it is over ``SHIP_LIMIT``."""
    folder = Path(yaml_path).parent
    listing = _listing(folder)
    if sum(p.stat().st_size for _, p in listing) > SHIP_LIMIT:
        return None
    return {name: b"".join(_shipped(name, p, folder)) for name, p in listing}


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

#: ``datasets``' packaged builders: ``dataset_path: json`` reads the files its ``data_files`` or
#: ``data_dir`` name, and with neither, the files of the process's working directory
BUILDERS = frozenset({
    "arrow", "audiofolder", "conll", "csv", "eval", "fasta", "fastq", "genbank", "harbor", "hdf5", "iceberg",
    "imagefolder", "json", "lance", "meshfolder", "mmcif", "niftifolder", "pandas", "parquet", "pdb", "pdffolder",
    "text", "tsfile", "videofolder", "vortex", "webdataset", "xml"})


def _is_url(value: str) -> bool:
    return "://" in value


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _outside(where: str, value, root: Path) -> TaskFilesError:
    return TaskFilesError(f"{where}: {value!r} is outside the task folder {root}; a task reads its data "
                          f"from its own folder (the suite's `eval: {{data_outside_task_folder: true}}` "
                          f"allows other paths, read on each worker)")


def data_paths(config: dict, folder: str | Path, *, outside_ok: bool = False, where: str = "task",
               root: str | Path | None = None, origin: str | Path | None = None) -> dict:
    """A task config (one YAML, includes merged) with its local data paths made absolute against
    the task's own ``folder``: lm-eval hands ``dataset_kwargs.data_files`` / ``data_dir`` to
    ``datasets``, which reads a relative one against the process's working directory, so a worker
    started elsewhere read whatever file stood there under that name (while the job key covered
    the shipped one). A path outside the folder is refused (``TaskFilesError``) unless the suite
    opts in. ``dataset_path`` is local when it starts with ``/ ./ ../ ~`` or names something in
    the folder; otherwise it is a hub dataset or a builder (``json``): a hub dataset's
    ``data_files`` are names inside that dataset and left alone, and a builder with neither
    ``data_files`` nor ``data_dir`` (nor a ``custom_dataset``) is refused: it would read the
    working directory. Torch- and yaml-free: the suite parser checks a task file with it, the
    worker resolves each YAML lm-eval loads with it (``folder``: that YAML's; ``root``: the task
    folder here, which confines them all; ``origin``: the folder ``root`` is a shipped copy of,
    where the YAML's absolute paths point: one inside it is read at its place in ``root``)."""
    folder = Path(os.path.normpath(Path(folder).resolve()))
    root = Path(os.path.normpath(Path(root).resolve())) if root is not None else folder
    named_root = Path(os.path.normpath(origin)) if origin is not None else root
    named_folder = named_root / folder.relative_to(root) if _inside(folder, root) else folder

    def place(value: str, at: str, base: Path = named_folder) -> tuple[Path, str]:
        """``value`` (relative to ``base``) as the YAML names it, and where this process reads it."""
        path = Path(value).expanduser()
        named = Path(os.path.normpath(path if path.is_absolute() else base / path))
        if _inside(named, named_root):
            here = root / named.relative_to(named_root)
            if _inside(Path(os.path.realpath(here)), root):  # no symbolic link out of the folder
                return named, str(here)
            if outside_ok:
                return named, str(here)
        elif outside_ok:
            return named, str(named)
        raise _outside(at, value, named_root)

    out = dict(config)
    dpath = out.get("dataset_path")
    hub = builder = False
    base = None  # a local dataset folder: datasets reads data_dir and relative data_files inside it
    if isinstance(dpath, str) and dpath and not _is_url(dpath):
        if dpath.startswith(("/", "./", "../", "~")) or (folder / dpath).exists():
            named, out["dataset_path"] = place(dpath, f"{where}.dataset_path")
            base = named if Path(out["dataset_path"]).is_dir() else None
        else:
            hub = "/" in dpath  # org/name on the hub; a bare name is a builder (json, csv, ...)
            builder = dpath in BUILDERS
    kwargs = out.get("dataset_kwargs")
    if builder and "custom_dataset" not in out and not (
            isinstance(kwargs, dict) and (kwargs.get("data_files") or kwargs.get("data_dir"))):
        raise TaskFilesError(f"{where}.dataset_path: {dpath!r} is a datasets builder and the task names no "
                             f"dataset_kwargs.data_files or data_dir: it would read whatever files stand in "
                             f"the worker's working directory; name the task's own (dataset_kwargs: "
                             f"{{data_files: {{test: test.jsonl}}}}, relative to the task file)")
    if not isinstance(kwargs, dict) or hub:
        return out
    kwargs = dict(kwargs)
    if isinstance(kwargs.get("data_dir"), str) and not _is_url(kwargs["data_dir"]):
        named, kwargs["data_dir"] = place(kwargs["data_dir"], f"{where}.dataset_kwargs.data_dir",
                                          base or named_folder)
        base = base or named  # datasets reads relative data_files inside data_dir

    def fix(value, at):
        if isinstance(value, str):
            if _is_url(value):
                return value
            if base is not None and not Path(value).is_absolute():  # datasets reads it inside that folder
                place(value, at, base)
                return value
            return place(value, at)[1]
        if isinstance(value, list):
            return [fix(v, f"{at}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: fix(v, f"{at}.{k}") for k, v in value.items()}
        return value

    if "data_files" in kwargs:
        kwargs["data_files"] = fix(kwargs["data_files"], f"{where}.dataset_kwargs.data_files")
    out["dataset_kwargs"] = kwargs
    return out


def with_includes(yaml_path: str | Path, load, *, where: str = "task", root: str | Path | None = None,
                  _seen: tuple = ()) -> dict:
    """A task YAML merged with the YAMLs it ``include``s, as lm-eval merges them (each include
    read relative to the YAML that names it, unless absolute; the file's own keys win);
    ``load(path) -> dict`` reads one file. An include outside the task folder (``root``, default
    the YAML's) is refused (``TaskFilesError``): it is not shipped with the task, nor in its digest."""
    path = Path(os.path.normpath(Path(yaml_path).resolve()))
    root = Path(os.path.normpath(Path(root).resolve())) if root is not None else path.parent
    config = load(path)
    if not isinstance(config, dict):
        raise TaskFilesError(f"{where}: {path} is not a mapping of task keys")
    config = dict(config)
    includes = config.pop("include", None)
    if includes is None:
        return config
    merged: dict = {}
    for i, inc in enumerate(includes if isinstance(includes, list) else [includes]):
        at = f"{where}.include" + (f"[{i}]" if isinstance(includes, list) else "")
        if not isinstance(inc, str) or not inc:
            raise TaskFilesError(f"{at}: expected the path of a YAML file, got {inc!r}")
        target = Path(os.path.normpath(path.parent / inc))  # an absolute inc stays itself
        if not (_inside(target, root) and _inside(Path(os.path.realpath(target)), root)):
            raise TaskFilesError(f"{at}: {inc!r} is outside the task folder {root}; only the folder travels "
                                 f"with the task: copy the file into it")
        if not target.is_file():
            raise TaskFilesError(f"{at}: no such file: {target}")
        if target in _seen or target == path:
            raise TaskFilesError(f"{at}: {inc!r} includes itself again (a cycle)")
        included = with_includes(target, load, where=f"{at}", root=root, _seen=(*_seen, path))
        included.pop("task_list", None)  # lm-eval: it defines tasks for the included file only
        merged.update(included)
    merged.update(config)
    return merged


def portable_includes(data: bytes, yaml_dir: Path, folder: Path) -> bytes:
    """A task YAML's bytes with each ``include:`` that names a file inside ``folder`` by an absolute
    path (or a ``../`` that comes back in) rewritten relative to the YAML's own folder: lm-eval
    reads includes itself, so the shipped copy must name its sibling, not the original. Anything
    else (no include, one outside, a file that is not YAML) is left byte for byte as it was."""
    if b"include" not in data:
        return data
    import json

    import yaml

    try:
        text = data.decode()
        node = yaml.compose(text, Loader=yaml.SafeLoader)  # composes unknown tags (!function) as they are
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError):
        return data
    if not isinstance(node, yaml.MappingNode):
        return data
    yaml_dir, folder = Path(os.path.normpath(yaml_dir)), Path(os.path.normpath(folder))
    real_folder = Path(os.path.realpath(folder))
    edits = []
    for key, value in node.value:
        if not (isinstance(key, yaml.ScalarNode) and key.value == "include"):
            continue
        for item in [value] if isinstance(value, yaml.ScalarNode) else getattr(value, "value", []):
            if not isinstance(item, yaml.ScalarNode) or not isinstance(item.value, str) or not item.value:
                continue
            target = Path(os.path.normpath(yaml_dir / item.value))
            if not (_inside(target, folder) and _inside(Path(os.path.realpath(target)), real_folder)):
                continue
            relative = os.path.relpath(target, yaml_dir)
            if relative != item.value:
                edits.append((item.start_mark.index, item.end_mark.index, json.dumps(relative)))
    for start, end, replacement in sorted(edits, reverse=True):
        text = text[:start] + replacement + text[end:]
    return text.encode() if edits else data


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
