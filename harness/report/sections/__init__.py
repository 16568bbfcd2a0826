"""The report's sections in reading order: tables plus (for HTML) figures, or one line saying why empty.

One module per section, named by what it reports on (``sections/<subject>.py``): its builder, which
takes the shared ``Context`` (``harness.report.section``) and returns a ``Section``, and the figures it
draws (with the primitives of ``harness.report.figure``). The tables and numbers come from the subject
modules below (``probes``, ``capacity``, ``answers``, ...); nothing below imports a section module.
"""

from __future__ import annotations

from harness.report.run import Run
from harness.report.section import Context, Section
from harness.report.sections.answer import answer_section
from harness.report.sections.parity import parity_section
from harness.report.sections.variants import variants_section
from harness.report.sections.cost import cost_section
from harness.report.sections.seeds import seeds_section
from harness.report.sections.pairs import pairs_sections
from harness.report.sections.efficiency import efficiency_section
from harness.report.sections.sweeps import sweeps_section
from harness.report.sections.longtail import longtail_section
from harness.report.sections.capacity import capacity_section
from harness.report.sections.probes import probes_section
from harness.report.sections.quant import quant_section
from harness.report.sections.routing import routing_section
from harness.report.sections.training import training_section
from harness.report.sections.provenance import provenance_section
from harness.report.trust import mark_tables, unauthenticated


#: the report's sections in reading order: each entry takes the Context and returns a Section or a list of
#: them. A new section is one module here (its builder, tables and figures) and one entry.
SECTION_BUILDERS = [answer_section, parity_section, variants_section, cost_section, seeds_section, pairs_sections,
                    efficiency_section, sweeps_section, longtail_section, capacity_section, probes_section,
                    quant_section, routing_section, training_section, provenance_section]


def build_sections(run: Run, with_figures: bool = True, builders=None) -> list[Section]:
    ctx = Context(run, with_figures)
    sections: list[Section] = []
    for builder in SECTION_BUILDERS if builders is None else builders:
        made = builder(ctx)
        sections += made if isinstance(made, list) else [made]
    mark_tables([t for s in sections for t in s.tables], unauthenticated(run))  # † on --insecure results
    for s in sections:
        if not s.empty and s.tables:
            s.empty = s.tables[0].empty
        if len(s.tables) > 1 and s.has_data:  # a section with data shows only its tables that have some
            s.tables = [t for t in s.tables if t.rows or t.notes]
    return sections
