"""`python -m echocem audit SUBMISSION.csv`: prove where a submission came from.

The submission stage writes a manifest beside the CSV (echocem.provenance):
the CSV's md5, the md5 of every input (models, test data, normalisation), the
params values it read, the code version. dvc.lock records every stage's deps,
params and outs. The audit checks, and names whatever differs:

1. the CSV against the manifest (was the file edited after it was built?);
2. each input the manifest names against the file on disk (was a model replaced?);
3. the manifest's params against params.yaml, key by key, and the manifest's
   own params md5 (was the manifest edited?);
4. the manifest against dvc.lock's submission stage (same CSV, same inputs,
   same params: the record describes this submission);
5. every stage upstream of the submission, with DVC's own status: its code,
   data inputs, params and outputs against its record, and its inputs against
   what the stages producing them recorded (a record mixing two runs).

What changed is told apart: "inputs, params or code changed" (a stage's record
no longer matches what it would read now) from "same inputs, different
numbers" (a stage's deps, params and code match its record but its outputs do
not: the record was made on another machine, where floats differ, or the
stage is not deterministic).

Exit 0: every check passed; 1: something changed (each problem on one line);
2: the submission, its manifest or the pipeline's record cannot be read.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from echocem.dag import covers
from echocem.io import EchoCemError, file_md5
from echocem.params import get_key, read_yaml_mapping
from echocem.provenance import code_version, load_manifest, params_md5
from echocem.records import StageRecord, read_records

SAME_INPUTS = "same inputs, different numbers"
CHANGED_INPUTS = "inputs, params or code changed"


class _Missing:
    def __repr__(self) -> str:
        return "<absent>"


MISSING: Any = _Missing()


@dataclass
class Audit:
    """What the audit found: problems fail it, warnings and chain lines inform."""

    submission: str
    md5: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    chain: list[str] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)  # SAME_INPUTS and/or CHANGED_INPUTS
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


def describe_value(value: Any) -> str:
    return "<absent>" if value is MISSING else json.dumps(value, sort_keys=True)


def value_changes(old: Any, new: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old, new) for every leaf that differs; a missing side is MISSING."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        changes = []
        for k in sorted(set(old) | set(new), key=str):
            sub = f"{key}.{k}" if key else str(k)
            changes.extend(value_changes(old.get(k, MISSING), new.get(k, MISSING), sub))
        return changes
    return [] if old == new and type(old) is type(new) else [(key, old, new)]


def find_root(submission: Path, recorded: str | None) -> Path:
    """The repository root the manifest's paths are relative to: what is left of the
    submission's absolute path once its recorded path is cut off; failing that, the
    nearest parent holding dvc.yaml."""
    sub = submission.resolve()
    if recorded:
        parts = Path(recorded).parts
        if len(parts) < len(sub.parts) and sub.parts[-len(parts):] == parts:
            return Path(*sub.parts[: -len(parts)])
    for parent in sub.parents:
        if (parent / "dvc.yaml").is_file():
            return parent
    return Path.cwd()


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
            audit.kinds.add(CHANGED_INPUTS)
            audit.problems.append(
                f"{params_file}: {dotted} changed from {describe_value(old)} to {describe_value(new)} ({why})")
        audit.checked += 1


def check_manifest(audit: Audit, manifest: dict, root: Path, params: dict) -> None:
    """Steps 1-3: the CSV, every recorded input and the params against the files on disk."""
    sub = manifest.get("submission", {})
    if sub.get("md5") != audit.md5:
        audit.problems.append(f"{audit.submission}: md5 {short(audit.md5)} != recorded {short(sub.get('md5'))} in "
                              "the manifest (the CSV was changed after it was built)")
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
            audit.kinds.add(CHANGED_INPUTS)
            audit.problems.append(f"{path}: md5 {short(now)} != recorded {short(recorded)} "
                                  "(file replaced after the submission was built)")
        audit.checked += 1
    rec = manifest.get("params", {})
    values = rec.get("values", {})
    if params_md5(values) != rec.get("md5"):
        audit.problems.append("manifest: the recorded params values do not match their recorded md5 "
                              "(the manifest was edited)")
    check_params(audit, rec.get("file", "params.yaml"), values, params, "recorded when the submission was built")


def check_against_record(audit: Audit, manifest: dict, stage: StageRecord) -> None:
    """Step 4: the manifest and dvc.lock's record of the submission stage describe the same run."""
    sub_path = manifest.get("submission", {}).get("path", audit.submission)
    out = stage.file(sub_path, "out")
    if out is None or out.md5 is None:
        audit.problems.append(f"dvc.lock: stage {stage.name} has no record of {sub_path}")
    elif out.md5 != audit.md5:
        audit.problems.append(f"dvc.lock: stage {stage.name} recorded {sub_path} md5 {short(out.md5)}, this file "
                              f"is {short(audit.md5)} (the record belongs to another run)")
    audit.checked += 1
    for role, entry in sorted(manifest.get("inputs", {}).items()):
        path, md5 = entry.get("path"), entry.get("md5")
        dep = stage.file(path, "dep")
        if dep is not None:
            if dep.md5 != md5:
                audit.problems.append(f"{path}: manifest md5 {short(md5)} != dvc.lock {short(dep.md5)} "
                                      f"(stage {stage.name} was recorded with another file)")
            audit.checked += 1
        elif not any(f.kind == "dep" and covers(f.path, path) for f in stage.files):
            audit.problems.append(f"dvc.lock: stage {stage.name} does not list input {path} ({role}) among its deps")
        # an input inside a recorded folder: DVC's status of that folder (step 5) and step 2 cover it
    values = manifest.get("params", {}).get("values", {})
    for key, value in stage.params.items():
        recorded = _current(values, key) if key.split(".")[0] in values else MISSING
        if recorded is MISSING:
            continue  # a key the manifest does not record (e.g. seed): checked in the chain
        for dotted, old, new in value_changes(value, recorded, key):
            audit.problems.append(f"dvc.lock: stage {stage.name} ran with {dotted}={describe_value(old)}, "
                                  f"the manifest records {describe_value(new)}")
        audit.checked += 1


