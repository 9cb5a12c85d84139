"""`python -m echocem audit SUBMISSION.csv`: prove where a submission came from.

The submission stage writes a manifest beside the CSV (echocem.provenance):
the CSV's md5, the md5 of every input (models, test data, normalisation), the
params values it read, the code version. DVC records in dvc.lock the md5 of
every dep and out of every stage. The audit checks, and names whatever differs:

1. the CSV against the manifest (was the file edited after it was built?);
2. each recorded input against the file on disk (was a model replaced?);
3. the recorded params against params.yaml, key by key, and the manifest's
   own params md5 (was the manifest edited?);
4. the manifest against dvc.lock's submission stage (same CSV, same inputs,
   same params: the lock describes this submission), and the DVC cache
   (the inputs can be restored);
5. the chain upstream of the submission in dvc.lock: each stage's deps are the
   outs its producer recorded, every recorded file still has its md5 on disk,
   every params key still has its value; raw data comes from a stage or a
   `dvc add`-ed .dvc file.

Exit 0: every check passed; 1: something changed (each problem on one line);
2: the submission, its manifest or dvc.lock cannot be read.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from echocem.io import EchoCemError, file_md5
from echocem.params import get_key
from echocem.provenance import code_version, load_manifest, params_md5
from echocem.report.lineage import (
    MISSING,
    LockStage,
    cache_dir,
    cache_object,
    covers,
    describe_value,
    dvc_file_outs,
    dvc_md5,
    load_lock,
    producer,
    read_dvcignore,
    recorded_md5,
    upstream,
    value_changes,
)


@dataclass
class Audit:
    """What the audit found: problems fail it, warnings and chain lines inform."""

    submission: str
    md5: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)
    checked: int = 0  # hashes and values compared
    # what was already reported, so one edit gives one line, not one per place it is recorded
    changed_paths: set[str] = field(default_factory=set)
    changed_keys: set[str] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems


def short(md5: str | None) -> str:
    """First 10 hex digits (and .dir) of an md5, for messages."""
    if md5 is None:
        return "none"
    suffix = ".dir" if md5.endswith(".dir") else ""
    return md5[:10] + ".." + suffix


def find_root(submission: Path, recorded: str | None) -> Path:
    """The repository root the manifest's paths are relative to.

    The manifest records the submission's path from the root, so the root is
    what is left of the submission's absolute path when that suffix is removed;
    failing that, the nearest parent holding dvc.yaml or dvc.lock.
    """
    sub = submission.resolve()
    if recorded:
        parts = Path(recorded).parts
        if len(parts) <= len(sub.parts) and sub.parts[-len(parts):] == parts:
            return Path(*sub.parts[: -len(parts)]) if len(parts) < len(sub.parts) else Path("/")
    for parent in sub.parents:
        if (parent / "dvc.lock").is_file() or (parent / "dvc.yaml").is_file():
            return parent
    return Path.cwd()


def _load_params_file(path: Path) -> dict:
    if not path.is_file():
        raise EchoCemError(f"{path}: params file not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise EchoCemError(f"{path}: not valid YAML ({exc})") from exc
    return doc if isinstance(doc, dict) else {}


def _current(params: dict, key: str) -> Any:
    try:
        return get_key(params, key)
    except EchoCemError:
        return MISSING


def check_params(audit: Audit, params_file: str, recorded: Mapping[str, Any], current: dict, why: str) -> None:
    """One problem per params key whose value differs from `recorded` (declared key -> value)."""
    for key, value in recorded.items():
        for dotted, old, new in value_changes(value, _current(current, key), key):
            if dotted in audit.changed_keys:
                continue
            audit.changed_keys.add(dotted)
            audit.problems.append(
                f"{params_file}: {dotted} changed from {describe_value(old)} to {describe_value(new)} ({why})"
            )
        audit.checked += 1


def check_manifest(audit: Audit, manifest: dict, root: Path, params: dict) -> None:
    """Steps 1-3: the CSV, every recorded input and the params against the files on disk."""
    sub = manifest.get("submission", {})
    if sub.get("md5") != audit.md5:
        audit.problems.append(
            f"{audit.submission}: md5 {short(audit.md5)} != recorded {short(sub.get('md5'))} in the manifest "
            "(the CSV was changed after it was built)"
        )
    audit.checked += 1
    for role, entry in sorted(manifest.get("inputs", {}).items()):
        path, recorded = entry.get("path"), entry.get("md5")
        full = root / path
        if not full.is_file():
            audit.changed_paths.add(path)
            audit.problems.append(f"{path}: input {role!r} of the submission is missing")
            continue
        now = file_md5(full)
        if now != recorded:
            audit.changed_paths.add(path)
            audit.problems.append(
                f"{path}: md5 {short(now)} != recorded {short(recorded)} (file replaced after the submission was built)"
            )
        audit.checked += 1
    rec = manifest.get("params", {})
    values = rec.get("values", {})
    if params_md5(values) != rec.get("md5"):
        audit.problems.append(
            "manifest: the recorded params values do not match their recorded md5 (the manifest was edited)"
        )
    check_params(audit, rec.get("file", "params.yaml"), values, params, "recorded when the submission was built")


def _submission_stage(lock: Mapping[str, LockStage], sub_path: str) -> LockStage | None:
    for stage in lock.values():
        if sub_path in stage.outs:
            return stage
    return None


def check_against_lock(audit: Audit, manifest: dict, lock: Mapping[str, LockStage], cache: Path,
                       manifest_rel: str | None, root: Path) -> LockStage | None:
    """Step 4: the manifest and dvc.lock's submission stage describe the same run."""
    sub_path = manifest.get("submission", {}).get("path", audit.submission)
    stage = _submission_stage(lock, sub_path)
    if stage is None:
        audit.problems.append(f"dvc.lock: no stage records {sub_path} as an output (run `dvc commit` after the pipeline)")
        return None
    locked = stage.outs[sub_path]
    if locked != audit.md5:
        audit.problems.append(
            f"dvc.lock: stage {stage.name} recorded {sub_path} md5 {short(locked)}, this file is {short(audit.md5)} "
            "(dvc.lock belongs to another run)"
        )
    audit.checked += 1
    if manifest_rel and manifest_rel in stage.outs:
        now = file_md5(root / manifest_rel)
        if now != stage.outs[manifest_rel]:
            audit.problems.append(
                f"{manifest_rel}: md5 {short(now)} != dvc.lock {short(stage.outs[manifest_rel])} "
                "(the manifest was changed after the run)"
            )
        audit.checked += 1
    for role, entry in sorted(manifest.get("inputs", {}).items()):
        path, recorded = entry.get("path"), entry.get("md5")
        md5, via = recorded_md5(stage.deps, path, cache)
        if via is None:
            audit.problems.append(f"dvc.lock: stage {stage.name} does not list input {path} ({role}) among its deps")
        elif md5 is None:
            audit.warnings.append(f"{path}: inside {via}, whose listing is not in the DVC cache: md5 not checked against dvc.lock")
        elif md5 != recorded:
            audit.problems.append(
                f"{path}: manifest md5 {short(recorded)} != dvc.lock {short(md5)} (stage {stage.name} used another file)"
            )
        else:
            audit.checked += 1
        if via == path and md5 and not cache_object(cache, md5).is_file():
            audit.warnings.append(f"{path}: not in the DVC cache ({cache}): it cannot be restored with `dvc checkout`")
    values = manifest.get("params", {}).get("values", {})
    for key, value in stage.params.items():
        recorded = _current(values, key) if key.split(".")[0] in values else MISSING
        if recorded is MISSING:
            continue  # a key the manifest does not record (e.g. seed); checked in the chain
        for dotted, old, new in value_changes(value, recorded, key):
            audit.problems.append(
                f"dvc.lock: stage {stage.name} ran with {dotted}={describe_value(old)}, "
                f"the manifest records {describe_value(new)}"
            )
        audit.checked += 1
    return stage


