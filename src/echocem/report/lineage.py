"""What DVC recorded about a run, read without DVC: dvc.lock, the cache, DVC-style hashes.

Shared by the report (hashes of every stage's inputs and outputs) and the audit
(is this submission still the product of the files on disk?). Starting DVC
costs seconds and needs a repository; reading its files directly costs
milliseconds and works on any copy of the results.

Formats relied on (DVC 3, checked against DVC's own output in tests/report):
- a file's md5 is the MD5 of its bytes;
- a directory's md5 is the MD5 of `json.dumps(entries, sort_keys=True)` plus
  ".dir", where entries is the list of {"md5", "relpath"} of its files (POSIX
  relative paths, sorted by relpath), files matched by .dvcignore left out;
- cache objects live at <cache>/files/md5/<first 2 hex>/<rest>; a directory's
  object is that JSON list, so the md5 of a file inside a directory output
  can be looked up without the file;
- dvc.lock: stages.<name>.{cmd, deps, params, outs}; deps/outs are lists of
  {path, md5, ...}; params is {"params.yaml": {declared key: value}}.
"""
from __future__ import annotations

import configparser
import fnmatch
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable, Iterator, Mapping

import yaml

from echocem.io import EchoCemError, file_md5

DIR_SUFFIX = ".dir"


# ---------------------------------------------------------------- hashing

def read_dvcignore(root: str | os.PathLike) -> list[str]:
    """Patterns of root/.dvcignore (comments and blank lines dropped); [] without the file."""
    path = Path(root) / ".dvcignore"
    if not path.is_file():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def is_ignored(relpath: str, patterns: Iterable[str]) -> bool:
    """Whether a POSIX path (relative to the repo root) matches a .dvcignore pattern.

    The subset of gitignore syntax the project uses: a pattern without "/"
    matches a file or folder name at any depth; one with "/" matches the path
    from the root (a trailing "/" is dropped). Negations are not supported.
    """
    parts = PurePosixPath(relpath).parts
    for pattern in patterns:
        pat = pattern.rstrip("/")
        if "/" in pat:
            pat = pat.lstrip("/")
            if any(fnmatch.fnmatchcase("/".join(parts[: k + 1]), pat) for k in range(len(parts))):
                return True
        elif any(fnmatch.fnmatchcase(part, pat) for part in parts):
            return True
    return False


def dir_entries(path: str | os.PathLike, rel_to_root: str = "", ignore: Iterable[str] = ()) -> list[dict[str, str]]:
    """DVC's listing of a directory: [{"md5", "relpath"}] of its files, sorted by relpath.

    `rel_to_root` is the directory's path from the repo root, against which the
    .dvcignore `ignore` patterns are matched.
    """
    base = Path(path)
    patterns = list(ignore)
    entries = []
    for dirpath, dirnames, filenames in os.walk(base, followlinks=True):
        rel_dir = Path(dirpath).relative_to(base).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        # prune ignored folders in place so os.walk does not descend into them
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(f"{rel_to_root}/{rel_dir}{d}".lstrip("/"), patterns))
        for name in filenames:
            rel = rel_dir + name
            if is_ignored(f"{rel_to_root}/{rel}".lstrip("/"), patterns):
                continue
            entries.append({"md5": file_md5(Path(dirpath) / name), "relpath": rel})
    return sorted(entries, key=lambda e: e["relpath"])


def dir_md5(entries: list[dict[str, str]]) -> str:
    """The md5 DVC records for a directory with these entries ("<hex>.dir")."""
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + DIR_SUFFIX


def dvc_md5(path: str | os.PathLike, root: str | os.PathLike = ".", ignore: Iterable[str] | None = None) -> str | None:
    """The md5 DVC would record for `path` (relative to `root`, or absolute); None if absent."""
    root = Path(root)
    p = Path(path)
    full = p if p.is_absolute() else root / p
    if full.is_file():
        return file_md5(full)
    if full.is_dir():
        patterns = read_dvcignore(root) if ignore is None else list(ignore)
        rel = p.as_posix() if not p.is_absolute() else Path(os.path.relpath(p, root)).as_posix()
        return dir_md5(dir_entries(full, rel, patterns))
    return None


