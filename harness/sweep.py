"""The suite's ``sweep:`` key: a grid over settings, each point a full copy of the suite's models.

``sweep: {train.tokens: [100000, 300000], top_k: [1, 2]}`` makes 4 points (the product, in the
order written). At every point each model becomes ``<model>[<setting>=<value>,...]`` and its
derived twins are derived again from that point's MoE, so "equal active" and "equal total" hold
at every point; pairs form only within one point (``harness.pairs``). Settings:

- ``train.tokens``, ``train.aux_loss_coef``: the point's training budget / load-balancing
  coefficient (claim 7), for every trained build.
- ``corpus.entities``: the knowledge corpus's entity count, i.e. exposures per fact at a fixed
  token budget; the point's corpus tasks are that corpus's.
- ``top_k``: experts per token of every config MoE build (not derived ones).
- ``experts``: number of experts of every config MoE build at fixed active parameters, the
  granularity of claim 6: ``E`` experts take ``k * E / E0`` per token (must be a whole number)
  and the expert width is solved so active parameters stay those of the written build
  (``harness.derive.regranulate``); total parameters then stay about fixed too.

Each variant spec carries ``"sweep": {<setting>: value}`` ({} outside a sweep). Torch-free.
"""

from __future__ import annotations

import itertools
from typing import Any

from moe_schema.check import fits, got as _got, short, value_problem  # one way to show a value, bounded

# setting -> (python type(s), lowest value, what the error says is expected)
SETTINGS: dict[str, tuple[tuple[type, ...], float, str]] = {
    "train.tokens": ((int,), 1, "int >= 1"),
    "train.aux_loss_coef": ((int, float), 0, "number >= 0"),
    "corpus.entities": ((int,), 10, "int >= 10"),
    "top_k": ((int,), 1, "int >= 1"),
    "experts": ((int,), 1, "int >= 1"),
}


class SweepError(ValueError):
    def __init__(self, path: str, message: str):
        self.path, self.message = path, message
        super().__init__(f"{path}: {message}")




def check_sweep(raw: Any, path: str = "sweep") -> dict[str, list]:
    """``{setting: [values]}`` checked: known settings, non-empty lists of distinct values of the
    setting's type. Errors name the YAML path (``sweep.top_k[1]: expected int >= 1, got 'two'``)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SweepError(path, f"expected a map of setting: [values], got {_got(raw)}")
    out = {}
    for setting, values in raw.items():
        where = f"{path}.{setting}"
        if setting not in SETTINGS:
            raise SweepError(where, f"unknown sweep setting; known: {', '.join(SETTINGS)}")
        types, low, what = SETTINGS[setting]
        if not isinstance(values, list) or not values:
            raise SweepError(where, f"expected a non-empty list of values, got {_got(values)}")
        for i, v in enumerate(values):
            if not any(fits(t, v) for t in types) or v < low:
                raise SweepError(f"{where}[{i}]", f"expected {value_problem(v) or what}, got {_got(v)}")
        dup = next((v for i, v in enumerate(values) if v in values[:i]), None)
        if dup is not None:
            raise SweepError(where, f"value {short(dup)} listed twice")
        out[setting] = list(values)
    return out


def points(sweep: dict[str, list]) -> list[dict]:
    """Every grid point, ``{setting: value}``, settings in the order written; ``[{}]`` without a sweep."""
    if not sweep:
        return [{}]
    keys = list(sweep)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(sweep[k] for k in keys))]


def point_label(point: dict) -> str:
    """``[train.tokens=100000,top_k=1]`` (empty outside a sweep): what a model name gains."""
    if not point:
        return ""
    return "[" + ",".join(f"{k}={v}" for k, v in point.items()) + "]"


def index_of(sweep: dict[str, list], setting: str, value) -> int:
    return sweep[setting].index(value)
