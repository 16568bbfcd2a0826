"""The dagger on numbers from an unauthenticated worker (an ``--insecure`` daemon, a plain tcp one).

Such results never enter the shared cache (their records carry ``authenticated: false``), but the
run that asked for them reports them; every table row, verdict and card line that reads one is
marked ``†`` and the table or card says what the mark means. A variant is marked when any of its
results came from such a worker, and so is its model's mean over seeds (``<model>#s<seed>``).
"""

from __future__ import annotations

from harness.report.card import headline
from harness.report.run import Run
from harness.report.seeds import SEED_SUFFIX

DAGGER = "†"
LEGEND = f"{DAGGER} from an unauthenticated worker (--insecure): this variant's figures, in whole or in part"


def unauthenticated(run: Run) -> set[str]:
    """The variants (and the seed-stripped models) with an ok result from an unauthenticated worker."""
    names = {r["variant"] for r in run.ok() if r.get("authenticated") is False and r.get("variant")}
    return names | {SEED_SUFFIX.sub("", n) for n in names}


def mark(text: str) -> str:
    return f"{text} {DAGGER}"


def mark_tables(tables, names: set[str]) -> None:
    """Mark every cell naming one of ``names`` (the row's variant or model) and add the legend."""
    for table in tables:
        hit = False
        for row in table.rows:
            for i, cell in enumerate(row):
                if cell in names:
                    row[i], hit = mark(cell), True
        if hit and LEGEND not in table.notes:
            table.notes.append(LEGEND)


def mark_verdicts(card, table, verdicts: dict, names: set[str]) -> None:
    """The answer card's effect and the verdict table's advantage, where the comparison read one of ``names``."""
    if not names:
        return
    flat = [v for vs in verdicts.values() for v in vs]
    rows = table.rows if len(table.rows) == len(flat) else []
    column = table.columns.index("advantage (metric unit; + favours the claim)") if rows else 0
    for row, v in zip(rows, flat):
        if names & set(v.variants):
            row[column] = mark(row[column])
            if LEGEND not in table.notes:
                table.notes.append(LEGEND)
    for line in card.lines:
        if names & set(headline(verdicts[line.claim]).variants):
            line.effect = mark(line.effect)
            if LEGEND not in card.notes:
                card.notes.append(LEGEND)
