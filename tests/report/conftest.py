"""One tiny pipeline run shared by the report tests that need real outputs (browser, audit, stage)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline import make_pipeline_copy, snakemake


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A whole pipeline run (tiny settings) by Snakemake in a throw-away copy, dvc.lock recorded.

    Tests that change a file of it restore it before they end.
    """
    root = make_pipeline_copy(tmp_path_factory.mktemp("report_run"))
    snakemake(root, "--cores", "2")
    return root
