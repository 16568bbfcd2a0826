"""Run folders follow no links (issue 32): a run folder someone hands you may hold links named like
the files a run writes (report.md, results.jsonl, jobs/<key>.json ...) pointing at files elsewhere.
`harness run` and `harness report` replace such a link with their own file and never write through
it; a link in place of a folder they write into is refused in one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from fault_jobs import REPO
from harness import plan as planner
from harness.suite import load as load_suite

PRECIOUS = "someone else's file\n"


def _plant(link: Path, outside: Path) -> Path:
    """A link at ``link`` to a file of its own under ``outside``; returns that file."""
    target = outside / link.name.replace("/", "_")
    target.write_text(PRECIOUS)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return target


def _harness(*args, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MOE_HARNESS_HOME": str(home), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=env)


def test_harness_run_replaces_links_planted_in_its_run_folder_and_writes_through_none(tmp_path):
    """report.md, report.html, results.jsonl (and the old fixed temporary results.jsonl.tmp), suite.yaml,
    plan.json and the job's jobs/<key>.json are links to files outside: after a real `harness run`
    each is the run's own regular file and every file outside still says what it said."""
    suite = tmp_path / "links.yaml"
    suite.write_text("name: links\nmodels:\n  - name: m\n    config: {model_type: llama, hidden_size: 16, "
                     "intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2}\n")
    (key,) = [job.key for job in planner.expand(load_suite(suite))[1]]
    run, outside = tmp_path / "run", tmp_path / "outside"
    outside.mkdir()
    names = ["report.md", "report.html", "results.jsonl", "results.jsonl.tmp", "suite.yaml", "plan.json",
             f"jobs/{key}.json"]
    targets = {name: _plant(run / name, outside) for name in names}
    done = _harness("run", str(suite), "--out", str(run), "--threads", "1", home=tmp_path / "home")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert {name: t.read_text() for name, t in targets.items()} == dict.fromkeys(names, PRECIOUS)
    for name in names:
        if name != "results.jsonl.tmp":  # no longer a name the run writes
            assert not (run / name).is_symlink() and (run / name).is_file(), name
    assert (run / "suite.yaml").read_text() == suite.read_text()
    assert f'"key": "{key}"' in (run / "results.jsonl").read_text()


def test_harness_report_replaces_planted_links_and_refuses_a_linked_folder(tmp_path):
    """On a copy of a finished run, report.md and report.html planted as links are replaced (the files
    outside untouched), and lm_eval/ planted as a link to a folder outside ends the report in one line
    with nothing written in that folder."""
    run, outside, elsewhere = tmp_path / "run", tmp_path / "outside", tmp_path / "elsewhere"
    shutil.copytree(REPO / "tests" / "data" / "run_fixture", run)
    outside.mkdir()
    targets = {name: _plant(run / name, outside) for name in ("report.md", "report.html")}
    (elsewhere / "dense-s").mkdir(parents=True)
    (elsewhere / "dense-s" / "results.json").write_text(PRECIOUS)
    (run / "lm_eval").symlink_to(elsewhere)
    done = _harness("report", str(run), home=tmp_path / "home")
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"harness: cannot write {run / 'lm_eval'}: [Errno 40] a link, which a run never writes "
                           "through"), line
    assert [t.read_text() for t in targets.values()] == [PRECIOUS, PRECIOUS]
    assert all((run / name).is_file() and not (run / name).is_symlink() for name in targets)
    assert sorted(str(f.relative_to(elsewhere)) for f in elsewhere.rglob("*")) == ["dense-s", "dense-s/results.json"]
    assert (elsewhere / "dense-s" / "results.json").read_text() == PRECIOUS