# ---------------------------------------------------------------- dvc.lock

@dataclass(frozen=True)
class LockStage:
    """One stage as recorded in dvc.lock: the md5 of each dep and out, the params values used."""

    name: str
    cmd: str
    deps: dict[str, str | None]  # path -> md5 (None when DVC recorded no md5)
    outs: dict[str, str | None]
    params: dict[str, Any]  # declared key (e.g. "unet", "generative.common") -> value

    def files(self) -> Iterator[tuple[str, str, str | None]]:
        """("dep" | "out", path, md5) for every recorded file or folder."""
        for path, md5 in self.deps.items():
            yield "dep", path, md5
        for path, md5 in self.outs.items():
            yield "out", path, md5


def _entries_md5(items: Any, where: str) -> dict[str, str | None]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise EchoCemError(f"{where}: expected a list")
    out: dict[str, str | None] = {}
    for item in items:
        if not isinstance(item, dict) or "path" not in item:
            raise EchoCemError(f"{where}: entry without a path: {item!r}")
        md5 = item.get("md5")
        out[str(item["path"])] = None if md5 is None else str(md5)
    return out


def parse_lock(doc: Any, source: str = "dvc.lock") -> dict[str, LockStage]:
    """Stages of a loaded dvc.lock document, in file order."""
    if not isinstance(doc, dict) or not isinstance(doc.get("stages"), dict):
        raise EchoCemError(f"{source}: no 'stages' mapping (not a DVC 2/3 lock file)")
    stages = {}
    for name, spec in doc["stages"].items():
        where = f"{source}: stage {name}"
        if not isinstance(spec, dict):
            raise EchoCemError(f"{where}: expected a mapping")
        params: dict[str, Any] = {}
        for file_params in (spec.get("params") or {}).values():
            params.update(file_params or {})
        stages[str(name)] = LockStage(
            name=str(name),
            cmd=str(spec.get("cmd", "")),
            deps=_entries_md5(spec.get("deps"), f"{where}.deps"),
            outs=_entries_md5(spec.get("outs"), f"{where}.outs"),
            params=params,
        )
    return stages


def load_lock(path: str | os.PathLike) -> dict[str, LockStage] | None:
    """Stages of a dvc.lock file; None when there is none (the pipeline was never committed)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise EchoCemError(f"{p}: not valid YAML ({exc})") from exc
    return parse_lock(doc, str(p))


def covers(parent: str, child: str) -> bool:
    """True if `child` is `parent` or lies inside the folder `parent` (POSIX paths)."""
    return child == parent or child.startswith(parent.rstrip("/") + "/")


def producer(lock: Mapping[str, LockStage], path: str) -> tuple[str, str] | None:
    """(stage, recorded out) of the lock whose output is or contains `path`."""
    for stage in lock.values():
        for out in stage.outs:
            if covers(out, path):
                return stage.name, out
    return None


def upstream(lock: Mapping[str, LockStage], target: str) -> list[str]:
    """`target` and every stage it depends on through recorded deps, upstream first."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in visiting:
            return
        visiting.add(name)
        for dep in lock[name].deps:
            found = producer(lock, dep)
            if found and found[0] != name:
                visit(found[0])
        visiting.discard(name)
        order.append(name)

    visit(target)
    return order


# ---------------------------------------------------------------- cache

