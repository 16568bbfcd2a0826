"""Match each MoE variant with its dense twins: equal active and equal total parameters.

Pairs form only between variants of the same sweep point and the same training seed: a variant
named ``moe[train.tokens=1000]@topk(k=1)#s2`` pairs with ``dense-active[train.tokens=1000]#s2``,
never with another point's or seed's twin (equal counts there would be a coincidence of shape,
not a comparison the suite set up), and of the same engine: ``moe@topk(k=1)[vllm]`` pairs with
``dense-active[vllm]`` (moe_schema.engines.label). ``pair_group`` reads all three from the name.
"""

from __future__ import annotations

import re

import functools

import attrs

from moe_schema.engines import ENGINES

_POINT = re.compile(r"^[^\[@#]*(\[[^\]]*\])?")
_SEED = re.compile(r"#s(-?\d+)$")


@functools.lru_cache(maxsize=1)
def _engine_label() -> re.Pattern:
    """An engine label ends the name, before a seed suffix: ``[vllm]``, ``[vllm,tensor_parallel_size=2]``;
    built-in and third-party engines alike (their entry points are read on first use)."""
    return re.compile(r"\[(" + "|".join(map(re.escape, ENGINES.names())) + r")(,[^\]]*)?\](?=(#s-?\d+)?$)")


def pair_group(variant: str) -> tuple[str, str, str]:
    """``(sweep point label, seed suffix, engine label)`` of a variant name; ``""`` for each absent."""
    engine = _engine_label().search(variant)
    if engine:
        variant = variant[:engine.start()] + variant[engine.end():]
    point = _POINT.match(variant).group(1) or ""
    seed = _SEED.search(variant)
    return point, seed.group(0) if seed else "", engine.group(0) if engine else ""


@attrs.frozen
class Pair:
    kind: str  # "active" or "total"
    moe: str
    dense: str
    ratio: float  # dense count / MoE count on the matched basis

    def to_dict(self) -> dict:
        return attrs.asdict(self)


def match_pairs(params: dict[str, dict], is_moe: dict[str, bool], tolerance: float = 0.10,
                embeddings: bool = True) -> list[Pair]:
    """Pairs within ``tolerance`` (relative), closest first for each MoE variant.

    ``params`` maps variant name to its parameter counts ({total, active, total_no_embed,
    active_no_embed}); a dense variant's active count equals its total. With ``embeddings``
    False the counts without embedding parameters are matched.
    """
    suffix = "" if embeddings else "_no_embed"
    group = {n: pair_group(n) for n in params}
    moes = [n for n in params if is_moe.get(n)]
    denses = [n for n in params if is_moe.get(n) is False]
    out: list[Pair] = []
    for kind in ("active", "total"):
        for m in moes:
            target = params[m].get(kind + suffix)
            if not target:
                continue
            found = []
            for d in denses:
                if group[d] != group[m]:
                    continue
                count = params[d].get("total" + suffix)
                if not count:
                    continue
                ratio = count / target
                if abs(ratio - 1) <= tolerance + 1e-12:
                    found.append(Pair(kind, m, d, ratio))
            out.extend(sorted(found, key=lambda p: abs(p.ratio - 1)))
    return out
