"""The corpus spec of a ``train`` job, checked, with defaults filled in; its content hash.

Built-in synthetic knowledge corpus::

    {"kind": "knowledge", "entities": 2000, "tokens": 2_000_000, "zipf": 1.0, "seed": 0,
     "attributes": ["birth_year", "city", "employer", "university", "field"],   # any subset, in order
     "buckets": {"head": 0.1, "torso": 0.3},   # fractions of entities by popularity; tail: the rest
     "eval_per_bucket": 100,                   # entities per bucket asked about in the lm-eval tasks
     "heldout_docs": 100,                      # held-out biographies of each kind (seen / unseen entities)
     "profile": "default",                     # or "bios": Allen-Zhu & Li's bioS (moe_schema.bios)
     "tokenizer": "byte"}                      # or "word" (bios only): one token per word of the profile

``profile: bios`` has its own attributes (``attributes`` must be left out) and gives every person the
same number of biographies (``zipf`` must be 0): one biography per exposure, at uniform popularity.

Local files (each text file is one document; each jsonl line's ``field`` is one)::

    {"kind": "files", "paths": ["/abs/a.txt", ...], "format": "text" | "jsonl", "field": "text"}
"""

from __future__ import annotations

from pathlib import Path

from moe_schema.check import SchemaError, fits, known_keys, short, unknown, value_problem
from moe_schema.hashing import content_hash
from moe_schema.knowledge import ATTRIBUTES

KNOWLEDGE_DEFAULTS = {"entities": 2000, "tokens": 2_000_000, "zipf": 1.0, "seed": 0,
                      "attributes": list(ATTRIBUTES), "buckets": {"head": 0.1, "torso": 0.3},
                      "eval_per_bucket": 100, "heldout_docs": 100, "profile": "default", "tokenizer": "byte"}
PROFILES = ("default", "bios")
TOKENIZERS = ("byte", "word")
FILES_DEFAULTS = {"format": "text", "field": "text"}


class CorpusError(SchemaError):
    """A bad corpus spec; the message names the field (``job.corpus.zipf: ...``)."""


def corpus_hash(spec: dict) -> str:
    return content_hash(spec)


def _int(spec, key, where, low=1):
    v = spec[key]
    if not fits(int, v) or v < low:
        raise CorpusError(f"{where}.{key}", f"expected {value_problem(v) or f'an int >= {low}'}, got {short(v)}")


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
        z = out["zipf"]
        if not fits(float, z) or z < 0:
            raise CorpusError(f"{where}.zipf", f"expected {value_problem(z) or 'a number >= 0'}, got {short(z)}")
        if out["profile"] not in PROFILES:
            raise CorpusError(f"{where}.profile", unknown("corpus profile", out["profile"], PROFILES))
        if out["tokenizer"] not in TOKENIZERS:
            raise CorpusError(f"{where}.tokenizer", unknown("corpus tokenizer", out["tokenizer"], TOKENIZERS))
        if out["profile"] == "bios":
            from moe_schema import bios

            if "attributes" in spec and spec["attributes"] != list(bios.ORDER):  # a checked spec holds its own
                raise CorpusError(f"{where}.attributes: profile bios has its own ({', '.join(bios.ORDER)}); "
                                  f"leave attributes out")
            out["zipf"] = spec.get("zipf", 0)
            if out["zipf"] != 0:
                raise CorpusError(f"{where}.zipf: profile bios gives every person the same number of "
                                  f"biographies; expected 0, got {out['zipf']!r}")
            out["attributes"] = list(bios.ORDER)
        elif out["tokenizer"] == "word":
            raise CorpusError(f"{where}.tokenizer: 'word' needs profile: bios (its vocabulary is fixed by "
                              f"the profile); profile {out['profile']!r} is byte-level only")
        attrs = out["attributes"]
        if out["profile"] == "default" and (not isinstance(attrs, list) or not attrs or any(a not in ATTRIBUTES for a in attrs)
                                            or len(set(attrs)) < len(attrs)):
            raise CorpusError(f"{where}.attributes: expected a non-empty list of distinct names from "
                              f"{', '.join(ATTRIBUTES)}, got {short(attrs)}")
        b = out["buckets"]
        if (not isinstance(b, dict) or set(b) != {"head", "torso"}
                or not all(fits(float, x) and x > 0 for x in b.values())
                or b["head"] + b["torso"] >= 1):
            raise CorpusError(f"{where}.buckets: expected {{head: f, torso: f}} with positive fractions summing "
                              f"below 1, got {short(b)}")
        out["zipf"] = float(out["zipf"])
        if out["profile"] == "default" and out["tokenizer"] == "byte":
            del out["profile"], out["tokenizer"]  # the spec (and its cache key) of before these options
        return out
    if kind == "files":
        out = {**FILES_DEFAULTS, **spec}
        known_keys(where, spec, ["kind", "paths", "format", "field"], CorpusError)
        paths = out.get("paths")
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise CorpusError(f"{where}.paths", f"expected a non-empty list of file paths, got {short(paths)}")
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
