"""One run at a time per checkout, whichever tool starts it.

DVC already refuses a second `dvc repro` (or any writing DVC command) while
one runs: it holds `.dvc/tmp/lock` for its whole run. A Snakemake run takes the
very same lock, through DVC, for its whole run (`hold`), so `dvc repro`,
`dvc commit` and a second Snakemake are all refused while it runs, and it is
refused while they run. The lock is an OS file lock: a killed run leaves
nothing to clean up, and the next run starts without a manual step.

The run's jobs record their stages in dvc.lock while the run holds the lock
(echocem.stage_job): they prove they belong to it with the token written to
`.dvc/tmp/echocem/run.json` and passed to them in ECHOCEM_RUN_TOKEN.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from echocem.dag import MEMO_DIR
from echocem.io import EchoCemError, save_json

TOKEN_ENV = "ECHOCEM_RUN_TOKEN"
RUN_FILE = MEMO_DIR / "run.json"
DVC_LOCK = Path(".dvc") / "tmp" / "lock"
RECORD_LOCK = MEMO_DIR / "record.lock"


def _cmdline(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def describe_holder(root: Path) -> str:
    """Who holds the checkout, in words, from the lock file DVC writes (' <pid>')."""
    try:
        pid = int((root / DVC_LOCK).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return "another DVC or Snakemake run holds .dvc/tmp/lock"
    cmd = _cmdline(pid)
    return f"pid {pid} ({cmd})" + " holds .dvc/tmp/lock" if cmd else f"pid {pid} holds .dvc/tmp/lock"


@dataclass
class HeldCheckout:
    """The DVC repo lock held by this process for a whole run."""

    root: Path
    lock: object  # dvc.lock.Lock
    token: str

    def release(self) -> None:
        if getattr(self.lock, "is_locked", False):
            self.lock.unlock()


def hold(root: str | Path = ".") -> HeldCheckout:
    """Take the checkout for a run (the Snakefile's onstart); EchoCemError if it is taken."""
    from dvc.lock import LockError
    from dvc.repo import Repo

    root = Path(root).resolve()
    repo = Repo(str(root))
    lock = repo.lock
    try:
        lock.lock()
    except LockError as exc:
        raise EchoCemError(f"this checkout is busy: {describe_holder(root)}. One run at a time: wait for it "
                           "to end (or stop it), then start again.") from exc
    token = secrets.token_hex(16)
    save_json(root / RUN_FILE, {"pid": os.getpid(), "host": socket.gethostname(), "token": token,
                                "cmd": " ".join(sys.argv)})
    os.environ[TOKEN_ENV] = token  # inherited by every job this run starts
    return HeldCheckout(root=root, lock=lock, token=token)


def run_record(root: Path) -> dict | None:
    try:
        return json.loads((root / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def record_lock(root: str | Path, exclusive: bool) -> Iterator[None]:
    """Between the jobs of a run: one writes dvc.lock (exclusive) while none reads it (shared).

    Each write replaces the whole file (`updated_lockfile`), so no reader sees half of
    one; the lock keeps writers from dropping each other's entries, and a job's reads of
    DVC's index from mixing two versions of the record.
    """
    path = Path(root) / RECORD_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# the copy of dvc.lock `updated_lockfile` writes beside it: .dvc.lock.<random>.tmp
LOCK_COPY_PREFIX, LOCK_COPY_SUFFIX = ".dvc.lock.", ".tmp"
UNFINISHED_LOCK_WRITES = f"{LOCK_COPY_PREFIX}*{LOCK_COPY_SUFFIX}"  # those a killed job left


def remove_unfinished_lock_writes(root: str | Path) -> list[str]:
    """Delete the copies of dvc.lock that killed jobs left unfinished (names returned).

    Call with the checkout held and no job running (a run's start): dvc.lock itself
    was never touched by them."""
    left = sorted(Path(root).glob(UNFINISHED_LOCK_WRITES))
    for path in left:
        path.unlink(missing_ok=True)
    return [path.name for path in left]


@contextlib.contextmanager
def updated_lockfile(repo) -> Iterator:
    """DVC's own Lockfile, bound to a copy of dvc.lock that replaces the file in one rename.

    DVC rewrites dvc.lock in place (truncate, then dump): a job killed in the middle left a
    cut file that every DVC command then refused ("dvc.lock is invalid"). Here DVC edits a
    copy and os.replace swaps it in, so a reader, or a kill at any moment, finds either the
    record before the edit or the record after it. Written here because DVC has no atomic
    write of its lock file. Take `record_lock(exclusive=True)` around it: two writers would
    each start from the same copy, and the second would drop the first one's entry.
    """
    from dvc.dvcfile import Lockfile

    final = Path(repo.root_dir) / "dvc.lock"
    # not io.atomic_path: DVC deletes the lock file when its last stage goes, and that must carry over.
    # Same file system as dvc.lock; a kill leaves it behind, the next run removes it (remove_unfinished_lock_writes)
    fd, name = tempfile.mkstemp(prefix=LOCK_COPY_PREFIX, suffix=LOCK_COPY_SUFFIX, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if final.is_file():
            shutil.copy2(final, tmp)
        else:
            tmp.unlink()  # DVC starts a new lock file
        yield Lockfile(repo, str(tmp))
        if tmp.exists():
            os.replace(tmp, final)
        else:  # DVC deletes a lock file left with no stage
            final.unlink(missing_ok=True)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def repo_of_run(root: str | Path) -> Iterator:
    """A DVC Repo for a process working inside a run that holds the checkout.

    DVC's commands take the repo lock through their Repo object (and its
    stage operations check that it is held); here the run (this process, its
    Snakemake main process, or the `dvc repro` that started this stage) holds
    the real one, so the Repo gets DVC's own no-op lock instead: repo-level
    commands take it as usual, stage-level work goes inside `with repo.lock:`.
    Callers must know the run holds the checkout (`JobLock`, `hold`, `inside_run`).
    """
    from dvc.lock import LockNoop
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        repo.lock = LockNoop()
        with record_lock(root, exclusive=False):
            repo.index  # DVC reads dvc.yaml and dvc.lock now, while no job writes it
        yield repo


def inside_run(root: Path) -> bool:
    """True when this process is a job of the run holding the checkout: a Snakemake job
    (its token matches the run's) or a stage command started by `dvc repro` (DVC_STAGE)."""
    if os.environ.get("DVC_STAGE") and Path(os.environ.get("DVC_ROOT", "")).resolve() == root.resolve():
        return True
    record = run_record(root)
    token = os.environ.get(TOKEN_ENV)
    return bool(token and record and record.get("token") == token)


class JobLock:
    """What lets a job write dvc.lock: the run that started it still holds the
    checkout, or (started by hand, or its run died) the job takes it itself."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._fd: int | None = None

    def __enter__(self) -> "JobLock":
        path = self.root / DVC_LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self._check_owned_by_my_run()
            return self
        # Nobody holds the checkout: hold it while recording (as DVC would).
        os.ftruncate(fd, 0)
        os.write(fd, f" {os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _check_owned_by_my_run(self) -> None:
        if not inside_run(self.root):
            raise EchoCemError(f"this checkout is busy: {describe_holder(self.root)}; this job does not belong "
                               "to that run, so it records nothing")

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
