"""Local corpora: text files (each file one document) or jsonl files (one document per line's field)."""

from __future__ import annotations

import json
from pathlib import Path

from workers.corpora.knowledge import encode


def read_documents(spec: dict, where: str = "job.corpus") -> list[str]:
    """The documents of a checked ``files`` spec; a bad line fails naming the file and line."""
    docs = []
    for i, path in enumerate(spec["paths"]):
        text = Path(path).read_text(encoding="utf-8", errors="replace")
        if spec["format"] == "text":
            docs.append(text)
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)[spec["field"]]
            except (ValueError, KeyError, TypeError):
                raise ValueError(f"{where}.paths[{i}] {path}:{n}: not a JSON object with a "
                                 f"{spec['field']!r} field") from None
            if not isinstance(value, str):
                raise ValueError(f"{where}.paths[{i}] {path}:{n}: {spec['field']!r} is not a string")
            docs.append(value)
    return [d.replace("\x00", "") for d in docs]


def tokenize(spec: dict):
    return encode(read_documents(spec))
