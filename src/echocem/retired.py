"""Outputs of stages that dvc.yaml no longer has: a fold, a student or a D dropped from a matrix.

DVC keeps such a stage's entry in dvc.lock, and its outputs stay in the workspace
(neither `dvc repro` nor `dvc commit` prunes them). Left there, a dropped fold's
model stays in models/folds, a folder other stages list as a dep: their record
would hash a model that no current stage made, and a later cleanup would make
them out of date for no change of theirs. So a Snakemake run retires them:

- the stages that read a retired output (a dep equal to it, or a folder holding
  it) count as out of date, and so everything downstream of them (echocem.staleness);
- before any job starts, with the checkout held, the retired outputs are removed
  (DVC's cache keeps a copy of every cached one) and so is every dvc.lock entry
  of a stage dvc.yaml no longer has.

Written here because DVC has no command for it (`dvc remove` needs the stage in dvc.yaml).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Mapping

from echocem.dag import Stage, covers


def _overlap(a: str, b: str) -> bool:
    """The same path, or one inside the other."""
    return covers(a, b) or covers(b, a)


def _lockfile(repo):
    from dvc.dvcfile import Lockfile

    return Lockfile(repo, os.path.join(repo.root_dir, "dvc.lock"))  # for reading; writes: updated_lockfile


def retired_entries(repo, stages: Mapping[str, Stage]) -> dict[str, list[str]]:
    """dvc.lock entries of stages dvc.yaml no longer has -> those of their outputs still in
    the workspace that no current stage declares (they are removed by `retire`)."""
    lock = _lockfile(repo)
    if not lock.exists():
        return {}
    entries = lock.load().get("stages", {})  # DVC's own reader of dvc.lock
    current_outs = [out for stage in stages.values() for out in stage.outs]
    root = Path(repo.root_dir)
    retired = {}
    for name, entry in entries.items():
        if name in stages:
            continue
        paths = [out["path"] for out in entry.get("outs", [])]
        retired[name] = [p for p in paths
                         if os.path.lexists(root / p) and not any(_overlap(p, out) for out in current_outs)]
    return retired


def readers_of_retired(retired: Mapping[str, list[str]], stages: Mapping[str, Stage]) -> dict[str, list]:
    """Stages that read a retired output (`retired_entries`), as entries of a `dvc status` answer."""
    paths = sorted({p for outs in retired.values() for p in outs})
    found = {}
    for stage in stages.values():
        read = [p for p in paths if any(_overlap(dep, p) for dep in stage.deps)]
        if read:
            found[stage.name] = [{"reads outputs of stages no longer in dvc.yaml": read}]
    return found


def retire(repo, stages: Mapping[str, Stage]) -> dict[str, list[str]]:
    """Remove the retired outputs and every dvc.lock entry of a stage dvc.yaml no longer has.

    Call with the checkout held, no job running and `record_lock(exclusive=True)`. Returns
    what was retired (stage -> outputs removed).
    """
    from echocem.checkout import updated_lockfile

    retired = retired_entries(repo, stages)
    root = Path(repo.root_dir)
    for outs in retired.values():
        for rel in outs:
            path = root / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
    if retired:
        with updated_lockfile(repo) as lock:  # one rename: a kill leaves the old record or the new
            for name in retired:
                lock.remove_stage(SimpleNamespace(name=name))  # DVC's own edit of its lock file
    return retired
