"""dvc push, then dvc pull into a fresh clone, restores every output byte for byte."""
from __future__ import annotations

import pytest

from echocem.dag import load_pipeline
from tests.pipeline import dry_run_stages, dvc, dvc_stale_stages, git, make_pipeline_copy, run, snakemake
from tests.slurm.test_slurm_pipeline import output_hashes

pytestmark = pytest.mark.slow


def test_push_then_pull_into_a_fresh_clone_restores_all_outputs(tmp_path):
    origin = make_pipeline_copy(tmp_path / "origin")
    remote = tmp_path / "remote"
    snakemake(origin, "--cores", "2")
    dvc(origin, "remote", "add", "--local", "-f", "-d", "shared", str(remote))
    dvc(origin, "push")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "pipeline run")

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    assert not (clone / "models").exists()
    dvc(clone, "remote", "add", "--local", "-f", "-d", "shared", str(remote))
    dvc(clone, "pull")

    assert output_hashes(clone) == output_hashes(origin)
    for stage in load_pipeline(clone).values():
        for out in stage.outs:
            assert (clone / out).exists(), out
    assert dvc_stale_stages(clone) == set()
    # Snakemake judges by mtimes; pulled files are all new, so nothing is older than its inputs
    # except by the order DVC wrote them. `--touch` aligns them without running anything.
    snakemake(clone, "--cores", "1", "--touch")
    assert dry_run_stages(clone) == set()
