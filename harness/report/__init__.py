"""Reports a researcher reads: report.md, report.html, lm-eval exports, `harness compare`, `harness check`.

Torch-free (matplotlib, numpy and PyYAML only), imported lazily so the CLI starts fast.
"""

from __future__ import annotations

from pathlib import Path


def write_report(run_dir: Path, prices: dict | None = None) -> dict:
    """Write report.md, report.html and lm_eval/<variant>/results.json into ``run_dir``, following
    no link planted there (``harness.store.write_atomic``).

    ``prices``: USD per device-hour overrides (``--price``; checked by moe_schema.devices.check_prices).
    Returns {"md": path, "html": path, "lm_eval": {variant: results.json path}}. Raises ReportError
    naming the file when the run folder cannot be read.
    """
    from harness.report.html import render_html
    from harness.report.lmeval_export import export_lm_eval
    from harness.report.markdown import render_markdown
    from harness.report.run import Run
    from harness.report.sections import build_sections
    from harness.store import write_atomic

    run = Run.load(run_dir)
    run.price_overrides = dict(prices or {})
    sections = build_sections(run, with_figures=True)
    md_path, html_path = run.path / "report.md", run.path / "report.html"
    write_atomic(md_path, render_markdown(run.name, sections))
    write_atomic(html_path, render_html(run.name, sections))
    return {"md": md_path, "html": html_path, "lm_eval": export_lm_eval(run)}


__all__ = ["write_report"]
