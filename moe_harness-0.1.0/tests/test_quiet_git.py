"""Workers outside a git checkout log no `fatal: not a git repository` (workers/evaluation/quiet_git.py)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed: it cannot complain")


def test_lm_eval_git_look_up_is_quiet_outside_a_repository(tmp_path, monkeypatch, capfd):
    import lm_eval.evaluator

    from workers.evaluation import quiet_git

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # tmp_path is in no checkout
    from lm_eval.loggers.utils import get_git_commit_hash as lm_evals_own  # whatever an earlier test installed

    monkeypatch.setattr(lm_eval.evaluator, "get_git_commit_hash", lm_evals_own)
    lm_eval.evaluator.get_git_commit_hash()
    assert "not a git repository" in capfd.readouterr().err  # what a daemon logged once per evaluation
    quiet_git.install()
    assert lm_eval.evaluator.get_git_commit_hash() is None
    assert capfd.readouterr().err == ""


def test_inside_a_repository_the_value_is_unchanged(tmp_path, monkeypatch):
    from workers.evaluation import quiet_git

    monkeypatch.chdir(tmp_path)
    for cmd in (["init", "-q"], ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "x"]):
        subprocess.run(["git", *cmd], check=True)
    head = subprocess.run(["git", "describe", "--always"], capture_output=True, text=True).stdout.strip()
    assert quiet_git.git_commit_hash() == head
