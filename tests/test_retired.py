"""A stage dropped from dvc.yaml (a fold taken out of the `unet_fold` matrix) leaves
its dvc.lock entry and its outputs behind: DVC prunes neither. A Snakemake run
retires them (echocem.retired): the stages reading a folder that holds such an
output run again, and afterwards the folder, dvc.lock and both tools' answers
are those of the current pipeline only.
"""
from __future__ import annotations

import copy
import shutil

import pytest
import yaml

from echocem.dag import descendants_and_self, load_pipeline
from tests.pipeline import dry_run_stages, dvc, dvc_stale_stages, snakemake

pytestmark = pytest.mark.slow


def _leave_a_dropped_fold(root, kept: int, dropped: int) -> list[str]:
    """What DVC leaves after fold `dropped` left the matrix: its lock entry and its outputs
    (made here from fold `kept`'s, as that fold's run would have written them)."""
    lock_path = root / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text())
    entry = copy.deepcopy(lock["stages"][f"unet_fold@{kept}"])
    text = yaml.safe_dump(entry).replace(f"fold_{kept}", f"fold_{dropped}").replace(
        f"--fold {kept}", f"--fold {dropped}")
    entry = yaml.safe_load(text)
    lock["stages"][f"unet_fold@{dropped}"] = entry
    lock_path.write_text(yaml.safe_dump(lock, sort_keys=False))
    paths = []
    for out in entry["outs"]:
        src = root / out["path"].replace(f"fold_{dropped}", f"fold_{kept}")
        dest = root / out["path"]
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            shutil.copyfile(src, dest)
        paths.append(out["path"])
    return paths


def test_a_run_retires_the_outputs_of_a_stage_no_longer_in_dvc_yaml(tiny_copy):
    root = tiny_copy
    stages = load_pipeline(root)
    assert "unet_fold@9" not in stages
    leftovers = _leave_a_dropped_fold(root, kept=1, dropped=9)
    assert "models/folds/fold_9.pt" in leftovers

    # the readers of those folders ran with the leftovers there (as after the change of
    # params that dropped the fold), so DVC, which judges them by their recorded hashes,
    # sees nothing to do; Snakemake runs them, and so everything downstream of them
    def reads(dep: str, path: str) -> bool:
        return dep == path or path.startswith(dep + "/")

    readers = {s.name for s in stages.values() if any(reads(d, p) for d in s.deps for p in leftovers)}
    assert {"pseudo_labels", "ladder_predictions", "submission", "unet_oof"} <= readers
    dvc(root, "commit", "--force", *sorted(readers))
    assert dvc_stale_stages(root) == set()
    assert dry_run_stages(root) == descendants_and_self(stages, readers)

    proc = snakemake(root, "--cores", "2")
    assert "stage unet_fold@9 is no longer in dvc.yaml" in proc.stderr
    for path in leftovers:
        assert not (root / path).exists(), path
    assert (root / "models/folds/fold_1.pt").is_file() and (root / "models/folds/fold_0.pt").is_file()
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(stages)
    assert dry_run_stages(root) == set()
    assert dvc_stale_stages(root) == set()
