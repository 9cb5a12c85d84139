"""A short Markdown summary of the report (pure: sections in, text out).

Meant to be read in a terminal, a pull request or a git forge: the headline
numbers, the segmentation ladder, the stage run times and the code version,
picked from the same sections as the HTML page so both always say the same.
No images: the summary points to index.html for those.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

from echocem.report.document import Section, Table, Text

# (section id, table id) of what the summary shows, in this order
SUMMARY_TABLES = (("ladder", "ladder-table"), ("runtime", "runtime-table"), ("provenance", "code-version"))
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_EMPTY = ("", "–", "-")


def cell(value: object) -> str:
    """A table cell on one line, its pipes escaped so they do not split the row."""
    text = "" if value is None else str(value)
    return " ".join(text.split()).replace("|", r"\|")


def markdown_table(table: Table) -> list[str]:
    """A GitHub-flavoured table; columns of numbers right-aligned, highlighted rows in bold."""
    ncols = len(table.header)
    rows = [[cell(v) for v in row] + [""] * (ncols - len(row)) for row in table.rows]

    def numeric(col: int) -> bool:
        values = [r[col] for r in rows if r[col] not in _EMPTY]
        return bool(values) and all(_NUMBER.match(v) for v in values)

    header = [cell(h) or " " for h in table.header]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---:" if numeric(c) else "---" for c in range(ncols)) + "|"]
    for k, row in enumerate(rows):
        if k in table.highlight:
            row = [f"**{v}**" if v else v for v in row]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def _find(sections: Sequence[Section], section_id: str) -> Section | None:
    return next((s for s in sections if s.id == section_id), None)


def _table(section: Section, table_id: str) -> Table | None:
    return next((b for b in section.blocks if isinstance(b, Table) and b.id == table_id), None)


def render_markdown(
    sections: Sequence[Section],
    headline: Iterable[tuple[str, str]] = (),
    title: str = "EchoCem pipeline report: summary",
    full_report: str = "index.html",
    footer: str = "",
) -> str:
    lines = [f"# {title}", "", f"The full report, with every figure and the provenance of each file: "
             f"[{full_report}]({full_report}).", ""]
    lines += [f"- **{cell(k)}**: {cell(v)}" for k, v in headline]
    missing = _find(sections, "missing")
    if missing is not None:
        table = next((b for b in missing.blocks if isinstance(b, Table)), None)
        count = len(table.rows) if table else 0
        lines += ["", f"> Partial run: {count} input(s) missing, listed in the full report."]
    for section_id, table_id in SUMMARY_TABLES:
        section = _find(sections, section_id)
        if section is None:
            continue
        table = _table(section, table_id)
        lines += ["", f"## {section.title if table_id != 'code-version' else 'Code version'}", ""]
        if table is None:
            notes = [b.text for b in section.blocks if isinstance(b, Text) and b.kind == "note"]
            lines.append(notes[0] if notes else "Not available.")
            continue
        if table.caption and table_id != "code-version":
            lines += [f"*{cell(table.caption)}*", ""]
        lines += markdown_table(table)
    if footer:
        lines += ["", footer]
    return "\n".join(lines) + "\n"
