"""`dvc repro` alone runs the whole pipeline (no Snakemake), and afterwards
both tools agree that nothing is left to do."""
from __future__ import annotations

import re

import pytest

from echocem.dag import load_pipeline
from tests.pipeline import dry_run_stages, dvc, dvc_stale_stages, make_pipeline_copy

pytestmark = pytest.mark.slow


def test_dvc_repro_alone_runs_every_stage(tmp_path):
    root = make_pipeline_copy(tmp_path / "copy")
    stages = load_pipeline(root)

    proc = dvc(root, "repro")

    ran = set(re.findall(r"Running stage '([^']+)'", proc.stdout))
    assert ran == set(stages)
    for stage in stages.values():
        for out in stage.outs:
            assert (root / out).exists(), f"{stage.name}: {out}"
    assert dvc_stale_stages(root) == set()
    # DVC ran the stages in DAG order, so the file times agree with the DAG too
    assert dry_run_stages(root) == set()