def cache_dir(root: str | os.PathLike) -> Path:
    """The DVC cache folder: [cache] dir of .dvc/config.local or .dvc/config, else .dvc/cache."""
    dvc = Path(root) / ".dvc"
    for name in ("config.local", "config"):
        cfg_path = dvc / name
        if not cfg_path.is_file():
            continue
        cfg = configparser.ConfigParser(strict=False, interpolation=None)
        try:
            cfg.read_string(cfg_path.read_text())
        except configparser.Error as exc:
            raise EchoCemError(f"{cfg_path}: cannot read the DVC config ({exc})") from exc
        if cfg.has_option("cache", "dir"):
            d = Path(cfg.get("cache", "dir"))
            return d if d.is_absolute() else (dvc / d)
    return dvc / "cache"


def cache_object(cache: str | os.PathLike, md5: str) -> Path:
    """Where DVC 3 keeps the object of `md5` (a file's bytes, or a directory's listing)."""
    return Path(cache) / "files" / "md5" / md5[:2] / md5[2:]


def dir_listing(cache: str | os.PathLike, md5: str) -> dict[str, str] | None:
    """relpath -> md5 of the files of a cached directory object; None if not in the cache."""
    obj = cache_object(cache, md5)
    if not md5.endswith(DIR_SUFFIX) or not obj.is_file():
        return None
    try:
        entries = json.loads(obj.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EchoCemError(f"{obj}: unreadable DVC directory object ({exc})") from exc
    return {str(e["relpath"]): str(e["md5"]) for e in entries if "relpath" in e and "md5" in e}


def recorded_md5(
    lock_files: Mapping[str, str | None], path: str, cache: str | os.PathLike
) -> tuple[str | None, str | None]:
    """(md5 of `path` per the lock, recorded entry it came from).

    `path` may be recorded itself or lie inside a recorded folder, in which
    case its md5 is read from the folder's object in the cache. (None, entry)
    when the folder's listing is not in the cache; (None, None) when no entry
    covers the path.
    """
    if path in lock_files:
        return lock_files[path], path
    for entry, md5 in lock_files.items():
        if covers(entry, path) and md5:
            listing = dir_listing(cache, md5)
            if listing is None:
                return None, entry
            return listing.get(path[len(entry.rstrip("/")) + 1 :]), entry
    return None, None


# ---------------------------------------------------------------- .dvc files and params

def dvc_file_outs(root: str | os.PathLike) -> dict[str, str | None]:
    """Outputs of `dvc add` (*.dvc files outside .dvc/): path -> md5, paths from the root."""
    root = Path(root)
    outs: dict[str, str | None] = {}
    for f in sorted(root.rglob("*.dvc")):
        rel_parts = f.relative_to(root).parts
        if rel_parts[0] in (".dvc", ".git", ".venv") or not f.is_file():
            continue
        try:
            doc = yaml.safe_load(f.read_text()) or {}
        except yaml.YAMLError:
            continue
        base = f.parent.relative_to(root)
        for item in doc.get("outs") or []:
            if isinstance(item, dict) and "path" in item:
                outs[(base / str(item["path"])).as_posix()] = item.get("md5")
    return outs


def value_changes(old: Any, new: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old, new) for every leaf that differs; a missing side is `MISSING`."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{key}.{k}" if key else str(k)
            changes.extend(value_changes(old.get(k, MISSING), new.get(k, MISSING), sub))
        return changes
    return [] if old == new and type(old) is type(new) else [(key, old, new)]


class _Missing:
    def __repr__(self) -> str:
        return "<absent>"


MISSING: Any = _Missing()


def describe_value(value: Any) -> str:
    """A params value as it reads in a message: JSON, or <absent>."""
    if value is MISSING:
        return "<absent>"
    return json.dumps(value, sort_keys=True)


@dataclass
class HashRow:
    """One recorded file of the pipeline: its md5 now and in dvc.lock."""

    stage: str
    kind: str  # "dep" or "out"
    path: str
    current: str | None
    locked: str | None
    in_lock: bool = field(default=True)

    @property
    def state(self) -> str:
        """"match", "changed", "missing" (not on disk) or "unrecorded" (not in dvc.lock)."""
        if self.current is None:
            return "missing"
        if not self.in_lock:
            return "unrecorded"
        return "match" if self.current == self.locked else "changed"
