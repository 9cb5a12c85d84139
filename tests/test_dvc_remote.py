"""Sharing a run through the DVC remote: `dvc push`, then `dvc pull` in a fresh clone.

The pulled clone must hold every output byte for byte, DVC must see it up to
date, and Snakemake must have nothing to do there (after scripts/dvc_pull.sh
aligned the file times Snakemake compares; see docs/cluster.md).
"""
from __future__ import annotations

import subprocess

import pytest

from echocem.dag import load_pipeline
from tests.pipeline import REPO, dry_run_stages, dvc, dvc_stale_stages, git, make_pipeline_copy, run, snakemake
from tests.slurm.snapshot import output_files, output_hashes

pytestmark = pytest.mark.slow

REMOTE = "shared"  # the default remote named in .dvc/config
PULL = REPO / "scripts" / "dvc_pull.sh"


def clone(origin, dest):
    run(["git", "clone", "-q", str(origin), str(dest)], origin.parent)
    return dest


def git_is_clean(root) -> bool:
    return git(root, "status", "--porcelain").stdout.strip() == ""


def test_push_then_pull_into_a_fresh_clone_restores_every_output(tmp_path):
    origin = make_pipeline_copy(tmp_path / "origin")
    snakemake(origin, "--cores", "2")
    store = tmp_path / "store"
    dvc(origin, "remote", "modify", "--local", REMOTE, "url", str(store))
    dvc(origin, "push")
    # what git shares: dvc.lock and the small uncached results (metrics, plots, manifest)
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "tiny pipeline run")

    copy = clone(origin, tmp_path / "elsewhere" / "clone")
    cached = [f for f in output_files(origin) if not (copy / f.relative_to(origin)).exists()]
    assert cached, "the clone lacks the DVC-cached outputs before the pull"
    dvc(copy, "remote", "modify", "--local", REMOTE, "url", str(store))
    run(["bash", str(PULL)], copy)

    expected = output_hashes(origin, exclude=frozenset())  # same bytes, report included
    assert output_hashes(copy, exclude=frozenset()) == expected
    assert "missing" not in expected.values()
    assert dvc_stale_stages(copy) == set()
    assert dry_run_stages(copy) == set()
    assert git_is_clean(copy), "pulling changed no tracked file (dvc.lock included)"
    assert set(load_pipeline(copy)) == set(load_pipeline(origin))


def test_default_remote_is_shared_by_checkouts_in_the_same_folder(tmp_path):
    """.dvc/config's relative url: a checkout and its sibling clone reach the same store."""
    origin = make_pipeline_copy(tmp_path / "origin")
    data = origin / "shared_data"
    data.mkdir()
    (data / "a.bin").write_bytes(bytes(range(256)) * 64)
    (data / "b.txt").write_text("rows\n" * 100)
    dvc(origin, "add", "-q", "shared_data")
    dvc(origin, "push")
    assert (tmp_path / "echocem-dvc-remote").is_dir(), "the store lies beside the checkout"
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "add data")

    copy = clone(origin, tmp_path / "sibling")
    dvc(copy, "pull", "shared_data.dvc")
    for name in ("a.bin", "b.txt"):
        assert (copy / "shared_data" / name).read_bytes() == (data / name).read_bytes()
    assert dvc_stale_stages(copy) == set()


def test_pull_script_refuses_to_align_times_when_dvc_sees_changes(tmp_path):
    """Aligning Snakemake's times is only safe for outputs DVC has verified."""
    origin = make_pipeline_copy(tmp_path / "origin")
    (origin / "params.yaml").write_text((origin / "params.yaml").read_text().replace("seed:", "seed: 1 #", 1))
    proc = subprocess.run(["bash", str(PULL)], cwd=origin, capture_output=True, text=True,
                          env={**__import__("os").environ, "PATH": f"{REPO / '.venv' / 'bin'}:/usr/bin:/bin"})
    assert proc.returncode != 0
    assert "dvc status" in proc.stderr
