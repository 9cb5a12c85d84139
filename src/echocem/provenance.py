"""Provenance: the code version and the manifest written beside a submission.

Manifest format (JSON, keys sorted, written by `write_manifest`), version 1:

    {
      "format": "echocem-manifest/1",
      "submission": {"path": "submission/submission.csv", "md5": "<md5 of the CSV bytes>",
                     "rows": <data rows>, "columns": 43520, "validated": true},
      "inputs": {"<role>": {"path": "<path relative to the repo root>", "md5": "<md5>"}, ...},
      "params": {"file": "params.yaml", "sections": ["rules", "submission"],
                 "values": {"rules": {...}, "submission": {...}},
                 "md5": "<md5 of canonical_json(values)>"},
      "code": {"git_commit": "<40 hex>" | null, "git_dirty": true | false | null},
      "packages": {"python": "3.11.x", "numpy": "...", "torch": "...", ...}
    }

- every md5 of a file is the MD5 of its bytes (`echocem.io.file_md5`), the
  digest DVC records for a file in dvc.lock;
- roles of the submission stage's inputs: "unet_model" (models/unet.pt),
  "postproc_model" (models/postproc_unet.pt), "test_data"
  (data/ingested/test.npz), "normalization" (data/prepared/normalization.json);
- `canonical_json` is `json.dumps(values, sort_keys=True, separators=(",", ":"))`
  encoded as UTF-8, so the params md5 can be recomputed from params.yaml;
- `git_commit` is the HEAD commit of the repository the stage runs in,
  `git_dirty` whether tracked files that decide results (DECIDING_PATHS: code,
  params, dvc.yaml, packages, vendored data) differ from it; both null without git;
- no time stamps: the same inputs, params and code give the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from echocem.io import EchoCemError, file_md5, save_json

MANIFEST_FORMAT = "echocem-manifest/1"
# distributions whose versions decide the numbers in a submission
PACKAGES = ("numpy", "scipy", "torch", "segmentation-models-pytorch", "scikit-learn")


def _git(*args: str, cwd: Path) -> str | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


# What decides a stage's outputs besides its data: the code, the params, the pipeline's
# declaration, the pinned packages and the vendored data. Uncommitted changes there make
# the commit alone unable to reproduce a result; changes elsewhere (docs, tests, the
# run's own record and results kept in git) do not.
DECIDING_PATHS = ("src", "stages", "params.yaml", "dvc.yaml", "pyproject.toml", "third_party")


def code_version(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """{"git_commit": HEAD commit or None, "git_dirty": uncommitted changes to DECIDING_PATHS or None};
    never raises. `root` defaults to the working directory: stages run from the repository root."""
    cwd = Path(root) if root is not None else Path.cwd()
    commit = _git("rev-parse", "--verify", "HEAD", cwd=cwd)
    if commit is None:
        return {"git_commit": None, "git_dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no", "--", *DECIDING_PATHS, cwd=cwd)
    return {"git_commit": commit.strip(), "git_dirty": None if status is None else bool(status.strip())}


def package_versions() -> dict[str, str | None]:
    """Versions of Python and of the packages in PACKAGES (None when not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def canonical_json(values: Any) -> bytes:
    """The bytes hashed for the params md5: sorted keys, no spaces, UTF-8."""
    return json.dumps(values, sort_keys=True, separators=(",", ":")).encode("utf-8")


def params_md5(values: Mapping[str, Any]) -> str:
    return hashlib.md5(canonical_json(values)).hexdigest()


def repo_relative(path: str | os.PathLike) -> str:
    """A path as recorded in the manifest: relative to the working directory, POSIX style."""
    p = Path(path)
    if p.is_absolute():
        try:
            p = p.relative_to(Path.cwd())
        except ValueError:
            p = Path(os.path.relpath(p, Path.cwd()))
    return p.as_posix()


def build_manifest(
    submission_path: str | os.PathLike,
    rows: int,
    inputs: Mapping[str, str | os.PathLike],
    params: Mapping[str, Any],
    sections: tuple[str, ...] = ("rules", "submission"),
    params_file: str = "params.yaml",
    columns: int = 43520,
) -> dict[str, Any]:
    """The manifest of a validated submission (format in the module docstring).

    `inputs` maps a role to a file path; every file must exist. `params` is the
    whole validated params mapping; only `sections` are recorded and hashed.
    """
    sub = Path(submission_path)
    if not sub.is_file():
        raise EchoCemError(f"{sub}: submission file not found for the manifest")
    recorded_inputs = {}
    for role, path in sorted(inputs.items()):
        p = Path(path)
        if not p.is_file():
            raise EchoCemError(f"{p}: input {role!r} of the manifest not found")
        recorded_inputs[role] = {"path": repo_relative(p), "md5": file_md5(p)}
    missing = [s for s in sections if s not in params]
    if missing:
        raise EchoCemError(f"{params_file}: sections {missing} missing for the manifest")
    values = {s: params[s] for s in sorted(sections)}
    return {
        "format": MANIFEST_FORMAT,
        "submission": {
            "path": repo_relative(sub),
            "md5": file_md5(sub),
            "rows": int(rows),
            "columns": int(columns),
            "validated": True,
        },
        "inputs": recorded_inputs,
        "params": {"file": params_file, "sections": sorted(sections), "values": values, "md5": params_md5(values)},
        "code": code_version(),
        "packages": package_versions(),
    }


def write_manifest(path: str | os.PathLike, manifest: Mapping[str, Any]) -> None:
    """Write the manifest atomically as sorted, indented JSON."""
    if manifest.get("format") != MANIFEST_FORMAT:
        raise EchoCemError(f"{path}: not a manifest of format {MANIFEST_FORMAT}")
    save_json(path, manifest)


def load_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read a manifest; EchoCemError if it is missing or of another format."""
    from echocem.io import load_json

    manifest = load_json(path)
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise EchoCemError(f"{path}: not an EchoCem manifest (format {MANIFEST_FORMAT} expected)")
    return manifest
