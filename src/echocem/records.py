"""What dvc.lock records for each stage, and what DVC says of it now.

Both the audit and the report's provenance table are built on this, and this
is built on DVC's own answers: its repo index (stages with the hashes and
params values dvc.lock recorded), its per-stage status (what differs now, by
content, directories and .dvcignore included) and its DAG. Nothing here hashes
a folder, matches an ignore pattern, parses dvc.lock or knows the cache layout.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CODE_PREFIXES = ("stages/", "src/")


@dataclass(frozen=True)
class RecordedFile:
    """A dep or out of a stage: its md5 in dvc.lock and its state now."""

    stage: str
    kind: str  # "dep" or "out"
    path: str
    md5: str | None  # None: not recorded
    state: str  # "match", or DVC's word: "modified", "deleted", "new", "not in cache"; "not recorded"

    @property
    def is_code(self) -> bool:
        return self.kind == "dep" and self.path.startswith(CODE_PREFIXES)


@dataclass
class StageRecord:
    """One stage of the pipeline (or a `dvc add`-ed data file) as recorded, and its status."""

    name: str
    cmd: str
    is_data: bool  # a .dvc file (raw data added with `dvc add`), not a pipeline stage
    recorded: bool
    files: list[RecordedFile]
    params: dict[str, Any]  # recorded values of the keys the stage reads
    changed_params: dict[str, str]  # key -> DVC's word, for keys that differ now
    other: list[str] = field(default_factory=list)  # "changed command", "always changed", ...
    upstream: list[str] = field(default_factory=list)  # stages it depends on, directly or not

    def file(self, path: str, kind: str | None = None) -> RecordedFile | None:
        return next((f for f in self.files if f.path == path and kind in (None, f.kind)), None)

    @property
    def up_to_date(self) -> bool:
        return (self.recorded and not self.changed_params and not self.other
                and all(f.state == "match" for f in self.files))


def _status_entries(status: list) -> tuple[dict[str, str], dict[str, str], dict[str, str], list[str]]:
    """DVC's status list of one stage -> (deps, outs, params, other) changes."""
    deps: dict[str, str] = {}
    outs: dict[str, str] = {}
    params: dict[str, str] = {}
    other: list[str] = []
    for entry in status:
        if isinstance(entry, str):
            other.append(entry)
            continue
        for kind, changes in entry.items():
            target = deps if kind == "changed deps" else outs if kind == "changed outs" else None
            if target is None:
                other.append(kind)
                continue
            for path, word in changes.items():
                if isinstance(word, dict):  # a params file: {key: word}
                    params.update(word)
                else:
                    target[path] = word
    return deps, outs, params, other


def _repo_path(item, root: str) -> str:
    """A dep's or out's path from the repository root (a .dvc file's paths are relative to its folder)."""
    return Path(os.path.relpath(item.fs_path, root)).as_posix()


def _record(stage, status: list, upstream: list[str], root: str) -> StageRecord:
    from dvc.dependency.param import ParamsDependency

    dep_changes, out_changes, param_changes, other = _status_entries(status)
    files: list[RecordedFile] = []
    params: dict[str, Any] = {}
    recorded = bool(stage.outs) and all(bool(o.hash_info) for o in stage.outs)
    for dep in stage.deps:
        if isinstance(dep, ParamsDependency):
            params.update(dep.hash_info.value if dep.hash_info else {})
            continue
        md5 = dep.hash_info.value if dep.hash_info else None
        files.append(RecordedFile(stage.addressing, "dep", _repo_path(dep, root), md5,
                                  dep_changes.get(str(dep), "match" if md5 else "not recorded")))
    for out in stage.outs:
        md5 = out.hash_info.value if out.hash_info else None
        files.append(RecordedFile(stage.addressing, "out", _repo_path(out, root), md5,
                                  out_changes.get(str(out), "match" if md5 else "not recorded")))
    return StageRecord(name=stage.addressing, cmd=" ".join(str(stage.cmd or "").split()),
                       is_data=not stage.cmd, recorded=recorded, files=files, params=params,
                       changed_params=param_changes, other=other, upstream=upstream)


def read_records(root: str | Path = ".", held: bool = False) -> dict[str, StageRecord]:
    """Every stage of the repository as dvc.lock records it, with DVC's status now.

    `held`: this process works inside the run that holds the checkout (a job,
    the report stage); otherwise DVC's lock is taken, and a running pipeline
    makes this fail with EchoCemError naming it.
    """
    import contextlib

    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.lock import LockError
    from dvc.repo import Repo, lock_repo

    from echocem.checkout import describe_holder, repo_of_run
    from echocem.io import EchoCemError

    root = Path(root)
    try:
        with contextlib.ExitStack() as stack:
            if held:
                repo = stack.enter_context(repo_of_run(root))
                stack.enter_context(repo.lock)
            else:
                repo = stack.enter_context(Repo(str(root)))
                stack.enter_context(lock_repo(repo))
            graph = repo.index.graph  # edges point from a stage to the stages it depends on
            records = {}
            for stage in repo.index.stages:
                status = stage.status(check_updates=True).get(stage.addressing, [])
                upstream = sorted(s.addressing for s in nx.descendants(graph, stage))
                records[stage.addressing] = _record(stage, status, upstream, repo.root_dir)
            return records
    except LockError as exc:
        raise EchoCemError(f"this checkout is busy: {describe_holder(root)}. Ask again once that run ended.") from exc
    except DvcException as exc:
        raise EchoCemError(f"DVC cannot read the pipeline's record: {exc}") from exc