def check_chain(audit: Audit, lock: Mapping[str, LockStage], target: LockStage, root: Path, params: dict,
                params_file: str) -> None:
    """Step 5: walk the stages upstream of the submission; print the chain, name what changed."""
    ignore = read_dvcignore(root)
    added = dvc_file_outs(root)
    cache = cache_dir(root)
    hashed: dict[str, str | None] = {}

    def on_disk(path: str) -> str | None:
        if path not in hashed:
            hashed[path] = dvc_md5(path, root, ignore)
        return hashed[path]

    order = upstream(lock, target.name)
    for name in order:
        stage = lock[name]
        audit.chain.append(f"[{name}]" + (f"  params: {', '.join(stage.params)}" if stage.params else ""))
        code = [p for p in stage.deps if producer(lock, p) is None and p not in added and not _is_raw(p, added)]
        for path, md5 in stage.deps.items():
            if path in code:
                continue
            source = producer(lock, path)
            if source is not None:
                up, up_out = source
                origin = f"from {up}"
                up_md5 = lock[up].outs[up_out] if up_out == path else recorded_md5(lock[up].outs, path, cache)[0]
                if up_md5 is not None and md5 != up_md5:
                    audit.problems.append(
                        f"dvc.lock: stage {name} used {path} md5 {short(md5)} but {up} recorded {short(up_md5)} "
                        f"(the lock mixes runs: rerun `{up}` and its descendants)"
                    )
            else:
                origin = _raw_origin(path, md5, added, audit)
            audit.chain.append(f"    in   {path:<44} {short(md5):<16} {origin}")
        for path, md5 in stage.deps.items():
            _check_file(audit, path, md5, on_disk(path), name, "dep")
        for path, md5 in stage.outs.items():
            now = on_disk(path)
            _check_file(audit, path, md5, now, name, "out")
            mark = "  <- this submission" if md5 == audit.md5 and path == audit.submission else ""
            audit.chain.append(f"    out  {path:<44} {short(md5):<16}{mark}")
        if code:
            changed = [p for p in code if on_disk(p) != stage.deps[p]]
            audit.chain.append(f"    code {len(code)} files" + (f", changed: {', '.join(changed)}" if changed else ", unchanged"))
        check_params(audit, params_file, stage.params, params, f"stage {name} ran with the recorded value")
    audit.chain.insert(0, "chain: " + " -> ".join([f"raw data {_raw_head(lock, order, added)}", *order,
                                                     audit.submission]))


