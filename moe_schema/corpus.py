"""The corpus spec of a ``train`` job, checked, with defaults filled in; its content hash.

Built-in synthetic knowledge corpus::

    {"kind": "knowledge", "entities": 2000, "tokens": 2_000_000, "zipf": 1.0, "seed": 0,
     "attributes": ["birth_year", "city", "employer", "university", "field"],   # any subset, in order
     "buckets": {"head": 0.1, "torso": 0.3},   # fractions of entities by popularity; tail: the rest
     "eval_per_bucket": 100,                   # entities per bucket asked about in the lm-eval tasks
     "heldout_docs": 100}                      # held-out biographies of each kind (seen / unseen entities)

Local files (each text file is one document; each jsonl line's ``field`` is one)::

    {"kind": "files", "paths": ["/abs/a.txt", ...], "format": "text" | "jsonl", "field": "text"}
"""

from __future__ import annotations

from pathlib import Path

from moe_schema.check import SchemaError, known_keys, unknown
from moe_schema.hashing import content_hash
from moe_schema.knowledge import ATTRIBUTES

KNOWLEDGE_DEFAULTS = {"entities": 2000, "tokens": 2_000_000, "zipf": 1.0, "seed": 0,
                      "attributes": list(ATTRIBUTES), "buckets": {"head": 0.1, "torso": 0.3},
                      "eval_per_bucket": 100, "heldout_docs": 100}
FILES_DEFAULTS = {"format": "text", "field": "text"}


class CorpusError(SchemaError):
    """A bad corpus spec; the message names the field (``job.corpus.zipf: ...``)."""


def corpus_hash(spec: dict) -> str:
    return content_hash(spec)


def _int(spec, key, where, low=1):
    v = spec[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise CorpusError(f"{where}.{key}: expected an int >= {low}, got {v!r}")


def check_corpus(spec, where: str = "job.corpus") -> dict:
    """Validate a corpus spec; return a copy with defaults filled in."""
    if not isinstance(spec, dict):
        raise CorpusError(f"{where}: expected a map, got {type(spec).__name__}")
    kind = spec.get("kind")
    if kind == "knowledge":
        out = {**KNOWLEDGE_DEFAULTS, **spec}
        known_keys(where, spec, ["kind", *KNOWLEDGE_DEFAULTS], CorpusError)
        for key, low in (("entities", 10), ("tokens", 1000), ("seed", 0), ("eval_per_bucket", 1),
                         ("heldout_docs", 1)):
            _int(out, key, where, low)
        if not isinstance(out["zipf"], (int, float)) or isinstance(out["zipf"], bool) or out["zipf"] < 0:
            raise CorpusError(f"{where}.zipf: expected a number >= 0, got {out['zipf']!r}")
        attrs = out["attributes"]
        if not isinstance(attrs, list) or not attrs or any(a not in ATTRIBUTES for a in attrs) or len(set(attrs)) < len(attrs):
            raise CorpusError(f"{where}.attributes: expected a non-empty list of distinct names from "
                              f"{', '.join(ATTRIBUTES)}, got {attrs!r}")
        b = out["buckets"]
        if (not isinstance(b, dict) or set(b) != {"head", "torso"}
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in b.values())
                or b["head"] + b["torso"] >= 1):
            raise CorpusError(f"{where}.buckets: expected {{head: f, torso: f}} with positive fractions summing "
                              f"below 1, got {b!r}")
        out["zipf"] = float(out["zipf"])
        return out
    if kind == "files":
        out = {**FILES_DEFAULTS, **spec}
        known_keys(where, spec, ["kind", "paths", "format", "field"], CorpusError)
        paths = out.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise CorpusError(f"{where}.paths: expected a non-empty list of file paths, got {paths!r}")
        for i, p in enumerate(paths):
            if not Path(p).is_absolute():
                raise CorpusError(f"{where}.paths[{i}]: expected an absolute path, got {p!r}")
            if not Path(p).is_file():
                raise CorpusError(f"{where}.paths[{i}]: no such file: {p}")
        if out["format"] not in ("text", "jsonl"):
            raise CorpusError(f"{where}.format: expected 'text' or 'jsonl', got {out['format']!r}")
        if not isinstance(out["field"], str):
            raise CorpusError(f"{where}.field: expected a string, got {out['field']!r}")
        return out
    raise CorpusError(f"{where}.kind", unknown("corpus kind", kind, ["knowledge", "files"]))
