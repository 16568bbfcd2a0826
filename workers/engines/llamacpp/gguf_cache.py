"""The GGUF files of a build, cached under the harness home, and what their tensors weigh.

``gguf_for(checkpoint, quant)`` is ``<home>/gguf/<digest>/<quant>.gguf``: the digest hashes the files
the writer reads (``gguf_write.READS``) with ``WRITER_VERSION``, so a retrained checkpoint or a new
writer gets a new file and an unchanged one is written once. A quantized file's name also carries
llama-cpp-python's version (its quantizer writes it). Each file appears atomically (a hidden
temporary beside it, then a rename) under the checkpoint's lock (``moe_schema.locks.KeyLock``), so
two workers on one machine never write it twice and never read half of it.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from moe_schema.hashing import entries_digest, file_chunks
from moe_schema.home import harness_home
from moe_schema.locks import KeyLock
from workers.engines.llamacpp.gguf_write import READS, WRITER_VERSION, UnsupportedCheckpoint, quantize, write_gguf
from workers.engines.llamacpp.spec import QUANTS


def gguf_for(checkpoint_dir: str | Path, quant: str = "f32", home: str | Path | None = None,
             threads: int = 1) -> Path:
    """The GGUF of ``checkpoint_dir`` at ``quant`` (``spec.QUANTS``), written (F32) and quantized
    (``threads`` threads) the first time it is asked for on this machine."""
    if quant not in QUANTS:
        raise ValueError(f"quant {quant!r}: expected one of {', '.join(QUANTS)}")
    ckpt = Path(checkpoint_dir)
    if not ckpt.is_dir():
        raise UnsupportedCheckpoint(f"checkpoint {checkpoint_dir}: not a local folder (GGUF files are written "
                                    f"from a checkpoint on this machine)")
    folder = harness_home(home) / "gguf" / checkpoint_digest(ckpt)
    final = folder / _file_name(quant)
    if final.is_file():
        return final
    with KeyLock(folder / ".lock"):
        for stale in folder.glob(".tmp-*"):  # only the lock's holder writes: these are a dead writer's
            stale.unlink(missing_ok=True)
        f32 = _once(folder / _file_name("f32"), lambda tmp: write_gguf(ckpt, tmp))
        if quant != "f32":
            _once(final, lambda tmp: quantize(f32, tmp, quant, threads))
    return final


def checkpoint_digest(ckpt: Path) -> str:
    """The digest of the writer's version and of each file it reads, by name and content."""
    paths = sorted({p for pattern in READS for p in ckpt.glob(pattern) if p.is_file()})
    return entries_digest([("gguf_write", [str(WRITER_VERSION).encode()])]
                          + [(p.name, file_chunks(p)) for p in paths])


def _file_name(quant: str) -> str:
    if quant == "f32":
        return "f32.gguf"
    import llama_cpp

    return f"{quant}-llama_cpp-{llama_cpp.__version__}.gguf"


def _once(final: Path, write) -> Path:
    """``final``, made by ``write(temporary path)`` and renamed into place if it is not there yet."""
    if final.is_file():
        return final
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write(tmp)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def tensor_bytes(gguf_path: str | Path) -> dict:
    """What a GGUF's tensors weigh: bytes and parameters of the expert tensors (``*_exps``) and of
    the rest, their totals, bytes per parameter of each, and the file's size. The roofline reads a
    quantized format's real bytes per parameter here (block formats store scales beside weights)."""
    from gguf import GGUFReader

    out = {"expert_bytes": 0, "expert_params": 0, "other_bytes": 0, "other_params": 0}
    for t in GGUFReader(gguf_path).tensors:
        group = "expert" if t.name.endswith("_exps.weight") else "other"
        out[f"{group}_bytes"] += int(t.n_bytes)
        out[f"{group}_params"] += int(t.n_elements)
    out["total_bytes"] = out["expert_bytes"] + out["other_bytes"]
    out["total_params"] = out["expert_params"] + out["other_params"]
    for group in ("expert", "other", "total"):
        params = out[f"{group}_params"]
        out[f"{group}_bytes_per_param"] = out[f"{group}_bytes"] / params if params else None
    out["file_bytes"] = Path(gguf_path).stat().st_size
    return out
