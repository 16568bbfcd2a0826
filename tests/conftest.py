"""Shared fixtures. Costly ones (daemons, built checkpoints, lm-eval's task index) are session-scoped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory):
    """Builds and the shared result cache go to a per-session folder, never the user's ~/.cache."""
    if "MOE_HARNESS_HOME" not in os.environ or os.environ.get("MOE_HARNESS_TEST_HOME_SET") != "1":
        home = tmp_path_factory.mktemp("moe_harness_home")
        os.environ["MOE_HARNESS_HOME"] = str(home)
        os.environ["MOE_HARNESS_TEST_HOME_SET"] = "1"
    yield Path(os.environ["MOE_HARNESS_HOME"])
