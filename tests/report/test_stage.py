"""The report stage run as `dvc repro` runs it: no Snakemake benchmark files, dvc.lock up to date."""
from __future__ import annotations

import json
import re
import shutil
import sys

import pytest

from tests.pipeline import run
from tests.report.helpers import read_page

pytestmark = pytest.mark.slow

CMD = ["stages/report.py", "--params", "params.yaml", "--out", "reports/index.html", "--summary", "reports/summary.md"]


@pytest.fixture()
def without_snakemake_logs(tiny_run, tmp_path):
    """A copy of the finished run (DVC's cache included) without logs/ (benchmarks included) and
    Snakemake's state."""
    def left_out(folder: str, names: list[str]) -> set[str]:
        # DVC's cache stays: without it DVC reports every cached output "not in cache"
        return {"logs", ".snakemake"} & set(names) if folder == str(tiny_run) else set()

    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy, ignore=left_out)
    return copy


def test_report_without_benchmarks_says_so_and_checks_every_hash(without_snakemake_logs):
    root = without_snakemake_logs
    proc = run([sys.executable, *CMD], root)
    assert "inputs missing" not in proc.stdout
    html = (root / "reports" / "index.html").read_text()
    page = read_page(html)
    assert "runtime-table" not in page.tables
    assert "No Snakemake benchmark files" in html
    assert "No Snakemake benchmark files" in (root / "reports" / "summary.md").read_text()
    # dvc.lock was recorded after the run: DVC's status, as the page reports it, finds
    # every dep and out of every stage as recorded
    assert re.search(r"All \d+ deps and outs of \d+ stages match dvc.lock", html), html
    assert "out of date when this report was built" not in html
    ladder = json.loads((root / "reports" / "metrics" / "ladder.json").read_text())
    assert len(page.tables["ladder-table"]["rows"]) == len(ladder["order"]) == 9  # every rung of the tiny run
