"""Open report.html in headless Chromium: every section renders and every figure decodes.

Installs Chromium from Debian's packages when missing (root and apt only); skips, saying why,
where it cannot. The screenshot is kept under the test's tmp dir for a human look.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SECTIONS = ["variants", "pairs-active", "pairs-total", "long-tail", "probes", "routing", "training", "provenance"]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be installed here (needs root and apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if done.returncode != 0:
            pytest.skip(f"chromium could not be installed: {' '.join(cmd)} failed: {done.stderr.strip()[-300:]}")
    if not shutil.which("chromium"):
        pytest.skip("apt-get installed chromium but no chromium binary is on PATH")
    return shutil.which("chromium")


@pytest.fixture(scope="module")
def chromium():
    return _chromium()


def test_report_renders_in_headless_chromium(chromium, report_fixture_run, tmp_path):
    url = (report_fixture_run / "report.html").as_uri()
    shot = tmp_path / "report.png"
    base = [chromium, *FLAGS]
    done = subprocess.run(base + [f"--user-data-dir={tmp_path / 'profile1'}", f"--screenshot={shot}",
                                  "--window-size=1400,4000", url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-500:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    dom = subprocess.run(base + [f"--user-data-dir={tmp_path / 'profile2'}", "--virtual-time-budget=5000",
                                 "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-500:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    total = int(re.search(r'data-images-total="(\d+)"', body).group(1))
    decoded = int(re.search(r'data-images-decoded="(\d+)"', body).group(1))
    # params×3 tasks, accuracy vs decode cost, buckets, decode vs batch with twins and rooflines, experts
    # touched, 2 expert-load heatmaps, loss curves
    assert total == 10 and decoded == total, body
    for s in SECTIONS:
        assert re.search(rf'<section id="{s}" data-section="{s}" data-has-data="true">\s*<h2>', dom.stdout), s
    for alt in ("Decode throughput vs batch size", "Experts touched per decode step", "Accuracy vs measured decode cost"):
        assert re.search(rf'<img alt="{alt}[^"]*" src="data:image/png', dom.stdout), alt
    print(f"screenshot: {shot}")


def test_seeded_longtail_report_renders(chromium, tmp_path):
    """The seeded knowledge-corpus run: bucket plot with seed error bars and seeded loss curves decode."""
    from harness.report import write_report

    run = tmp_path / "fixture-longtail"
    shutil.copytree(Path(__file__).resolve().parent / "data" / "longtail_fixture", run)
    write_report(run)
    dom = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
                          "--dump-dom", (run / "report.html").as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-500:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    total = int(re.search(r'data-images-total="(\d+)"', body).group(1))
    decoded = int(re.search(r'data-images-decoded="(\d+)"', body).group(1))
    # quality vs params, buckets, 2 heatmaps (one per MoE seed), loss curves
    assert total == 5 and decoded == total, body
    for s in ("long-tail", "training", "routing"):
        assert f'data-section="{s}" data-has-data="true"' in dom.stdout, s
    assert 'data-section="probes" data-has-data="false"' in dom.stdout
