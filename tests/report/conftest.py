"""The report tests that need real outputs (browser, audit, stage) share one copy of the tiny run."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def tiny_run(tiny_copy) -> Path:
    """A finished tiny pipeline run, dvc.lock recorded. Tests that change a file of it restore it."""
    return tiny_copy
