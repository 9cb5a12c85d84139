"""The checkout's locks, and dvc.lock written whole or not at all (a kill mid-write included)."""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from echocem.checkout import TOKEN_ENV, JobLock, describe_holder, remove_unfinished_lock_writes, updated_lockfile
from echocem.io import EchoCemError, save_json

LOCK_TEXT = "schema: '2.0'\nstages:\n  a:\n    cmd: x\n"


def _dvc_repo(root):
    from dvc.repo import Repo

    Repo.init(str(root), no_scm=True)
    (root / "dvc.lock").write_text(LOCK_TEXT)
    return root


def test_a_job_killed_while_writing_dvc_lock_leaves_the_record_as_it_was(tmp_path):
    """DVC rewrites its lock file in place; the job's write goes to a copy, so a kill -9 in
    the middle of it leaves dvc.lock whole and readable by DVC itself."""
    root = _dvc_repo(tmp_path)
    cut_short = """
import os, signal, sys
from dvc.repo import Repo
from echocem.checkout import updated_lockfile
with Repo(sys.argv[1]) as repo, updated_lockfile(repo) as lock:
    with open(lock.path, "w") as fh:
        fh.write("schema: '2.0'\\nstages:\\n  a:\\n    cm")  # the rewrite, cut short
    os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", cut_short, str(root)], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (root / "dvc.lock").read_text() == LOCK_TEXT
    left = list(root.glob(".dvc.lock.*.tmp"))
    assert len(left) == 1 and left[0].read_text().endswith("    cm"), "the unfinished copy is what the kill left"
    assert remove_unfinished_lock_writes(root) == [left[0].name]  # what the next run's start does
    assert not left[0].exists() and (root / "dvc.lock").read_text() == LOCK_TEXT
    from dvc.dvcfile import Lockfile
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        assert Lockfile(repo, str(root / "dvc.lock")).load()["stages"] == {"a": {"cmd": "x"}}  # DVC's own reader


def test_a_finished_write_replaces_dvc_lock_and_leaves_no_copy(tmp_path):
    from types import SimpleNamespace

    from dvc.repo import Repo

    root = _dvc_repo(tmp_path)
    (root / "dvc.lock").write_text(LOCK_TEXT + "  b:\n    cmd: y\n")
    with Repo(str(root)) as repo:
        with updated_lockfile(repo) as lock:
            lock.remove_stage(SimpleNamespace(name="b"))
            assert "b:" in (root / "dvc.lock").read_text(), "dvc.lock changes only when the write is complete"
        assert (root / "dvc.lock").read_text() == LOCK_TEXT
        with updated_lockfile(repo) as lock:  # DVC deletes a lock file whose last stage goes
            lock.remove_stage(SimpleNamespace(name="a"))
    assert not (root / "dvc.lock").exists()
    assert not list(root.glob(".dvc.lock.*")), "no copy left behind"


def test_a_failed_write_leaves_dvc_lock_as_it_was(tmp_path):
    from dvc.repo import Repo

    root = _dvc_repo(tmp_path)
    with Repo(str(root)) as repo, pytest.raises(RuntimeError):
        with updated_lockfile(repo) as lock:
            Path(lock.path).write_text("half")
            raise RuntimeError("the job failed while writing")
    assert (root / "dvc.lock").read_text() == LOCK_TEXT
    assert not list(root.glob(".dvc.lock.*"))


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
