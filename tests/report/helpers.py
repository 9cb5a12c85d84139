"""Small readers of rendered reports shared by the report tests: tables and images of a page."""
from __future__ import annotations

import base64
from html.parser import HTMLParser

from echocem.report.html import PNG_SIGNATURE

__all__ = ["PNG_SIGNATURE", "PageReader", "image_bytes", "read_page"]


class PageReader(HTMLParser):
    """Collects every table (by id: header and rows of cell texts) and every <img> of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, dict] = {}
        self.images: list[dict[str, str]] = []
        self.text: list[str] = []
        self._table: dict | None = None
        self._row: list[str] | None = None
        self._row_class: str | None = None
        self._cell: list[str] | None = None
        self._header_row = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = {"header": [], "rows": [], "best": []}
            self.tables[a.get("id") or f"table-{len(self.tables)}"] = self._table
        elif tag == "tr" and self._table is not None:
            self._row, self._row_class = [], a.get("class")
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            self._header_row = tag == "th"
        elif tag == "img":
            self.images.append({k: v or "" for k, v in a.items()})

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._header_row:
                self._table["header"] = self._row
            else:
                self._table["rows"].append(self._row)
                if self._row_class == "best":
                    self._table["best"].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def read_page(html: str) -> PageReader:
    reader = PageReader()
    reader.feed(html)
    reader.close()
    return reader


def image_bytes(src: str) -> bytes:
    """The bytes of a data: URI image; AssertionError for anything else (a link out of the page)."""
    prefix = "data:image/png;base64,"
    assert src.startswith(prefix), f"image not embedded: {src[:60]}"
    return base64.b64decode(src[len(prefix):], validate=True)
