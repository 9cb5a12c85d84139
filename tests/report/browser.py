"""Headless Chromium for the report tests: what a browser makes of a page, and a screenshot of it.

Debian's chromium package (installed by scripts/install_system_deps.sh). Where it is
missing the browser tests are skipped with the reason, except in CI (env CI set),
where a missing browser is a failure: the report must be checked there.
"""
from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser")
TIMEOUT_S = 120
CHECK_ID = "browser-check"

# Runs in the page once everything (every data: image included) has loaded, and
# writes what the browser saw into the DOM, which --dump-dom then prints.
CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var ladder = document.getElementById("ladder-table");
  var result = {
    images: images.length,
    broken: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                  .map(function (i) { return i.alt || i.src.slice(0, 40); }),
    ladder_rows: ladder ? ladder.tBodies[0].rows.length : -1,
    ladder_height: ladder ? ladder.getBoundingClientRect().height : 0,
    header_color: getComputedStyle(document.querySelector("header")).backgroundColor,
    sections: Array.prototype.map.call(document.querySelectorAll("main > section"), function (s) { return s.id; })
  };
  var out = document.createElement("pre");
  out.id = "%s";
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>""" % CHECK_ID


def chromium() -> str:
    """Path of the browser; skip the test without it, fail it in CI."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    message = ("chromium not found on PATH: the report's browser test needs Debian's chromium package "
               "(`bash scripts/install_system_deps.sh` as root installs it)")
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(message + "; in CI it must run")
    pytest.skip(message)


def _run(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [browser, "--headless", "--disable-gpu", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars",
           "--no-first-run", "--no-default-browser-check", "--mute-audio", f"--user-data-dir={profile}", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    if proc.returncode != 0:
        raise AssertionError(f"chromium failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return proc


def inspect_page(browser: str, page: Path, workdir: Path) -> dict:
    """Load a copy of `page` (with the check script added) and return what the browser reported."""
    source = page.read_text()
    assert "</body>" in source, f"{page}: no </body>"
    checked = workdir / "checked.html"
    checked.write_text(source.replace("</body>", CHECK_SCRIPT + "\n</body>", 1))
    proc = _run(browser, workdir / "profile", "--virtual-time-budget=10000", "--dump-dom", checked.as_uri())
    found = re.search(rf'<pre id="{CHECK_ID}">(.*?)</pre>', proc.stdout, flags=re.S)
    assert found, f"the page's load event never ran the check (dump: {proc.stdout[:300]!r})"
    return json.loads(html.unescape(found.group(1)))


def screenshot(browser: str, page: Path, png: Path, workdir: Path, size: tuple[int, int] = (1200, 3000)) -> Path:
    """The browser's picture of the top of `page` (size: window width, height in pixels)."""
    png.parent.mkdir(parents=True, exist_ok=True)
    _run(browser, workdir / "profile", f"--window-size={size[0]},{size[1]}", f"--screenshot={png}", page.as_uri())
    assert png.is_file() and png.stat().st_size > 0, f"chromium wrote no screenshot at {png}"
    return png
