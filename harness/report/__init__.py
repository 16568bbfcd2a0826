"""Reports a researcher reads: report.md, report.html, lm-eval exports, `harness compare`, `harness check`.

Torch-free (matplotlib, numpy and PyYAML only), imported lazily so the CLI starts fast.
"""

from __future__ import annotations

from pathlib import Path


def write_report(run_dir: Path, prices: dict | None = None) -> dict:
    """Write report.md, report.html and lm_eval/<variant>/results.json into ``run_dir``.

    ``prices``: USD per device-hour overrides (``--price``; checked by moe_schema.devices.check_prices).
    Returns {"md": path, "html": path, "lm_eval": {variant: results.json path}}. Raises ReportError
    naming the file when the run folder cannot be read.
    """
    from harness.report.html import render_html
    from harness.report.lmeval_export import export_lm_eval
    from harness.report.markdown import render_markdown
    from harness.report.run import Run
    from harness.report.sections import build_sections

    run = Run.load(run_dir)
    run.price_overrides = dict(prices or {})
    sections = build_sections(run, with_figures=True)
    md_path, html_path = run.path / "report.md", run.path / "report.html"
    md_path.write_text(render_markdown(run.name, sections), encoding="utf-8")
    html_path.write_text(render_html(run.name, sections), encoding="utf-8")
    return {"md": md_path, "html": html_path, "lm_eval": export_lm_eval(run)}


__all__ = ["write_report"]
