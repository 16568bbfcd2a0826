"""MoE families of the installed transformers beyond the harness's config-build table: each is
described from its checkpoint tensors, found, routed and shaped for the roofline (tests/families.py).
The families left out, and why, are what `python benchmarks/moe_families.py` prints."""

from __future__ import annotations

import pytest

from families import survey

SUPPORTED = ["axk1", "cohere2_moe", "deepseek_v2", "deepseek_v3", "ernie4_5_moe", "exaone_moe", "flex_olmo",
             "glm4_moe", "glm4_moe_lite", "gpt_oss", "granitemoe", "granitemoe_swa", "granitemoeshared", "hy_v4",
             "kolibri1", "laguna", "lara_mini", "mellum", "mimo_v2_flash", "minimax", "mixtral", "nemotron_h",
             "olmoe", "phimoe", "qwen2_moe", "qwen3_moe", "solar_open"]


@pytest.mark.parametrize("family", SUPPORTED)
def test_family_is_described_routed_and_probed(family, one_torch_thread):
    import importlib.util

    if importlib.util.find_spec(f"transformers.models.{family}") is None:
        pytest.skip(f"transformers here has no {family}")
    result = survey(family)
    assert result == {"describe": True, "blocks": True, "route": True, "probe": True}, result
