"""What is out of date, as DVC says it (`dvc status`), and how Snakemake is told.

DVC compares every stage's deps, params and outs with what dvc.lock recorded,
by content. Snakemake, left to itself, compares file times, which disagree with
contents whenever a file is touched without being changed or rebuilt with the
same bytes. So Snakemake never decides on its own here: every rule input is
`ancient` (its time ignored), and each rule also reads a marker file
`.dvc/tmp/echocem/stale/<stage>`, refreshed (new content, new time) exactly
when DVC reports the stage or one of its upstream stages out of date. Both
tools then see the same stages to run, by construction.

DVC's answer is memoised like the resolution (echocem.dag): keyed on the size,
time and inode of dvc.yaml, params.yaml, dvc.lock, the .dvc files, .dvcignore,
the DVC config and every dep and out, so a no-op rerun stays quick and any
change asks DVC again.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Mapping

from echocem.dag import MEMO_DIR, Stage, descendants_and_self, file_signature, read_memo, resolution_key, write_memo
from echocem.io import EchoCemError

# Key of the status answer listing the dvc.lock entries of stages dvc.yaml no longer has (echocem.retired)
RETIRED = "retired stages"

STALE_DIR = MEMO_DIR / "stale"
_DVC_STATE_FILES = ("dvc.lock", ".dvcignore", ".dvc/config", ".dvc/config.local", ".dvc/cache")


def _dvc_files(root: Path) -> list[str]:
    """`.dvc` files of the repository (raw data added with `dvc add`), as git sees them."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.dvc"],
                             cwd=root, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted(p for p in out.split("\0") if p)


def status_key(root: Path, stages: Mapping[str, Stage]) -> list:
    paths = sorted({p for s in stages.values() for p in (*s.deps, *s.outs)})
    return [resolution_key(root), file_signature(root, [*_DVC_STATE_FILES, *_dvc_files(root), *paths])]


def _status_of(repo, stages: Mapping[str, Stage]) -> dict[str, list]:
    """DVC's status, plus the readers of outputs of stages that dvc.yaml no longer has (which
    DVC does not see: echocem.retired) and, under RETIRED, the names of those stages."""
    from echocem.retired import readers_of_retired, retired_entries

    status = repo.status()
    retired = retired_entries(repo, stages)
    for name, changes in readers_of_retired(retired, stages).items():
        status[name] = [*status.get(name, []), *changes]
    if retired:
        status[RETIRED] = sorted(retired)
    return status


def dvc_status(root: str | Path, stages: Mapping[str, Stage], held: bool = False) -> dict[str, list]:
    """`dvc status` as a dict (stage -> what changed), with the readers of retired outputs.

    Outside a run it takes DVC's lock, so it is refused while a run holds the
    checkout. Inside a run (`held`: the run's own process or one of its jobs)
    it works under the run's lock (echocem.checkout.repo_of_run).
    """
    from dvc.exceptions import DvcException
    from dvc.lock import LockError
    from dvc.repo import Repo, lock_repo

    from echocem.checkout import describe_holder, repo_of_run

    try:
        if held:
            with repo_of_run(root) as repo:
                return _status_of(repo, stages)
        with Repo(str(root)) as repo, lock_repo(repo):
            return _status_of(repo, stages)
    except LockError as exc:
        raise EchoCemError(f"this checkout is busy: {describe_holder(Path(root))}. "
                           "Wait for that run to end (or stop it) and start again.") from exc
    except DvcException as exc:
        raise EchoCemError(f"dvc status failed: {exc}") from exc


def status_answer(root: str | Path, stages: Mapping[str, Stage], held: bool = False) -> dict[str, list]:
    """`dvc_status`, memoised: stage -> changes, and RETIRED -> stages to retire."""
    root = Path(root)
    key = status_key(root, stages)
    cached = read_memo(root, "status", key)
    if cached is None:
        cached = dvc_status(root, stages, held)
        # keep the answer only if nothing changed while DVC was looking
        if status_key(root, stages) == key:
            write_memo(root, "status", key, cached)
    return cached


def stages_of(answer: Mapping[str, list], stages: Mapping[str, Stage]) -> dict[str, list]:
    """The out-of-date stages of a status answer (its RETIRED entry and any other key left out)."""
    return {name: changes for name, changes in answer.items() if name in stages}


def stale_stages(root: str | Path, stages: Mapping[str, Stage], held: bool = False) -> dict[str, list]:
    """Stages DVC reports out of date (name -> DVC's list of changes), memoised."""
    return stages_of(status_answer(root, stages, held), stages)


def refresh_memo(root: str | Path, stages: Mapping[str, Stage]) -> None:
    """At the end of a run (checkout held): ask DVC now, so the next start is quick."""
    stale_stages(root, stages, held=True)


def to_run(stages: Mapping[str, Stage], stale: Mapping[str, list]) -> set[str]:
    """What a full run executes: the stale stages and everything downstream of them
    (each of those reruns only if its inputs did change: see echocem.stage_job)."""
    return descendants_and_self(stages, stale)


def marker(stage: Stage) -> str:
    """The marker file of a stage (a rule input)."""
    return (STALE_DIR / stage.name).as_posix()


def _newest_time(root: Path, paths) -> int:
    newest = 0
    for rel in paths:
        for folder, _, files in os.walk(root / rel) if (root / rel).is_dir() else [(root / rel, (), ())]:
            for p in [Path(folder), *(Path(folder) / f for f in files)]:
                try:
                    newest = max(newest, p.stat().st_mtime_ns)
                except FileNotFoundError:
                    pass
    return newest


def write_markers(root: str | Path, stages: Mapping[str, Stage], run: set[str]) -> None:
    """Create every stage's marker; refresh those of the stages in `run`.

    A refreshed marker has new content (so Snakemake's checksum shortcut cannot
    call it unchanged) and a time later than any output of its stage.
    """
    root = Path(root)
    folder = root / STALE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    token = f"{time.time_ns()} {os.getpid()}\n"
    for stage in stages.values():
        path = root / marker(stage)
        if stage.name in run:
            path.write_text(token)
            stamp = max(time.time_ns(), _newest_time(root, stage.outs) + 1_000_000_000)
            os.utime(path, ns=(stamp, stamp))
        elif not path.exists():
            path.write_text("")
