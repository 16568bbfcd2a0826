"""Open report.html in headless Chromium: every section renders, every figure loads, every anchor of
the table of contents resolves, nothing is cut off, and the claims report's first screen holds every verdict.

Installs Chromium from Debian's packages when missing (root and apt only; .ci/run installs it too);
skips, saying why, where it cannot. The smoke report's screenshot is kept in its run folder
(report.png) for a human look.
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


#: injected into a copy of the page (the product's page carries only its own image counter): checks what a
#: reader would see and writes the answers on <body> for --dump-dom to return
PROBE = """
<script>
window.addEventListener('load', function () {
  var b = document.body, vw = document.documentElement.clientWidth, vh = window.innerHeight;
  var links = document.querySelectorAll('nav a[href^="#"]'), bad = [];
  for (var i = 0; i < links.length; i++) {
    var id = decodeURIComponent(links[i].getAttribute('href').slice(1));
    if (!document.getElementById(id)) bad.push(id);
  }
  b.setAttribute('data-toc-total', links.length);
  b.setAttribute('data-toc-broken', bad.join(' '));
  var cut = [], tables = document.querySelectorAll('table');
  for (var t = 0; t < tables.length; t++) {
    var box = tables[t].parentElement, style = getComputedStyle(box);
    var r = box.getBoundingClientRect();
    var scrolls = style.overflowX === 'auto' || style.overflowX === 'scroll';
    if (r.right > vw + 1 || (tables[t].scrollWidth > box.clientWidth + 1 && !scrolls)) cut.push('table ' + t);
  }
  var imgs = document.images;
  for (var m = 0; m < imgs.length; m++) {
    if (imgs[m].getBoundingClientRect().right > vw + 1) cut.push('img ' + m);
  }
  if (document.documentElement.scrollWidth > vw + 1) cut.push('page ' + document.documentElement.scrollWidth);
  b.setAttribute('data-cut', cut.join(','));
  var wide = 0;
  for (var w = 0; w < tables.length; w++) { if (tables[w].scrollWidth > tables[w].parentElement.clientWidth + 1) wide++; }
  b.setAttribute('data-wide-tables', wide);
  var cells = document.querySelectorAll('td.verdict[data-claim]'), seen = [];
  for (var c = 0; c < cells.length; c++) {
    var q = cells[c].getBoundingClientRect();
    if (q.top >= 0 && q.bottom <= vh && q.right <= vw) seen.push(cells[c].getAttribute('data-claim'));
  }
  b.setAttribute('data-card-claims', cells.length);
  b.setAttribute('data-card-first-screen', seen.join(' '));
  var head = document.querySelector('[data-card-headline]');
  b.setAttribute('data-headline-first-screen', head && head.getBoundingClientRect().bottom <= vh ? head.textContent : '');
});
</script>
"""


def _probe_dom(chromium: str, html: Path, tmp_path: Path, size: str = "1400,900") -> dict:
    """The page opened in Chromium at ``size`` with PROBE injected: the attributes it wrote on <body>."""
    probed = html.with_name(html.stem + ".probe.html")
    probed.write_text(html.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    try:
        dom = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / ('profile-' + html.stem)}",
                              f"--window-size={size}", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()],
                             capture_output=True, text=True, timeout=120)
    finally:
        probed.unlink()
    assert dom.returncode == 0, dom.stderr[-500:]
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    return {**dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body)), "_dom": dom.stdout}


def test_report_renders_in_headless_chromium(chromium, report_fixture_run, tmp_path):
    html = report_fixture_run / "report.html"
    shot = report_fixture_run / "report.png"  # under the run folder, for a human to look at
    done = subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile1'}", f"--screenshot={shot}",
                           "--window-size=1400,4000", html.as_uri()], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.is_file(), done.stderr[-500:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    got = _probe_dom(chromium, html, tmp_path)
    dom = got["_dom"]
    # every image loads: params×3 tasks, accuracy vs decode cost, buckets, decode vs batch with twins and
    # rooflines, experts touched, 2 expert-load heatmaps, loss curves
    assert int(got["images-total"]) == 10 and got["images-decoded"] == got["images-total"], got
    # every table-of-contents anchor resolves
    assert int(got["toc-total"]) >= len(SECTIONS) and got["toc-broken"] == "", got["toc-broken"]
    # nothing is cut off: the page never scrolls sideways; wide tables scroll inside their box
    assert got["cut"] == "", got["cut"]
    assert int(got["wide-tables"]) >= 1  # at 1400 px some tables are wider than the page: they scroll
    # the smoke-shaped run's builds are untrained: its first screen says there is no verdict, and why
    assert got["headline-first-screen"] == "untrained builds: no claim can be judged", got
    assert got["card-claims"] == "0"
    for s in SECTIONS:
        assert re.search(rf'<section id="{s}" data-section="{s}" data-has-data="true">\s*<h2>', dom), s
    for alt in ("Decode throughput vs batch size", "Experts touched per decode step", "Accuracy vs measured decode cost"):
        assert re.search(rf'<img alt="{alt}[^"]*" src="data:image/png', dom), alt
    print(f"screenshot: {shot}")


def test_claims_report_first_screen_shows_every_verdict(chromium, tmp_path):
    """The claims-shaped report (tests/data/answers_fixture, figures left out: they come below) at 1400×900:
    the verdict of every claim the run speaks to is on the first screen."""
    from harness.report.html import render_html
    from harness.report.run import Run
    from harness.report.sections import build_sections

    run = Run.load(Path(__file__).resolve().parent / "data" / "answers_fixture")
    html = tmp_path / "claims.html"
    html.write_text(render_html(run.name, build_sections(run, with_figures=False)), encoding="utf-8")
    got = _probe_dom(chromium, html, tmp_path)
    assert got["card-claims"] == "4" and got["card-first-screen"] == "1 2 3 5", got
    assert got["toc-broken"] == "" and got["cut"] == "", got
    shot = tmp_path / "claims-first-screen.png"
    subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={shot}",
                    "--window-size=1400,900", html.as_uri()], capture_output=True, text=True, timeout=120)
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
