"""Record a finished Snakemake run in DVC (`dvc commit`) without disturbing Snakemake.

`dvc commit` moves each output into the cache and links it back (cache.type =
hardlink). When an output's bytes are already in the cache, because a
deterministic stage reproduced an earlier result, the workspace file becomes a
link to that older cache object and takes its older modification time. Snakemake
judges by modification times, so it would then see the stage as older than its
inputs and want to run it again. Every output's time is therefore noted before
the commit and put back after it; DVC only rehashes the few files concerned on
its next look, and the contents it recorded are unchanged.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterable

from echocem.dag import Stage, finished_stages, lock_is_current


def output_mtimes(paths: Iterable[str | Path]) -> dict[Path, int]:
    """Modification time (ns) of every file and folder at or below `paths`."""
    times: dict[Path, int] = {}
    for top in map(Path, paths):
        if top.is_dir():
            for folder, _, files in os.walk(top):
                times[Path(folder)] = os.stat(folder).st_mtime_ns
                for name in files:
                    path = Path(folder) / name
                    times[path] = path.stat().st_mtime_ns
        elif top.exists():
            times[top] = top.stat().st_mtime_ns
    return times


def restore_mtimes(times: dict[Path, int]) -> list[Path]:
    """Put back the noted times where they changed; returns the paths reset.

    Files first, then folders deepest first: setting a file's time leaves its
    folder's alone, and a folder's own time is what DVC's relinking changed.
    """
    reset = []
    for path in sorted(times, key=lambda p: (p.is_dir(), -len(p.parts))):
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if st.st_mtime_ns != times[path]:
            os.utime(path, ns=(st.st_atime_ns, times[path]))
            reset.append(path)
    return reset


def commit_run(stages: dict[str, Stage], root: str | Path = ".") -> list[str]:
    """`dvc commit` every stage whose outputs exist, keeping output times as they were.

    Does nothing (and starts no DVC) when dvc.lock is already newer than every
    output. Returns the stages committed.
    """
    root = Path(root)
    if lock_is_current(stages, root):
        return []
    names = finished_stages(stages, root)
    if not names:
        return []
    times = output_mtimes(root / out for name in names for out in stages[name].outs)
    subprocess.run([sys.executable, "-m", "dvc", "commit", "--force", "--quiet", *names], cwd=root, check=True)
    restore_mtimes(times)
    # dvc.lock newer than every output, as after any run: lock_is_current() holds
    os.utime(root / "dvc.lock")
    return names
