"""The claims live in the project: docs/claims.md is the packaged harness/report/claims.md, the report
quotes it from the installed package, and no tracked file names a path outside the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: what a path outside the repository looks like: the sibling folder of shared notes, its claims file, absolute
#: home folders (assembled here so this file does not match itself)
OUTSIDE = ["../" + "shared", "shared/" + "CLAIMS", "steer" + "ing", "/" + "work/", "/" + "root", "/" + "home/"]


def test_docs_claims_is_the_packaged_file():
    assert (REPO / "docs" / "claims.md").read_bytes() == (REPO / "harness" / "report" / "claims.md").read_bytes(), \
        "docs/claims.md and harness/report/claims.md differ: copy one over the other"


def test_the_report_quotes_claims_from_the_package():
    from harness.report.claims import claims

    found = claims()
    assert list(found) == [str(i) for i in range(1, 10)]
    assert found["2"].startswith("With the same total parameters")
    text = (REPO / "docs" / "claims.md").read_text()
    assert all(f"| {n} | {c} |" in text for n, c in found.items())


def test_no_tracked_file_names_a_path_outside_the_repository():
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout: no tracked files to read")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    hits = []
    for name in filter(None, files):
        path = REPO / name.decode()
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        for i, line in enumerate(text.splitlines(), 1):
            for pattern in OUTSIDE:
                if pattern in line:
                    hits.append(f"{name.decode()}:{i}: {pattern!r}: {line.strip()[:120]}")
    assert not hits, "\n".join(hits)


def test_a_built_wheel_carries_claims_md(tmp_path):
    """pip install of a wheel (not -e) still finds the claims: they are package data."""
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip(f"cannot build a wheel here: {done.stderr.strip()[-200:]}")
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "harness/report/claims.md" in names, [n for n in names if n.startswith("harness/report/")]
    assert re.search(r"\| 5 \| The router", zipfile.ZipFile(wheel).read("harness/report/claims.md").decode())
