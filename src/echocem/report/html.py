"""The report's sections laid out as one self-contained HTML page (pure: sections in, text out).

Self-contained means one file that can be mailed or archived: the style sheet
is inlined and every figure is a base64 `data:` URI, so nothing breaks when the
page is moved away from reports/. Every text that comes from data (metric keys,
paths, params values) is escaped.
"""
from __future__ import annotations

import base64
import re
import struct
from html import escape
from importlib import resources
from typing import Iterable, Sequence

from echocem.io import EchoCemError
from echocem.report.document import Block, Details, Figure, Section, Table, Text

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_HASH = re.compile(r"^[0-9a-f]{12,}(\.dir)?$")


def stylesheet() -> str:
    """The packaged style sheet (templates/style.css)."""
    return resources.files("echocem.report").joinpath("templates/style.css").read_text()


def png_size(png: bytes, where: str) -> tuple[int, int]:
    """(width, height) from the PNG header; EchoCemError naming the figure if it is not a PNG."""
    if len(png) < 24 or not png.startswith(PNG_SIGNATURE) or png[12:16] != b"IHDR":
        raise EchoCemError(f"{where}: not a PNG image")
    return struct.unpack(">II", png[16:24])


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _attr(name: str, value: str | None) -> str:
    return "" if value is None else f' {name}="{escape(value, quote=True)}"'


def _cell_class(header: str, value: str) -> str | None:
    """Numbers right-aligned, hashes in monospace, a hash state coloured by its value."""
    if header == "state":
        return f"state-{value.replace(' ', '-')}"
    if _NUMBER.match(value):
        return "num"
    if _HASH.match(value):
        return "hash"
    return None


def render_table(table: Table) -> str:
    header = [str(h) for h in table.header]
    lines = [f'<div class="table-wrap"><table{_attr("id", table.id)}>']
    if table.caption:
        lines.append(f"<caption>{escape(table.caption)}</caption>")
    if any(header):
        lines.append("<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr></thead>")
    lines.append("<tbody>")
    for k, row in enumerate(table.rows):
        cells = []
        for col, value in enumerate(row):
            text = "" if value is None else str(value)
            cls = _cell_class(header[col] if col < len(header) else "", text)
            cells.append(f"<td{_attr('class', cls)}>{escape(text)}</td>")
        lines.append(f"<tr{_attr('class', 'best' if k in table.highlight else None)}>{''.join(cells)}</tr>")
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def render_figure(figure: Figure) -> str:
    where = figure.caption or figure.title
    width, height = png_size(figure.png, f"figure {where!r}")
    caption = escape(figure.title) + (f" <code>{escape(figure.caption)}</code>" if figure.caption else "")
    return (f'<figure><img src="{data_uri(figure.png)}" alt="{escape(figure.title, quote=True)}" '
            f'width="{width}" height="{height}"><figcaption>{caption}</figcaption></figure>')


def render_text(text: Text) -> str:
    body = escape(text.text)
    if text.kind == "h3":
        return f"<h3>{body}</h3>"
    if text.kind == "note":
        return f'<p class="note">{body}</p>'
    if text.kind == "code":
        return f'<pre class="code">{body}</pre>'
    return f"<p>{body}</p>"


def render_block(block: Block) -> str:
    if isinstance(block, Table):
        return render_table(block)
    if isinstance(block, Figure):
        return render_figure(block)
    if isinstance(block, Text):
        return render_text(block)
    if isinstance(block, Details):
        inner = "\n".join(render_block(b) for b in block.blocks)
        return f"<details><summary>{escape(block.summary)}</summary>\n{inner}\n</details>"
    raise TypeError(f"cannot render a {type(block).__name__} block")


def render_section(section: Section) -> str:
    body = "\n".join(render_block(b) for b in section.blocks)
    return f'<section id="{escape(section.id, quote=True)}">\n<h2>{escape(section.title)}</h2>\n{body}\n</section>'


def render_html(
    sections: Sequence[Section],
    headline: Iterable[tuple[str, str]] = (),
    title: str = "EchoCem pipeline report",
    footer: str = "",
    css: str | None = None,
) -> str:
    """The whole page: header with the headline numbers, a section index, the sections, a footer."""
    css = stylesheet() if css is None else css
    heads = " ".join(f"<li><b>{escape(k)}</b>{escape(v)}</li>" for k, v in headline)
    # separated by spaces: the only places a long index may wrap
    nav = " ".join(f'<a href="#{escape(s.id, quote=True)}">{escape(s.title)}</a>' for s in sections)
    body = "\n".join(render_section(s) for s in sections)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title>",
        f"<style>\n{css}\n</style>",
        "</head>",
        "<body>",
        f'<header><h1>{escape(title)}</h1><ul class="headline">{heads}</ul></header>',
        f"<nav>{nav}</nav>",
        f"<main>\n{body}\n</main>",
        f"<footer>{escape(footer)}</footer>" if footer else "",
        "</body>",
        "</html>",
        "",
    ])
