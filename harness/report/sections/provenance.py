"""Provenance: what made these numbers (versions, seeds, devices, git sha)."""

from __future__ import annotations

from harness.report.provenance import provenance_table
from harness.report.section import Context, Section


def provenance_section(ctx: Context) -> Section:
    return Section("provenance", "Provenance", "What made these numbers.", [provenance_table(ctx.run)], [], "")
