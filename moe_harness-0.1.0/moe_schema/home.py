"""Where the harness keeps what it makes on a machine: built and trained checkpoints, corpora, the
shared result cache. Torch-free: both sides use it."""

from __future__ import annotations

import os
from pathlib import Path


def harness_home(home: str | Path | None = None) -> Path:
    """``home``, else ``$MOE_HARNESS_HOME``, else ``~/.cache/moe-harness``."""
    if home is not None:
        return Path(home)
    return Path(os.environ.get("MOE_HARNESS_HOME") or Path.home() / ".cache" / "moe-harness")