def _raw_head(lock: Mapping[str, LockStage], order: list[str], added: Mapping[str, Any]) -> str:
    """The raw data at the start of the chain: versioned inputs, else what a stage wrote under data/raw."""
    raw = [p for n in order for p in lock[n].deps if producer(lock, p) is None and _is_raw(p, added)]
    if raw:
        return " + ".join(dict.fromkeys(raw))
    # synthetic data: the simulator's output is the raw data
    made = [(p, producer(lock, p)) for n in order for p in lock[n].deps if p.startswith("data/raw/")]
    made = [f"{p} (written by {src[0]})" for p, src in dict(made).items() if src is not None]
    return " + ".join(made) or "(none recorded)"


def _is_raw(path: str, added: Mapping[str, Any]) -> bool:
    """A dep no stage produces that is data, not code: under data/, or added with `dvc add`."""
    return path.startswith("data/") or any(covers(a, path) for a in added)


def _raw_origin(path: str, md5: str | None, added: Mapping[str, str | None], audit: Audit) -> str:
    for out, rec in added.items():
        if out == path:
            if rec != md5:
                audit.problems.append(f"{path}.dvc records md5 {short(rec)}, dvc.lock used {short(md5)} (raw data replaced)")
            return f"raw data ({path}.dvc)"
    audit.warnings.append(f"{path}: raw data not versioned by DVC (no stage and no .dvc file): `dvc add {path}`")
    return "raw data (not versioned by DVC)"


