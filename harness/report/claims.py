"""The claims, in words, as the project states them: ``claims.md`` beside this module (package
data; ``docs/claims.md`` is the same file, kept equal by tests/test_claims_doc.py).

The report quotes a claim from here and never words it itself, so the card and the docs cannot drift.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|")


def claims_text() -> str:
    return resources.files("harness.report").joinpath("claims.md").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def claims() -> dict[str, str]:
    """{number: the claim in words} from the first table of claims.md."""
    out: dict[str, str] = {}
    for line in claims_text().splitlines():
        m = ROW.match(line)
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2)
        elif out and not line.startswith("|"):
            break  # the first table has ended
    return out


def claim(number: str) -> str:
    return claims()[str(number)]
