"""`python -m echocem audit`: a submission built by the pipeline passes; any later change is named.

The tests change a file of the shared tiny run and put it back before they end.
Files of a run are hard links into the DVC cache (.dvc/config: cache type
hardlink), so a change writes a new file rather than editing the bytes in place,
which would corrupt the cache behind DVC's back.
"""
from __future__ import annotations

import os
import re
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.pipeline import run

pytestmark = pytest.mark.slow

SUBMISSION = "submission/submission.csv"


def audit(root: Path, *args: str):
    return run([sys.executable, "-m", "echocem", "audit", SUBMISSION, *args], root, check=False)


@contextmanager
def replaced(path: Path, content: bytes) -> Iterator[None]:
    """`path` holds `content` (a new file, not an edit in place) until the block ends."""
    original, stat = path.read_bytes(), path.stat()
    path.unlink()
    path.write_bytes(content)
    try:
        yield
    finally:
        path.unlink()
        path.write_bytes(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def one_byte_changed(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    return bytes(data)


def test_a_fresh_submission_passes_and_the_chain_is_printed(tiny_run):
    proc = audit(tiny_run)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1].startswith("OK: ")
    chain = next(line for line in lines if line.startswith("chain: "))
    assert chain.startswith("chain: raw data data/raw/synthetic (written by simulate) -> simulate -> ingest")
    assert chain.endswith("-> submission -> submission/submission.csv")
    assert "models/unet.pt" in proc.stdout and "<- this submission" in proc.stdout


@pytest.mark.parametrize("model", ["models/unet_final.pt", "models/postproc_unet.pt"])
def test_one_byte_of_a_model_changed_fails_naming_the_file(tiny_run, model):
    path = tiny_run / model
    with replaced(path, one_byte_changed(path)):
        proc = audit(tiny_run)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    problems = [line for line in proc.stdout.splitlines() if line.startswith("  - ")]
    assert problems and all(model in p for p in problems), problems
    assert "file replaced after the submission was built" in problems[0]
    assert audit(tiny_run).returncode == 0, "restored: the audit passes again"


def test_one_params_value_changed_fails_naming_the_key(tiny_run):
    path = tiny_run / "params.yaml"
    params = yaml.safe_load(path.read_text())
    before = params["submission"]["batch_size"]
    params["submission"]["batch_size"] = before + 1
    with replaced(path, yaml.safe_dump(params, sort_keys=False).encode()):
        proc = audit(tiny_run)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"params.yaml: submission.batch_size changed from {before} to {before + 1}" in proc.stdout
    assert "FAILED: 1 problem(s)" in proc.stdout


def test_an_upstream_params_value_changed_fails_naming_the_key(tiny_run):
    """A key the submission stage does not read, but a stage of its chain does (unet)."""
    path = tiny_run / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["seed"] += 1
    with replaced(path, yaml.safe_dump(params, sort_keys=False).encode()):
        proc = audit(tiny_run)
    assert proc.returncode == 1
    assert "params.yaml: seed changed from" in proc.stdout


def test_an_edited_submission_fails(tiny_run):
    path = tiny_run / SUBMISSION
    with replaced(path, path.read_bytes() + b"\n"):
        proc = audit(tiny_run)
    assert proc.returncode == 1
    assert f"{SUBMISSION}: md5" in proc.stdout and "the CSV was changed after it was built" in proc.stdout


def test_a_submission_without_manifest_cannot_be_audited(tmp_path):
    (tmp_path / "submission").mkdir()
    (tmp_path / SUBMISSION).write_text(",0,1\n")
    proc = audit(tmp_path)
    assert proc.returncode == 2
    assert "submission/manifest.json: no manifest beside the submission" in proc.stderr


def test_a_record_made_elsewhere_is_told_apart_from_changed_inputs(tiny_run):
    """dvc.lock recording other bytes for an output whose stage's code, inputs and params are
    unchanged (as when the record was made on another machine): "same inputs, different numbers"."""
    lock_path = tiny_run / "dvc.lock"
    lock = yaml.safe_load(lock_path.read_text())
    out = next(o for o in lock["stages"]["unet"]["outs"] if o["path"] == "data/predictions/unet_val.npz")
    out["md5"] = "0" * 32
    with replaced(lock_path, yaml.safe_dump(lock, sort_keys=False).encode()):
        proc = audit(tiny_run)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAILED" in proc.stdout and "same inputs, different numbers" in proc.stdout
    assert "inputs, params or code changed" not in proc.stdout.split("FAILED", 1)[1].splitlines()[0]
    # DVC's word for the recorded bytes: "not in cache" (no run here made them), or "modified"
    assert re.search(r"data/predictions/unet_val\.npz: (modified|not in cache) although stage unet's code, "
                     r"inputs and params match", proc.stdout), proc.stdout
    assert audit(tiny_run).returncode == 0


def test_the_audit_is_refused_while_a_run_holds_the_checkout(tiny_run):
    """The record is being written: the audit says so rather than answer from half of it."""
    import fcntl

    with open(tiny_run / ".dvc" / "tmp" / "lock", "a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = audit(tiny_run)
    assert proc.returncode == 2 and "this checkout is busy" in proc.stderr
