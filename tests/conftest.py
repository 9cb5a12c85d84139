"""Session fixtures shared across test folders."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline import copy_run, make_pipeline_copy, snakemake


@pytest.fixture(scope="session")
def tiny_template(tmp_path_factory) -> Path:
    """One whole pipeline run (tiny settings) by Snakemake, made once per test session.

    Never used directly: tests take their own copy (`tiny_copy`), so that what one
    changes no other sees.
    """
    root = make_pipeline_copy(tmp_path_factory.mktemp("tiny_template") / "run")
    snakemake(root, "--cores", "2")
    return root


@pytest.fixture(scope="module")
def tiny_copy(tiny_template, tmp_path_factory) -> Path:
    """A private copy of the finished tiny run for the tests of one module."""
    return copy_run(tiny_template, tmp_path_factory.mktemp("tiny_copy") / "run")
