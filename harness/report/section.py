"""What one section of the report is (``Section``) and what the section builders share (``Context``).

Below every section module (``harness.report.sections``): a section module imports this, never the reverse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.report.parity import parity_rows
from harness.report.run import Run
from harness.report.sweeps import sweep_series
from harness.report.verdicts import all_verdicts


@dataclass
class Section:
    id: str
    title: str
    intro: str
    tables: list = field(default_factory=list)
    figures: list = field(default_factory=list)
    empty: str = ""
    lines: list = field(default_factory=list)  # sentences shown before the tables (the verdicts)
    card: object = None      # the answer card (harness.report.card.Card), shown first and never collapsed
    collapse: bool = False   # HTML: the lines and tables inside <details> (the card stays open)
    details_intro: str = ""  # one line opening the collapsed part

    @property
    def has_data(self) -> bool:
        return (self.card is not None or bool(self.lines) or bool(self.figures)
                or any(t.rows or t.notes for t in self.tables))


@dataclass
class Context:
    """What the section builders share: the run, its verdicts, sweep series and engine parity (each
    used by more than one table, figure or sentence), and whether to draw figures."""

    run: Run
    with_figures: bool = True
    _memo: dict = field(default_factory=dict, repr=False)

    def fig(self, f) -> list:
        return f(self.run) if self.with_figures else []

    @property
    def verdicts(self) -> dict:
        if "verdicts" not in self._memo:
            self._memo["verdicts"] = all_verdicts(self.run)
        return self._memo["verdicts"]

    @property
    def parity(self) -> list:
        """One build on two engines, per task (``parity.parity_rows``): read by the card and its section."""
        if "parity" not in self._memo:
            self._memo["parity"] = parity_rows(self.run)
        return self._memo["parity"]

    @property
    def series(self) -> list:
        if "series" not in self._memo:
            self._memo["series"] = sweep_series(self.run)
        return self._memo["series"]
