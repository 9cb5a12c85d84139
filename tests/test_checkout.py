"""The checkout's locks and the record's repair after a run killed while writing dvc.lock."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys

import pytest

from echocem.checkout import (LOCK_BEFORE_WRITE, TOKEN_ENV, JobLock, describe_holder, guarded_lock_write,
                              repair_lock)
from echocem.io import EchoCemError, save_json

LOCK_TEXT = "schema: '2.0'\nstages:\n  a:\n    cmd: x\n"


def test_a_dvc_lock_cut_by_a_kill_is_restored_from_its_copy(tmp_path):
    (tmp_path / "dvc.lock").write_text(LOCK_TEXT)
    with pytest.raises(KeyboardInterrupt):
        with guarded_lock_write(tmp_path):
            (tmp_path / "dvc.lock").write_text("schema: '2.0'\nstages:\n  a:\n    cm")  # DVC stopped mid-write
            raise KeyboardInterrupt  # stands for the kill: the copy stays
    assert (tmp_path / LOCK_BEFORE_WRITE).is_file()
    note = repair_lock(tmp_path)
    assert note and "restored the record from before that write" in note
    assert (tmp_path / "dvc.lock").read_text() == LOCK_TEXT
    assert not (tmp_path / LOCK_BEFORE_WRITE).exists()


def test_a_finished_write_leaves_no_copy_and_nothing_to_repair(tmp_path):
    (tmp_path / "dvc.lock").write_text(LOCK_TEXT)
    with guarded_lock_write(tmp_path):
        (tmp_path / "dvc.lock").write_text(LOCK_TEXT + "  b:\n    cmd: y\n")
    assert not (tmp_path / LOCK_BEFORE_WRITE).exists()
    assert repair_lock(tmp_path) is None
    assert "b:" in (tmp_path / "dvc.lock").read_text()


def test_an_intact_lock_beside_a_stale_copy_is_kept(tmp_path):
    """Killed after DVC finished writing, before the copy was removed: the new record stands."""
    (tmp_path / "dvc.lock").write_text(LOCK_TEXT)
    (tmp_path / LOCK_BEFORE_WRITE).parent.mkdir(parents=True)
    (tmp_path / LOCK_BEFORE_WRITE).write_text("schema: '2.0'\nstages: {}\n")
    assert repair_lock(tmp_path) is None
    assert (tmp_path / "dvc.lock").read_text() == LOCK_TEXT


def _hold_dvc_lock(root):
    path = root / ".dvc" / "tmp" / "lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+")
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    fh.seek(0)
    fh.truncate()
    fh.write(f" {os.getpid()}\n")
    fh.flush()
    return fh


def test_a_job_of_another_run_records_nothing(tmp_path, monkeypatch):
    held = _hold_dvc_lock(tmp_path)
    try:
        save_json(tmp_path / ".dvc" / "tmp" / "echocem" / "run.json", {"pid": os.getpid(), "token": "theirs"})
        monkeypatch.setenv(TOKEN_ENV, "mine")
        with pytest.raises(EchoCemError, match=r"this checkout is busy: pid \d+ .*this job does not belong"):
            with JobLock(tmp_path):
                pass
        monkeypatch.setenv(TOKEN_ENV, "theirs")
        with JobLock(tmp_path):  # a job of the run holding the checkout
            pass
    finally:
        held.close()


def test_a_job_whose_run_is_gone_takes_the_checkout_itself(tmp_path, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    probe = ("import fcntl, sys\nf = open(sys.argv[1], 'a+')\n"
             "try:\n    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(3)\n")
    lock = str(tmp_path / ".dvc" / "tmp" / "lock")
    with JobLock(tmp_path):  # while it records, no other process can take the checkout
        assert subprocess.run([sys.executable, "-c", probe, lock]).returncode == 3
        assert f"pid {os.getpid()}" in describe_holder(tmp_path)
    assert subprocess.run([sys.executable, "-c", probe, lock]).returncode == 0
