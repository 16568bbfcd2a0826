"""Content hashes: the names of everything the harness caches, written once.

A job key, a build's folder, a corpus's folder and a train key are each the first hex digits of the
sha256 of canonical JSON (sorted keys, no spaces, ASCII): equal content, equal name, on any host and
either side of the wire. Changing anything here renames every cached result, build and corpus.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from moe_schema.engines import DEFAULT, is_default


def canonical_json(obj) -> str:
    """The one serialisation hashed (anything JSON cannot hold is hashed as its ``str``)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def content_hash(obj, n: int = 16) -> str:
    """The first ``n`` hex digits of the sha256 of ``canonical_json(obj)``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def model_key(variant: dict) -> str:
    """What a loaded model is cached by: the build and how it is loaded, not its routing, so every
    routing of one build shares one model. The coordinator's affinity and a worker's model cache
    both use it. A build hosted in another engine than the default is another model (its engine
    spec joins the hash; builds on the default engine keep the names they always had)."""
    parts = [variant["build"], variant["dtype"], variant["trust_remote_code"], variant["experts_implementation"]]
    engine = variant.get("engine")
    if isinstance(engine, dict) and not is_default(engine.get("name", DEFAULT)):
        parts.append(engine)
    return content_hash(parts)


_CHUNK = 1 << 20


def entries_digest(entries) -> str:
    """The first 24 hex digits of the sha256 over one ``name\\0<sha256 of content>`` line per entry,
    in the order given; ``entries``: ``(name, chunks)``, the content as an iterable of bytes (a file
    read in pieces: ``file_chunks``). Names shipped task folders (``taskfiles``) and the GGUF files
    written from a checkpoint (``workers.engines.llamacpp.gguf_cache``)."""
    total = hashlib.sha256()
    for name, chunks in entries:
        h = hashlib.sha256()
        for chunk in chunks:
            h.update(chunk)
        total.update(name.encode() + b"\0" + h.hexdigest().encode() + b"\n")
    return total.hexdigest()[:24]


def file_chunks(path: str | Path):
    """A file's bytes in pieces of 1 MiB (read lazily: a large file is never held whole)."""
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk
