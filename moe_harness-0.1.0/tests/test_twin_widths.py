"""Exact widths for the twins the tests derive: the solved width is the closest one, not merely
within 2% (an off-by-one width costs about 0.6% on these tiny builds and would hide in a 2% band).

For every tiny MoE of tests/test_derive.py and both matches, the dense twin's intermediate_size is
the integer width whose parameter count is nearest the target, the twin counts exactly what its
instantiated transformers model holds, and with ``multiple_of`` it is the nearest multiple. The
MoE twins of a dense build are held to the same rule on the expert width.
"""

from __future__ import annotations

import pytest
from test_derive import TINY, TINY_MOE, instantiated_count

from harness.derive import count, derive_twin

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def expert_key(family: str) -> str:
    return "moe_intermediate_size" if family.startswith("qwen") else "intermediate_size"


def nearest(config: dict, key: str, target: int, kind: str, step: int = 1, tied=()) -> None:
    """``config[key]`` is the multiple of ``step`` whose ``kind`` count is nearest ``target``."""
    def gap(w):
        return abs(count({**config, key: w, **{t: w for t in tied}})[kind] - target)

    w = config[key]
    assert w % step == 0, (key, w, step)
    assert gap(w) <= gap(w + step), f"{key}={w}: {key}={w + step} is closer to {target}"
    if w - step >= step:
        assert gap(w) <= gap(w - step), f"{key}={w}: {key}={w - step} is closer to {target}"


@pytest.mark.parametrize("match", ["active", "total"])
@pytest.mark.parametrize("name", list(TINY_MOE))
def test_dense_twin_width_is_the_nearest_and_counts_exactly(name, match):
    moe = TINY_MOE[name]
    target = count(moe)[match]
    assert target == instantiated_count(moe)[match]
    twin = derive_twin(moe, match)
    nearest(twin, "intermediate_size", target, "total")
    assert count(twin)["total"] == instantiated_count(twin)["total"]
    assert abs(count(twin)["total"] - target) <= 3 * twin["hidden_size"] * twin["num_hidden_layers"] / 2


@pytest.mark.parametrize("step", [8, 16])
@pytest.mark.parametrize("name", ["olmoe", "qwen2_moe"])
def test_dense_twin_width_with_multiple_of_is_the_nearest_multiple(name, step):
    moe = TINY_MOE[name]
    twin = derive_twin(moe, "total", multiple_of=step)
    nearest(twin, "intermediate_size", count(moe)["total"], "total", step=step)


@pytest.mark.parametrize("family,shared,granularity", [("olmoe", 0, 1), ("olmoe", 0, 4), ("mixtral", 0, 2),
                                                       ("qwen2_moe", 1, 2), ("qwen3_moe", 0, 2),
                                                       ("granitemoe", 0, 2)])
def test_moe_twin_expert_width_is_the_nearest_and_counts_exactly(family, shared, granularity):
    dense = dict(model_type="llama", intermediate_size=128, **TINY)
    target = count(dense)["total"]
    twin = derive_twin(dense, "active", family=family, num_experts=8, shared_experts=shared,
                       granularity=granularity)
    key = expert_key(family)
    tied = [k for k in ("shared_expert_intermediate_size",) if shared and k in twin]
    if tied:
        assert twin[tied[0]] == shared * twin[key]  # the shared expert is `shared` experts wide
        nearest_shared = {**twin}
        gap = lambda w: abs(count({**nearest_shared, key: w, tied[0]: shared * w})["active"] - target)  # noqa: E731
        assert gap(twin[key]) <= min(gap(twin[key] - 1), gap(twin[key] + 1))
    else:
        nearest(twin, key, target, "active")
    got = instantiated_count(twin)
    assert (got["active"], got["total"]) == (count(twin)["active"], count(twin)["total"])
    assert twin["num_experts_per_tok"] == granularity and got["num_experts"] == 8
