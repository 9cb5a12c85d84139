"""Sharing a run through the DVC remote: `dvc push`, then a pull into a fresh clone.

The clone must then hold every output byte for byte, DVC must see it up to
date and Snakemake must have nothing to do there: a plain `dvc pull` does it,
because Snakemake asks DVC what is out of date (echocem.staleness), file times
play no part.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from echocem.dag import descendants_and_self, load_pipeline
from tests.pipeline import dry_run_stages, dvc, dvc_stale_stages, git, make_pipeline_copy, run
from tests.slurm.snapshot import output_files, output_hashes

pytestmark = pytest.mark.slow

REMOTE = "shared"  # the default remote of .dvc/config
EVERYTHING = frozenset()  # exclude nothing: a pull restores the very bytes, report included


def clone(origin: Path, dest: Path, store: Path | None = None) -> Path:
    """git clone `origin` to `dest`; point its remote at `store` for this clone only."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    run(["git", "clone", "-q", str(origin), str(dest)], dest.parent)
    if store is not None:
        dvc(dest, "remote", "modify", "--local", REMOTE, "url", str(store))
    return dest


@pytest.fixture(scope="module")
def pushed_run(tiny_copy, tmp_path_factory) -> tuple[Path, Path]:
    """A tiny run, its outputs pushed to a store in tmp, its record committed to git."""
    origin = tiny_copy
    store = tmp_path_factory.mktemp("remote") / "store"
    dvc(origin, "remote", "modify", "--local", REMOTE, "url", str(store))
    dvc(origin, "push")
    # git carries dvc.lock and the small uncached results (metrics, plots, manifest)
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "tiny pipeline run")
    return origin, store


def test_pull_into_a_fresh_clone_restores_every_output(pushed_run, tmp_path):
    origin, store = pushed_run
    assert git(origin, "status", "--porcelain").stdout == "", "every result is either in git or in DVC"
    copy = clone(origin, tmp_path / "elsewhere" / "clone", store)
    absent = [f for f in output_files(origin) if not (copy / f.relative_to(origin)).exists()]
    assert absent, "before the pull the clone lacks the DVC-cached outputs"

    dvc(copy, "pull")

    expected = output_hashes(origin, EVERYTHING)
    assert "missing" not in expected.values()
    assert output_hashes(copy, EVERYTHING) == expected
    assert dvc_stale_stages(copy) == set()
    assert dry_run_stages(copy) == set()
    assert git(copy, "status", "--porcelain").stdout == "", "the pull changed no tracked file"
    assert set(load_pipeline(copy)) == set(load_pipeline(origin))


def test_a_clone_that_differs_is_out_of_date_in_both_tools_after_the_pull(pushed_run, tmp_path):
    """A clone whose params differ from the pushed run's: the pulled outputs are stale, and
    both tools say which."""
    origin, store = pushed_run
    copy = clone(origin, tmp_path / "changed", store)
    params_path = copy / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["rf"]["n_estimators"] += 1
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))

    dvc(copy, "pull")

    # report reads rf.* too (it prints the baseline's settings)
    assert dvc_stale_stages(copy) == {"rf_baseline", "report"}
    assert dry_run_stages(copy) == descendants_and_self(load_pipeline(copy), {"rf_baseline", "report"})


def test_default_remote_is_shared_by_checkouts_side_by_side(tmp_path):
    """.dvc/config's relative url: a checkout and a clone beside it use the same store."""
    origin = make_pipeline_copy(tmp_path / "origin")
    data = origin / "shared_data"
    data.mkdir()
    (data / "a.bin").write_bytes(bytes(range(256)) * 64)
    (data / "b.txt").write_text("row\n" * 100)
    dvc(origin, "add", "-q", "shared_data")
    dvc(origin, "push")
    assert (tmp_path / "echocem-dvc-remote").is_dir(), "the default store lies beside the checkout"
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "add data")

    copy = clone(origin, tmp_path / "beside")
    assert not (copy / "shared_data").exists()
    dvc(copy, "pull", "shared_data.dvc")
    for name in ("a.bin", "b.txt"):
        assert (copy / "shared_data" / name).read_bytes() == (data / name).read_bytes()
    assert dvc(copy, "status", "--json", "shared_data.dvc").stdout.strip() == "{}"
