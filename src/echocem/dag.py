"""The pipeline DAG as DVC resolves it: the one declaration both tools run.

dvc.yaml is read by DVC alone (its repo index), so `foreach`, `matrix`, `vars`
and `${...}` mean exactly what DVC says they mean. This module turns DVC's
stages into plain `Stage` records for the Snakefile, the report and the tests,
and keeps the answer in a small memo file so that a no-op Snakemake rerun does
not pay DVC's start-up (about two seconds): the memo is keyed on the size,
time and inode of every file the resolution reads, so any edit recomputes it.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Mapping

from echocem.io import EchoCemError, save_json

# Files whose contents decide how DVC resolves dvc.yaml (templating reads params.yaml).
RESOLUTION_INPUTS = ("dvc.yaml", "params.yaml")
MEMO_DIR = Path(".dvc") / "tmp" / "echocem"
_MEMO_FORMAT = 1


@dataclass(frozen=True)
class Stage:
    """One pipeline stage as DVC resolved it. Paths are relative to the repo root, POSIX style."""

    name: str  # DVC's name: "unet", or "gen@banana" for a matrix/foreach stage
    cmd: str
    deps: tuple[str, ...]  # files and folders (params files are in `params`)
    params: tuple[str, ...]  # dotted keys of params.yaml the stage reads
    outs: tuple[str, ...]  # every output: outs, metrics and plots
    metrics: tuple[str, ...]
    plots: tuple[str, ...]
    uncached: tuple[str, ...]  # outputs kept in git (cache: false)

    @property
    def rule(self) -> str:
        """The Snakemake rule name: an identifier ("gen@banana" -> "gen__banana")."""
        return rule_name(self.name)

    @property
    def base(self) -> str:
        """The declaration's name without the matrix/foreach item ("gen@banana" -> "gen")."""
        return self.name.split("@", 1)[0]


def rule_name(stage_name: str) -> str:
    out = stage_name.replace("@", "__")
    return "".join(c if c.isalnum() or c == "_" else "_" for c in out)


def is_dir_path(path: str) -> bool:
    """Project convention: an out or dep path without a file extension is a directory."""
    return PurePosixPath(path).suffix == ""


def covers(parent: str, child: str) -> bool:
    """True if path `child` is `parent` or lies inside it."""
    return child == parent or child.startswith(parent.rstrip("/") + "/")


# ---------------------------------------------------------------- DVC's resolution

def _stage_from_dvc(stage) -> Stage:
    """A `Stage` from a dvc.stage.PipelineStage."""
    from dvc.dependency.param import ParamsDependency

    deps, params = [], []
    for dep in stage.deps:
        if isinstance(dep, ParamsDependency):
            if PurePosixPath(dep.def_path).name != "params.yaml":
                raise EchoCemError(f"dvc.yaml: stage {stage.name}: params are read from params.yaml only, "
                                   f"not {dep.def_path}")
            params.extend(dep.params)
        else:
            deps.append(str(dep.def_path))
    outs = [str(o.def_path) for o in stage.outs]
    return Stage(
        name=stage.name,
        cmd=" ".join(str(stage.cmd).split()),
        deps=tuple(deps),
        params=tuple(params),
        outs=tuple(outs),
        metrics=tuple(str(o.def_path) for o in stage.outs if o.metric),
        plots=tuple(str(o.def_path) for o in stage.outs if o.plot),
        uncached=tuple(str(o.def_path) for o in stage.outs if not o.use_cache),
    )


