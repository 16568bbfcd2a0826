"""report.md: the sections' tables as GitHub-flavoured Markdown."""

from __future__ import annotations

import re

from harness.report.tables import Table


#: the verdict words of harness.report.answers' sentences, emphasised where they appear
VERDICT_WORDS = re.compile(r"\b(HOLDS|DOES NOT HOLD|INCONCLUSIVE AT THIS SIZE)\b")


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_md(table: Table, level: int = 3) -> str:
    lines = [f"{'#' * level} {table.title}", ""]
    if not table.rows:
        lines.append(f"_{table.empty}_")
    else:
        lines.append("| " + " | ".join(_cell(c) for c in table.columns) + " |")
        lines.append("|" + "|".join("---" for _ in table.columns) + "|")
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    for note in table.notes:
        lines += ["", f"{note}"]
    return "\n".join(lines) + "\n"


def render_markdown(run_name: str, sections) -> str:
    out = [f"# moe-harness report: {run_name}", ""]
    for s in sections:
        out += [f"## {s.title}", "", s.intro, ""]
        if not s.has_data:
            out += [f"_{s.empty}_", ""]
            continue
        if s.lines:
            out += ["- " + VERDICT_WORDS.sub(r"**\1**", line) for line in s.lines] + [""]
        for t in s.tables:
            if len(s.tables) == 1 and t.title == s.title:
                # the section heading already names the table
                body = table_md(t).split("\n", 2)[2]
                out.append(body)
            else:
                out.append(table_md(t))
        if s.figures:
            out += [f"({len(s.figures)} figure(s) in report.html)", ""]
    return "\n".join(out)
