"""`python -m echocem run-stage NAME`: one Snakemake job runs one DVC stage and records it.

What `dvc repro` does for a stage, inside a Snakemake job, with DVC's own API:

1. ask DVC whether the stage is out of date now; if not (an upstream stage was
   rebuilt with the very same bytes), run nothing, as `dvc repro` would not;
2. note the hashes of its deps and params (computed by DVC), run its command;
3. after the command succeeded, with the checkout held (echocem.checkout.JobLock)
   and one recording job at a time: hash deps, params and outs again; if a dep
   changed while the command ran, record nothing and fail; otherwise DVC saves,
   caches and writes the stage's entry in dvc.lock.

A stage is thus recorded only when it ran to completion in this run with the
deps, params and code it is recorded with. A job that fails or is killed
records nothing: dvc.lock keeps the previous entry, DVC then reports the stage
out of date, and so does Snakemake (echocem.staleness).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from echocem.checkout import JobLock, record_lock, repo_of_run, updated_lockfile
from echocem.io import EchoCemError

UP_TO_DATE = "up to date (DVC finds its deps, params and outs as recorded): nothing to run"


def _log(message: str) -> None:
    print(f"[run-stage] {message}", flush=True)


def job_was_skipped(log_text: str, name: str) -> bool:
    """Whether a job's log (logs/<stage>.log) says DVC found its stage up to date, so that the
    job's Snakemake benchmark timed the check, not the stage."""
    return f"[run-stage] {name}: {UP_TO_DATE}" in log_text


def _find_stage(repo, name: str):
    from dvc.stage import PipelineStage

    for stage in repo.index.stages:
        if isinstance(stage, PipelineStage) and stage.name == name:
            return stage
    raise EchoCemError(f"dvc.yaml: no stage named {name!r}")


def dep_hashes(stage, compute: bool = True) -> dict[str, str]:
    """What each dep and params dependency hashes to (now, or as last saved), computed by DVC."""
    if compute:
        stage.save_deps()
    return {str(dep.def_path) + (f" {sorted(dep.params)}" if hasattr(dep, "params") else ""):
            json.dumps(dep.hash_info.to_dict(), sort_keys=True, default=str) for dep in stage.deps}


def _changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def run_stage(name: str, root: str | Path = ".") -> int:
    """Run and record one stage; returns the command's exit code (0: nothing to do).

    One DVC Repo serves the whole job, as in `dvc repro`: DVC re-reads dvc.lock when it
    writes the stage's entry, so what other jobs recorded meanwhile is kept.
    """
    root = Path(root).resolve()
    with repo_of_run(root) as repo, repo.lock:  # reading: the lock is taken to record (JobLock)
        stage = _find_stage(repo, name)
        changes = stage.status()
        if not changes:
            _log(f"{name}: {UP_TO_DATE}")
            return 0
        _log(f"{name}: out of date: {json.dumps(changes.get(stage.addressing, changes))}")
        before = dep_hashes(stage)
        _log(f"{name}: $ {stage.cmd}")
        start = time.monotonic()
        proc = subprocess.run(stage.cmd, shell=True, cwd=root)
        if proc.returncode != 0:
            _log(f"{name}: command failed (exit {proc.returncode}): nothing recorded")
            return proc.returncode
        _log(f"{name}: command finished in {time.monotonic() - start:.1f} s; recording in dvc.lock")
        record(root, stage, before)
    return 0


def record(root: Path, stage, before: dict[str, str]) -> None:
    """Record a finished stage in dvc.lock and the cache, if its deps are those it ran with."""
    with JobLock(root), record_lock(root, exclusive=True):  # one job writes dvc.lock, none reads it
        stage.save()  # DVC hashes deps, params and outs: what it is about to record
        moved = _changed(before, dep_hashes(stage, compute=False))
        if moved:
            raise EchoCemError(f"stage {stage.name}: {', '.join(moved)} changed while it ran: its outputs may not "
                               "match them, so nothing was recorded. Run the pipeline again.")
        stage.commit()
        with updated_lockfile(stage.repo) as lockfile:
            lockfile.dump(stage)  # what stage.dump(update_pipeline=False) writes, swapped in by one rename
    _log(f"{stage.name}: recorded")


def cli_run_stage(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m echocem run-stage STAGE   (started by the Snakefile, one job per stage)",
              file=sys.stderr)
        return 2
    try:
        return run_stage(argv[0])
    except EchoCemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