def resolve_with_dvc(root: str | Path = ".") -> dict[str, Stage]:
    """Ask DVC for the pipeline stages (its repo index), in declaration order."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    from echocem.checkout import record_lock

    root = Path(root)
    if not (root / "dvc.yaml").is_file():
        raise EchoCemError(f"{root / 'dvc.yaml'}: not found")
    try:
        with Repo(str(root)) as repo, record_lock(root, exclusive=False):  # no job writes dvc.lock meanwhile
            stages = [_stage_from_dvc(s) for s in repo.index.stages if isinstance(s, PipelineStage)]
            repo.index.graph  # building DVC's graph checks it: duplicate outputs, cycles

    except DvcException as exc:
        raise EchoCemError(f"{root / 'dvc.yaml'}: DVC cannot read the pipeline: {exc}") from exc
    resolved = {s.name: s for s in stages}
    rules: dict[str, str] = {}
    for s in stages:
        if s.rule in rules:
            raise EchoCemError(f"dvc.yaml: stages {rules[s.rule]} and {s.name} map to the same Snakemake rule")
        rules[s.rule] = s.name
    return resolved


# ---------------------------------------------------------------- memo

def file_signature(root: Path, paths: Iterable[str]) -> list:
    """(path, size, mtime_ns, inode) of each path and, for folders, of every file below it.

    What DVC's own state database keys on: any write to a file changes it.
    """
    sig = []
    for rel in paths:
        top = root / rel
        if top.is_dir():
            for folder, dirs, files in os.walk(top):
                dirs.sort()
                for name in sorted(files):
                    p = Path(folder) / name
                    try:
                        st = p.stat()
                    except FileNotFoundError:
                        continue
                    sig.append([p.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns, st.st_ino])
        else:
            try:
                st = top.stat()
                sig.append([rel, st.st_size, st.st_mtime_ns, st.st_ino])
            except FileNotFoundError:
                sig.append([rel, None, None, None])
    return sig


def _dvc_version() -> str:
    from importlib import metadata

    return metadata.version("dvc")


def read_memo(root: Path, name: str, key: object) -> object | None:
    """The value stored under `name` if it was computed for `key`; None otherwise."""
    path = root / MEMO_DIR / f"{name}.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if doc.get("format") != _MEMO_FORMAT or doc.get("key") != key:
        return None
    return doc.get("value")


def write_memo(root: Path, name: str, key: object, value: object) -> None:
    save_json(root / MEMO_DIR / f"{name}.json", {"format": _MEMO_FORMAT, "key": key, "value": value})


def resolution_key(root: Path) -> list:
    return [_dvc_version(), file_signature(root, RESOLUTION_INPUTS)]


def load_pipeline(root: str | Path = ".") -> dict[str, Stage]:
    """The stages of dvc.yaml as DVC resolves them (memoised on the files DVC reads)."""
    root = Path(root)
    key = resolution_key(root)
    cached = read_memo(root, "pipeline", key)
    if cached is not None:
        return {d["name"]: Stage(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
                for d in cached}
    stages = resolve_with_dvc(root)
    write_memo(root, "pipeline", key, [asdict(s) for s in stages.values()])
    return stages


# ---------------------------------------------------------------- graph

def producer(stages: Mapping[str, Stage], path: str) -> str | None:
    """Name of the stage whose output is (or contains) `path`."""
    for stage in stages.values():
        if any(covers(out, path) for out in stage.outs):
            return stage.name
    return None


def dep_sources(stages: Mapping[str, Stage], dep: str) -> list[tuple[str, str]]:
    """(stage, output) pairs a dep reads, as DVC links them: the output holding the dep,
    or every output inside a dep folder (e.g. the per-item metrics of a matrix stage)."""
    found = []
    for stage in stages.values():
        for out in stage.outs:
            if covers(out, dep) or covers(dep, out):
                found.append((stage.name, out))
    return found


def edges(stages: Mapping[str, Stage]) -> set[tuple[str, str]]:
    """(upstream, downstream) pairs: downstream reads (part of) an output of upstream."""
    return {(up, stage.name) for stage in stages.values() for dep in stage.deps
            for up, _ in dep_sources(stages, dep) if up != stage.name}


def descendants_and_self(stages: Mapping[str, Stage], names: Iterable[str]) -> set[str]:
    graph = edges(stages)
    todo, seen = list(names), set(names)
    while todo:
        current = todo.pop()
        for up, down in graph:
            if up == current and down not in seen:
                seen.add(down)
                todo.append(down)
    return seen


def stages_by_rule(stages: Mapping[str, Stage]) -> dict[str, str]:
    """Snakemake rule name -> DVC stage name."""
    return {s.rule: s.name for s in stages.values()}
