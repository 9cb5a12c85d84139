"""The report of a real (tiny) pipeline run, opened in headless Chromium.

Checks what a reader gets: the page loads on its own, the ladder table is there
with every rung, every image decodes, the style sheet applies. The browser's
screenshot is kept under the test's tmp folder; set ECHOCEM_SCREENSHOT=path to
keep a copy (how reports/report_screenshot.png is made: `make screenshot`, which
also sets ECHOCEM_REPORT=reports/index.html to check the report of a real run
instead of building a tiny one).
"""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from tests.report.browser import chromium, inspect_page, screenshot
from tests.report.helpers import PNG_SIGNATURE, image_bytes, read_page

pytestmark = [pytest.mark.slow, pytest.mark.browser]

SECTIONS = ["data", "ladder", "curves", "overlays", "confusion", "generative", "gen_patches", "transport", "runtime",
            "provenance"]


@pytest.fixture(scope="module")
def report_page(request) -> Path:
    """reports/index.html of the tiny run, or the report named by ECHOCEM_REPORT."""
    given = os.environ.get("ECHOCEM_REPORT")
    if given:
        page = Path(given).resolve()
        assert page.is_file(), f"ECHOCEM_REPORT={given}: no such file"
        return page
    return request.getfixturevalue("tiny_run") / "reports" / "index.html"


def test_report_loads_in_chromium_with_the_ladder_and_every_image(report_page, tmp_path):
    browser = chromium()
    seen = inspect_page(browser, report_page, tmp_path)
    expected = read_page(report_page.read_text())
    assert seen["sections"][-len(SECTIONS):] == SECTIONS
    assert seen["ladder_rows"] == len(expected.tables["ladder-table"]["rows"]) >= 6
    assert seen["ladder_height"] > 0, "the ladder table is laid out"
    assert seen["images"] == len(expected.images) >= 10
    assert seen["broken"] == [], f"images the browser could not draw: {seen['broken']}"
    assert seen["header_color"] == "rgb(47, 95, 143)", "the inlined style sheet applies"

    shot = screenshot(browser, report_page, tmp_path / "report_screenshot.png", tmp_path)
    assert shot.read_bytes().startswith(PNG_SIGNATURE)
    keep = os.environ.get("ECHOCEM_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


def test_report_embeds_every_figure_it_shows_in_full(report_page):
    """Self-contained: nothing is fetched from beside the page or from the network.

    A browser draws a cut-off PNG as far as it goes (and reports it loaded), so
    every image is also decoded to its last row here.
    """
    page = read_page(report_page.read_text())
    for img in page.images:
        png = image_bytes(img["src"])
        with Image.open(io.BytesIO(png)) as decoded:
            decoded.load()
            assert decoded.format == "PNG" and decoded.size == (int(img["width"]), int(img["height"])), img["alt"]
    text = report_page.read_text()
    assert "<link" not in text and "src=\"http" not in text and "url(" not in text