def _check_file(audit: Audit, path: str, locked: str | None, now: str | None, stage: str, kind: str) -> None:
    audit.checked += 1
    if path in audit.changed_paths:
        return
    if now is None or (locked is not None and now != locked):
        audit.changed_paths.add(path)
    if now is None:
        audit.problems.append(f"{path}: missing on disk (dvc.lock records it as {kind} of stage {stage}; `dvc checkout`?)")
    elif locked is not None and now != locked:
        audit.problems.append(
            f"{path}: md5 {short(now)} != dvc.lock {short(locked)} ({kind} of stage {stage}, changed since the pipeline ran)"
        )


def audit_submission(submission: str | Path, manifest_path: str | Path | None = None,
                     root: str | Path | None = None) -> Audit:
    """Run every check on a submission CSV; EchoCemError if an essential file cannot be read."""
    sub = Path(submission)
    if not sub.is_file():
        raise EchoCemError(f"{sub}: submission file not found")
    man_path = Path(manifest_path) if manifest_path else sub.with_name("manifest.json")
    if not man_path.is_file():
        raise EchoCemError(f"{man_path}: no manifest beside the submission (pass --manifest)")
    manifest = load_manifest(man_path)
    recorded_sub = manifest.get("submission", {}).get("path")
    root = Path(root) if root else find_root(sub, recorded_sub)
    rel = recorded_sub or sub.as_posix()
    audit = Audit(submission=rel, md5=file_md5(sub))
    params_file = manifest.get("params", {}).get("file", "params.yaml")
    params = _load_params_file(root / params_file)

    check_manifest(audit, manifest, root, params)
    lock = load_lock(root / "dvc.lock")
    if lock is None:
        audit.problems.append(f"{root / 'dvc.lock'}: not found: the chain from raw data to the submission cannot be checked")
        return audit
    try:
        manifest_rel = man_path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        manifest_rel = None
    stage = check_against_lock(audit, manifest, lock, cache_dir(root), manifest_rel, root)
    if stage is not None:
        check_chain(audit, lock, stage, root, params, params_file)
    _code_notes(audit, manifest, root)
    return audit


def _code_notes(audit: Audit, manifest: dict, root: Path) -> None:
    built = manifest.get("code", {})
    commit, dirty = built.get("git_commit"), built.get("git_dirty")
    now = code_version(root)
    if commit is None:
        audit.warnings.append("manifest: no git commit recorded (built outside a git repository)")
    elif dirty:
        audit.warnings.append(f"built from commit {commit[:12]} with uncommitted changes: the commit alone does not reproduce it")
    if commit and now["git_commit"] and now["git_commit"] != commit:
        audit.warnings.append(f"HEAD is now {now['git_commit'][:12]}, the submission was built at {commit[:12]}")


def format_audit(audit: Audit) -> str:
    """The report printed by the command: verdict, chain, warnings, problems."""
    lines = [f"audit of {audit.submission} (md5 {audit.md5})"]
    lines += audit.chain
    lines += [f"warning: {w}" for w in audit.warnings]
    if audit.ok:
        lines.append(f"OK: {audit.checked} hashes and params values match the manifest, dvc.lock and the files on disk")
    else:
        lines.append(f"FAILED: {len(audit.problems)} problem(s)")
        lines += [f"  - {p}" for p in audit.problems]
    return "\n".join(lines)


def cli_audit(argv: list[str]) -> int:
    """Entry point of `python -m echocem audit`; returns the exit code (0 ok, 1 changed, 2 unreadable)."""
    parser = argparse.ArgumentParser(prog="python -m echocem audit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("submission", help="the submission CSV (its manifest.json is looked up beside it)")
    parser.add_argument("--manifest", help="the manifest, when it is not beside the CSV")
    parser.add_argument("--root", help="the repository root (default: found from the manifest's paths)")
    args = parser.parse_args(argv)
    try:
        audit = audit_submission(args.submission, args.manifest, args.root)
    except EchoCemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_audit(audit))
    return 0 if audit.ok else 1
