"""report.md: the answer card first, then the sections' tables as GitHub-flavoured Markdown."""

from __future__ import annotations

import re

from harness.report.tables import Table


#: the verdict words of harness.report.answers' sentences, emphasised where they appear
VERDICT_WORDS = re.compile(r"\b(HOLDS|DOES NOT HOLD|INCONCLUSIVE AT THIS SIZE)\b")
CARD_COLUMNS = ["#", "claim (quoted from docs/claims.md)", "verdict (Holm-adjusted)",
                "headline effect [adjusted CI] (units)", "regime"]


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


def card_rows(card) -> list[list[str]]:
    """The card's lines as table cells (shared with HTML)."""
    return [[c.claim, f"“{c.quote}”", f"{c.verdict} ({c.tally})", c.effect, f"{c.regime} ({c.regime_id})"]
            for c in card.lines]


def card_md(card) -> list[str]:
    out = []
    if card.headline:
        out += [f"**{card.headline}.**", ""]
    if card.lines:
        out.append("| " + " | ".join(CARD_COLUMNS) + " |")
        out.append("|" + "|".join("---" for _ in CARD_COLUMNS) + "|")
        for row in card_rows(card):
            row[2] = f"**{row[2].split(' (', 1)[0]}** ({row[2].split(' (', 1)[1]}" if " (" in row[2] else row[2]
            out.append("| " + " | ".join(_cell(c) for c in row) + " |")
        out.append("")
    out += [n + "\n" for n in card.notes]
    return out


def render_markdown(run_name: str, sections) -> str:
    out = [f"# moe-harness report: {run_name}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        if s.card is not None:
            out += card_md(s.card)
            out += ["### Every comparison", ""] + ([s.details_intro, ""] if s.details_intro else [])
        else:
            out += [s.intro, ""]
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
