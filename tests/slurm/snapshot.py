"""What a pipeline run left behind, in comparable form: md5 per output file, dvc.lock."""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from echocem.dag import load_pipeline
from echocem.io import file_md5

# The report stage's outputs show every stage's run time and the run date, so two
# runs never write the same bytes there by design; everything else must be identical.
VOLATILE = frozenset({"reports/index.html", "reports/summary.md"})
# Snakemake's mtime marker inside directory outputs (empty; its time is what counts)
TIMESTAMP = ".snakemake_timestamp"


def output_files(root: Path) -> list[Path]:
    """Every file of every declared output (outs, metrics, plots) of dvc.yaml."""
    files = []
    for stage in load_pipeline(root).values():
        for out in stage.outs:
            path = root / out
            if path.is_dir():
                files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.name != TIMESTAMP))
            else:
                files.append(path)
    return files


def output_hashes(root: Path, exclude: frozenset[str] = VOLATILE) -> dict[str, str]:
    """md5 of every output file, by path relative to root (missing files: 'missing')."""
    hashes = {}
    for f in output_files(root):
        rel = f.relative_to(root).as_posix()
        if rel not in exclude:
            hashes[rel] = file_md5(f) if f.exists() else "missing"
    return hashes


def lock_record(root: Path, exclude: frozenset[str] = VOLATILE) -> dict:
    """dvc.lock as data, without the hashes of the excluded outputs."""
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    for stage in lock["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] in exclude:
                for key in ("md5", "size", "hash", "nfiles"):
                    out.pop(key, None)
    return lock


def remove_run_results(root: Path) -> None:
    """Delete every output, dvc.lock, logs and Snakemake's records: as before any run."""
    for stage in load_pipeline(root).values():
        for out in stage.outs:
            path = root / out
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    for rel in ("dvc.lock",):
        (root / rel).unlink(missing_ok=True)
    for rel in ("logs", ".snakemake"):
        shutil.rmtree(root / rel, ignore_errors=True)
