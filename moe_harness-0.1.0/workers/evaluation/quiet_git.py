"""lm-eval's provenance without git's complaints in the daemon's log.

``lm_eval.simple_evaluate`` records ``git describe --always`` of the working directory and lets git
write to the daemon's stderr; a daemon started outside a checkout (a Slurm job in a scratch folder,
an installed package) logs ``fatal: not a git repository`` once per evaluation. ``install()`` swaps
in the same look-up with git's stderr discarded: same value where there is a checkout, None (as
lm-eval's own fallback gives) where there is not. The harness records its own provenance anyway.
"""

from __future__ import annotations

import os
import subprocess


def git_commit_hash() -> str | None:
    from lm_eval.loggers.utils import get_commit_from_path

    try:
        done = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True, timeout=10)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return get_commit_from_path(os.getcwd())


def install() -> None:
    """Point lm-eval's evaluator at :func:`git_commit_hash` (idempotent)."""
    import lm_eval.evaluator

    lm_eval.evaluator.get_git_commit_hash = git_commit_hash
