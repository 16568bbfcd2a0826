"""report.html: one self-contained page (inline CSS, figures as base64 PNG, no external URL).

The page reads fully without JavaScript; one tiny inline script only records, on load, how many
figures decoded (``data-images-decoded`` on <body>), which the browser test checks.
"""

from __future__ import annotations

from html import escape

from harness.report.markdown import CARD_COLUMNS, VERDICT_WORDS, card_rows
from harness.report.tables import Table

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2em auto; max-width: 1300px;
       padding: 0 1.5em; color: #222; line-height: 1.45; font-size: 15px; }
h1 { border-bottom: 3px solid #d95f02; padding-bottom: .3em; }
h2 { margin-top: 2.2em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: .8em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }
th { background: #f2f2f2; }
td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
table.kv td { text-align: left; white-space: normal; }
td.sig { color: #b30000; font-weight: 600; text-align: left; }
.scroll { overflow-x: auto; }
.empty { color: #777; font-style: italic; }
.note { color: #555; font-size: 13px; margin: .2em 0; }
figure { margin: 1em 0 2em; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 13px; }
ul.verdicts li { margin: .5em 0; }
table.card { font-size: 14px; width: 100%; }
table.card td, table.card th { white-space: normal; text-align: left; vertical-align: top; }
table.card td.verdict { font-weight: 600; }
.v-holds { color: #1a7f37; } .v-does-not-hold { color: #b30000; } .v-inconclusive { color: #9a6700; }
.v-mixed { color: #6e40c9; }
p.headline { font-size: 18px; font-weight: 600; color: #9a6700; }
details { margin: 1em 0; } summary { cursor: pointer; font-weight: 600; }
"""

SCRIPT = """
window.addEventListener('load', function () {
  var imgs = document.images, ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++; }
  document.body.setAttribute('data-images-total', imgs.length);
  document.body.setAttribute('data-images-decoded', ok);
});
"""


def table_html(table: Table, show_title: bool = True) -> str:
    out = [f"<h3>{escape(table.title)}</h3>"] if show_title else []
    if not table.rows:
        out.append(f'<p class="empty">{escape(table.empty)}</p>')
    else:
        sig_col = table.columns.index("sig.") if "sig." in table.columns else -1
        kv = ' class="kv"' if table.columns == ["item", "value"] else ""
        out.append(f'<div class="scroll"><table{kv}>')
        out.append("<tr>" + "".join(f"<th>{escape(c)}</th>" for c in table.columns) + "</tr>")
        for row in table.rows:
            cells = [f'<td class="sig">{escape(c)}</td>' if i == sig_col and c else f"<td>{escape(c)}</td>"
                     for i, c in enumerate(row)]
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table></div>")
    out += [f'<p class="note">{escape(n)}</p>' for n in table.notes]
    return "\n".join(out)


def _verdict_class(word: str) -> str:
    return "v-" + ("inconclusive" if word.startswith("inconclusive") else word.replace(" ", "-"))


def card_html(card) -> str:
    out = []
    if card.headline:
        out.append(f'<p class="headline" data-card-headline="1">{escape(card.headline)}</p>')
    if card.lines:
        out.append('<div class="scroll"><table class="card">')
        out.append("<tr>" + "".join(f"<th>{escape(c)}</th>" for c in CARD_COLUMNS) + "</tr>")
        for line, row in zip(card.lines, card_rows(card)):
            cells = [f"<td>{escape(c)}</td>" for c in row]
            cells[2] = (f'<td class="verdict {_verdict_class(line.verdict)}" data-claim="{escape(line.claim)}">'
                        f"{escape(line.verdict)}<br><small>{escape(line.tally)}</small></td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</table></div>")
    out += [f'<p class="note">{escape(n)}</p>' for n in card.notes]
    return "\n".join(out)


def render_html(run_name: str, sections) -> str:
    nav = " ".join(f'<a href="#{s.id}">{escape(s.title)}</a>' for s in sections)
    body = []
    for s in sections:
        body.append(f'<section id="{s.id}" data-section="{s.id}" data-has-data="{str(s.has_data).lower()}">')
        body.append(f"<h2>{escape(s.title)}</h2>")
        if s.card is not None:
            body.append(card_html(s.card))
        else:
            body.append(f"<p>{escape(s.intro)}</p>")
        if not s.has_data:
            body.append(f'<p class="empty">{escape(s.empty)}</p>')
        else:
            if s.collapse:
                n = sum(len(t.rows) for t in s.tables)
                body.append(f"<details><summary>Every comparison ({n}) and the numbers table</summary>")
                if s.details_intro:
                    body.append(f"<p>{escape(s.details_intro)}</p>")
            if s.lines:
                body.append('<ul class="verdicts">' + "".join(
                    "<li>" + VERDICT_WORDS.sub(r"<strong>\1</strong>", escape(line)) + "</li>" for line in s.lines) + "</ul>")
            for t in s.tables:
                body.append(table_html(t, show_title=not (len(s.tables) == 1 and t.title == s.title)))
            if s.collapse:
                body.append("</details>")
            for f in s.figures:
                body.append(f'<figure><img alt="{escape(f.title)}" src="data:image/png;base64,{f.png_base64}">'
                            f"<figcaption>{escape(f.title)}</figcaption></figure>")
        body.append("</section>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>moe-harness report: {escape(run_name)}</title><style>{CSS}</style>"
            f"<script>{SCRIPT}</script></head>\n<body>\n<h1>moe-harness report: {escape(run_name)}</h1>\n"
            f"<nav>{nav}</nav>\n" + "\n".join(body) + "\n</body></html>\n")