def _producer(records: Mapping[str, StageRecord], path: str) -> tuple[StageRecord, str] | None:
    """(stage, output) holding `path`."""
    for rec in records.values():
        for f in rec.files:
            if f.kind == "out" and covers(f.path, path):
                return rec, f.path
    return None


def _producers_inside(records: Mapping[str, StageRecord], folder: str) -> list[str]:
    """Stages whose outputs lie inside a dep folder (e.g. the models of a matrix stage)."""
    return sorted({rec.name for rec in records.values() for f in rec.files
                   if f.kind == "out" and covers(folder, f.path) and f.path != folder})


def check_chain(audit: Audit, records: Mapping[str, StageRecord], target: StageRecord, params: dict,
                params_file: str) -> None:
    """Step 5: every stage upstream of the submission, as DVC sees it now; prints the chain."""
    order = [n for n in records if n in target.upstream] + [target.name]
    for name in order:
        rec = records[name]
        if rec.is_data:
            audit.chain.append(f"[{name}]  raw data added with `dvc add`")
        else:
            audit.chain.append(f"[{name}]" + (f"  params: {', '.join(rec.params)}" if rec.params else ""))
        if not rec.recorded:
            audit.kinds.add(CHANGED_INPUTS)
            audit.problems.append(f"dvc.lock: stage {name} is not recorded (it never finished a run)")
            continue
        code = [f for f in rec.files if f.is_code]
        for f in rec.files:
            if f.is_code:
                continue
            if f.kind == "dep":
                found = _producer(records, f.path)
                inside = [] if found else _producers_inside(records, f.path)
                origin = (f"from {found[0].name}" if found else f"from {', '.join(inside)}" if inside
                          else "raw data (not versioned by DVC)")
                if found and found[1] == f.path:
                    up = found[0].file(f.path, "out")
                    if up and up.md5 and up.md5 != f.md5 and f.state == "match":
                        audit.problems.append(f"dvc.lock: stage {name} used {f.path} md5 {short(f.md5)} but "
                                              f"{found[0].name} recorded {short(up.md5)} (the record mixes runs)")
                if found is None and not inside:
                    audit.warnings.append(f"{f.path}: raw data not versioned by DVC (no stage and no .dvc file): "
                                          f"`dvc add {f.path}`")
                audit.chain.append(f"    in   {f.path:<44} {short(f.md5):<16} {origin}")
            else:
                mark = "  <- this submission" if f.path == audit.submission and f.md5 == audit.md5 else ""
                audit.chain.append(f"    out  {f.path:<44} {short(f.md5):<16}{mark}")
        if code:
            changed = [f.path for f in code if f.state != "match"]
            audit.chain.append(f"    code {len(code)} files" + (f", changed: {', '.join(changed)}" if changed
                                                                 else ", unchanged"))
        _stage_changes(audit, rec, params, params_file)
    heads = [records[n].name for n in order if records[n].is_data]
    made = [f.path for n in order for f in records[n].files
            if f.kind == "out" and f.path.startswith("data/raw/") and not records[n].is_data]
    head = " + ".join(heads) or " + ".join(f"{p} (written by simulate)" for p in made) or "(none recorded)"
    audit.chain.insert(0, "chain: " + " -> ".join([f"raw data {head}",
                                                   *[n for n in order if not records[n].is_data], audit.submission]))


