"""The pipeline DAG, read from dvc.yaml: the single declaration both tools run.

DVC reads dvc.yaml natively. The Snakefile calls `load_pipeline` and defines one
rule per stage from it, so there is nothing to keep in sync by hand. This module
implements the subset of dvc.yaml the project uses (plain stages, `${dotted.key}`
interpolation from params.yaml, outs/metrics/plots with flags); anything else
raises, rather than being silently read differently from DVC.
tests/test_dag.py checks the result against DVC's own resolution.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import yaml

from echocem.io import EchoCemError
from echocem.params import get_key, select

_INTERP = re.compile(r"\$\{\s*([A-Za-z0-9_.]+)\s*\}")
_SUPPORTED_STAGE_KEYS = {"cmd", "deps", "params", "outs", "metrics", "plots", "desc", "wdir"}


@dataclass(frozen=True)
class Stage:
    """One stage as both tools see it. Paths are relative to the repo root, POSIX style."""

    name: str
    cmd: str
    deps: tuple[str, ...]
    params: tuple[str, ...]  # dotted keys of params.yaml the stage reads
    outs: tuple[str, ...]  # every output: outs, metrics and plots
    metrics: tuple[str, ...]
    plots: tuple[str, ...]

    def param_values(self, params: dict) -> str:
        """The values of the keys this stage reads, canonical JSON (Snakemake's params trigger)."""
        return json.dumps(select(params, self.params), sort_keys=True)


def interpolate(text: str, params: dict, where: str) -> str:
    """Replace `${a.b}` by the value of params key a.b, as DVC does."""

    def repl(match: re.Match) -> str:
        try:
            value = get_key(params, match.group(1))
        except EchoCemError as exc:
            raise EchoCemError(f"dvc.yaml: {where}: ${{{match.group(1)}}}: {exc}") from exc
        if isinstance(value, (dict, list)):
            raise EchoCemError(f"dvc.yaml: {where}: ${{{match.group(1)}}} is not a scalar")
        return str(value)

    return _INTERP.sub(repl, text)


def is_dir_path(path: str) -> bool:
    """Project convention: an out or dep path without a file extension is a directory."""
    return PurePosixPath(path).suffix == ""


def _entries(items: Any, where: str) -> list[tuple[str, dict]]:
    """Normalise a deps/outs/metrics/plots list: each item `path` or `{path: {flags}}`."""
    if items is None:
        return []
    if not isinstance(items, list):
        raise EchoCemError(f"dvc.yaml: {where}: expected a list")
    out = []
    for item in items:
        if isinstance(item, str):
            out.append((item, {}))
        elif isinstance(item, dict) and len(item) == 1:
            path, flags = next(iter(item.items()))
            out.append((str(path), dict(flags or {})))
        else:
            raise EchoCemError(f"dvc.yaml: {where}: cannot read entry {item!r}")
    return out


def _param_keys(items: Any, where: str) -> list[str]:
    keys = []
    for item in items or []:
        if isinstance(item, str):
            keys.append(item)
        elif isinstance(item, dict):
            for file, sub in item.items():
                if file != "params.yaml":
                    raise EchoCemError(f"dvc.yaml: {where}: only params.yaml is supported, not {file}")
                keys.extend(sub)
        else:
            raise EchoCemError(f"dvc.yaml: {where}: cannot read params entry {item!r}")
    return keys


def load_pipeline(root: str | Path = ".", params: dict | None = None) -> dict[str, Stage]:
    """Stages of dvc.yaml in declaration order, with `${...}` resolved from params."""
    root = Path(root)
    path = root / "dvc.yaml"
    if not path.is_file():
        raise EchoCemError(f"{path}: not found")
    doc = yaml.safe_load(path.read_text()) or {}
    unknown_top = set(doc) - {"stages", "metrics", "plots", "params", "vars"}
    if unknown_top or "vars" in doc:
        raise EchoCemError(f"{path}: unsupported top-level keys {sorted(unknown_top | ({'vars'} & set(doc)))}")
    if params is None:
        from echocem.params import load_params

        params = load_params(root / "params.yaml")

    stages: dict[str, Stage] = {}
    for name, spec in (doc.get("stages") or {}).items():
        where = f"stage {name}"
        if not isinstance(spec, dict) or "cmd" not in spec:
            raise EchoCemError(f"dvc.yaml: {where}: needs a cmd")
        unsupported = set(spec) - _SUPPORTED_STAGE_KEYS
        if unsupported or spec.get("wdir", ".") != "." or "foreach" in spec:
            raise EchoCemError(f"dvc.yaml: {where}: unsupported keys {sorted(unsupported)}")
        cmd = spec["cmd"]
        if isinstance(cmd, list):
            raise EchoCemError(f"dvc.yaml: {where}: a list of commands is not supported")
        sub = lambda s, w=where: interpolate(s, params, w)  # noqa: E731
        outs = [sub(p) for p, _ in _entries(spec.get("outs"), f"{where}.outs")]
        metrics = [sub(p) for p, _ in _entries(spec.get("metrics"), f"{where}.metrics")]
        plots = [sub(p) for p, _ in _entries(spec.get("plots"), f"{where}.plots")]
        keys = _param_keys(spec.get("params"), f"{where}.params")
        for key in keys:
            get_key(params, key)  # a stage may only list keys that exist
        stages[name] = Stage(
            name=name,
            cmd=sub(" ".join(str(cmd).split())),
            deps=tuple(sub(p) for p, _ in _entries(spec.get("deps"), f"{where}.deps")),
            params=tuple(keys),
            outs=tuple(outs + metrics + plots),
            metrics=tuple(metrics),
            plots=tuple(plots),
        )
    _check_unique_outputs(stages)
    return stages


def _check_unique_outputs(stages: dict[str, Stage]) -> None:
    owner: dict[str, str] = {}
    for stage in stages.values():
        for out in stage.outs:
            if out in owner:
                raise EchoCemError(f"dvc.yaml: output {out} is declared by {owner[out]} and {stage.name}")
            owner[out] = stage.name


def _covers(parent: str, child: str) -> bool:
    """True if path `child` is `parent` or lies inside it."""
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def producer(stages: dict[str, Stage], path: str) -> str | None:
    """Name of the stage whose output is (or contains) `path`."""
    for stage in stages.values():
        if any(_covers(out, path) for out in stage.outs):
            return stage.name
    return None


def edges(stages: dict[str, Stage]) -> set[tuple[str, str]]:
    """(upstream, downstream) pairs: a dep of downstream is an output of upstream."""
    result = set()
    for stage in stages.values():
        for dep in stage.deps:
            up = producer(stages, dep)
            if up is not None and up != stage.name:
                result.add((up, stage.name))
    return result


def _code_files(root: Path, folder: str) -> list[str]:
    files = []
    for f in sorted((root / folder).rglob("*")):
        if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
            files.append(f.relative_to(root).as_posix())
    return files


def snakemake_inputs(stage: Stage, stages: dict[str, Stage], root: str | Path = ".") -> list[str]:
    """The rule's input files.

    A dep produced by another stage stays as declared (a file or a directory
    output). A source folder that no stage produces (code, or real data added
    with `dvc add`) is expanded into its files, because Snakemake judges a
    folder by its own mtime, which does not change when a file inside is edited.
    """
    root = Path(root)
    inputs: list[str] = []
    for dep in stage.deps:
        if producer(stages, dep) is None and (root / dep).is_dir():
            inputs.extend(_code_files(root, dep))
        else:
            inputs.append(dep)
    return inputs


def stage_threads(params: dict, name: str) -> int:
    threads = params["execution"]["threads"]
    return int(threads.get(name, threads["default"]))


def stage_resources(params: dict, name: str) -> dict[str, int]:
    """Scheduler hints for a stage from params `execution` (memory, wall time, GPUs)."""
    ex = params["execution"]
    res = {
        "mem_mb": int(ex["mem_mb"].get(name, ex["mem_mb"]["default"])),
        "runtime": int(ex["runtime_min"].get(name, ex["runtime_min"]["default"])),
    }
    gpus = int(ex["gpus"].get(name, 0))
    if gpus:
        res["gpu"] = gpus
    return res


def default_targets(stages: dict[str, Stage], params: dict) -> list[str]:
    """Everything the pipeline produces; the simulator is left out when real data is used."""
    skip = {"simulate"} if params["data"]["source"] == "real" else set()
    return [out for s in stages.values() if s.name not in skip for out in s.outs]


def ancestors_and_self(stages: dict[str, Stage], names: Iterable[str]) -> set[str]:
    graph = edges(stages)
    todo, seen = list(names), set(names)
    while todo:
        current = todo.pop()
        for up, down in graph:
            if down == current and up not in seen:
                seen.add(up)
                todo.append(up)
    return seen


def descendants_and_self(stages: dict[str, Stage], names: Iterable[str]) -> set[str]:
    graph = edges(stages)
    todo, seen = list(names), set(names)
    while todo:
        current = todo.pop()
        for up, down in graph:
            if up == current and down not in seen:
                seen.add(down)
                todo.append(down)
    return seen


def _newest_mtime(path: Path) -> float:
    if path.is_dir():
        return max([path.stat().st_mtime] + [f.stat().st_mtime for f in path.rglob("*")])
    return path.stat().st_mtime


def lock_is_current(stages: dict[str, Stage], root: str | Path = ".") -> bool:
    """True when dvc.lock is newer than every output: nothing new for `dvc commit`.

    Lets a no-op Snakemake rerun skip DVC entirely (a few stat calls instead of
    starting DVC), which keeps it within the no-op time target.
    """
    root = Path(root)
    lock = root / "dvc.lock"
    if not lock.is_file():
        return False
    stamp = lock.stat().st_mtime
    for stage in stages.values():
        for out in stage.outs:
            path = root / out
            if not path.exists() or _newest_mtime(path) > stamp:
                return False
    return True


def finished_stages(stages: dict[str, Stage], root: str | Path = ".") -> list[str]:
    """Stages whose outputs all exist: what `dvc commit` can record after a run
    that built only some targets."""
    root = Path(root)
    return [s.name for s in stages.values() if all((root / out).exists() for out in s.outs)]