def _stage_changes(audit: Audit, rec: StageRecord, params: dict, params_file: str) -> None:
    """DVC's status of one stage, one problem per changed file or key, each told apart."""
    inputs_changed = bool(rec.changed_params) or any(f.state != "match" for f in rec.files if f.kind == "dep")
    for f in rec.files:
        audit.checked += 1
        if f.state == "match" or f.path in audit.changed_paths:
            continue
        audit.changed_paths.add(f.path)
        if f.kind == "dep":
            what = "code" if f.is_code else "input"
            audit.kinds.add(CHANGED_INPUTS)
            audit.problems.append(f"{f.path}: {f.state} since stage {rec.name} was recorded ({what} of the stage)")
        elif inputs_changed:
            audit.problems.append(f"{f.path}: {f.state} (output of stage {rec.name}, whose inputs changed too)")
        else:
            audit.kinds.add(SAME_INPUTS)
            audit.problems.append(f"{f.path}: {f.state} although stage {rec.name}'s code, inputs and params match "
                                  f"its record ({SAME_INPUTS}: recorded on another machine, or not deterministic)")
    for other in rec.other:
        audit.kinds.add(CHANGED_INPUTS)
        audit.problems.append(f"dvc.yaml: stage {rec.name}: {other}")
    check_params(audit, params_file, rec.params, params, f"stage {rec.name} ran with the recorded value")


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
    audit = Audit(submission=recorded_sub or sub.as_posix(), md5=file_md5(sub))
    params_file = manifest.get("params", {}).get("file", "params.yaml")
    params = read_yaml_mapping(root / params_file)

    check_manifest(audit, manifest, root, params)
    if not (root / "dvc.yaml").is_file():
        audit.problems.append(f"{root / 'dvc.yaml'}: not found: the chain to the submission cannot be checked")
        return audit
    records = read_records(root)
    stage = next((r for r in records.values() if r.file(audit.submission, "out")), None)
    if stage is None:
        audit.problems.append(f"dvc.yaml: no stage declares {audit.submission} as an output")
        return audit
    check_against_record(audit, manifest, stage)
    check_chain(audit, records, stage, params, params_file)
    _code_notes(audit, manifest, root)
    return audit


def _code_notes(audit: Audit, manifest: dict, root: Path) -> None:
    built = manifest.get("code", {})
    commit, dirty = built.get("git_commit"), built.get("git_dirty")
    now = code_version(root)
    if commit is None:
        audit.warnings.append("manifest: no git commit recorded (built outside a git repository)")
    elif dirty:
        audit.warnings.append(f"built from commit {commit[:12]} with uncommitted changes: the commit alone does not "
                              "reproduce it")
    if commit and now["git_commit"] and now["git_commit"] != commit:
        audit.warnings.append(f"HEAD is now {now['git_commit'][:12]}, the submission was built at {commit[:12]}")


def format_audit(audit: Audit) -> str:
    """The report printed by the command: chain, warnings, verdict, problems."""
    lines = [f"audit of {audit.submission} (md5 {audit.md5})"]
    lines += audit.chain
    lines += [f"warning: {w}" for w in audit.warnings]
    if audit.ok:
        lines.append(f"OK: {audit.checked} hashes and params values match the manifest, dvc.lock and the files on disk")
    else:
        kinds = " and ".join(sorted(audit.kinds)) or "the record does not describe this submission"
        lines.append(f"FAILED: {len(audit.problems)} problem(s): {kinds}")
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
