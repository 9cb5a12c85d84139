"""Process-level set-up shared by the stage entry scripts: errors, seeds, threads, device."""
from __future__ import annotations

import functools
import os
import random
import sys
from typing import Any, Callable

import numpy as np

from echocem.io import EchoCemError


def stage_main(func: Callable[[], None]) -> Callable[[], None]:
    """Decorate a stage's `main`: user errors print one clear message and exit 2.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(func)
    def wrapper() -> None:
        try:
            func()
        except EchoCemError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def start_stage(params_path: str, stage: str) -> dict:
    """What every stage does first: load (and validate) params, seed everything
    from `seed`, cap threads at the stage's share (execution.threads), and send
    progress lines to the log (stderr). Returns the params."""
    import logging

    from echocem.params import load_params

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params(params_path)
    seed_everything(int(params["seed"]))
    configure_threads(stage_threads(params, stage))
    return params


def stage_threads(params: dict, stage: str) -> int:
    """Threads this stage's process may use (see `thread_count`)."""
    threads = params["execution"]["threads"]
    return thread_count(threads.get(stage, threads["default"]))


def derived_seed(seed: int, *parts: Any) -> int:
    """A per-task seed from the global one (stable across processes and machines)."""
    import hashlib
    import json

    h = hashlib.sha256(json.dumps([int(seed), *map(str, parts)]).encode()).digest()
    return int.from_bytes(h[:4], "little")


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and (if imported) torch; return a NumPy Generator."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    if "torch" in sys.modules:
        import torch

        torch.manual_seed(seed)
    return np.random.default_rng(seed)


def thread_count(default: int = 1) -> int:
    """Threads this process may use: ECHOCEM_THREADS (set by the Snakefile from the
    rule's `threads`), else `default` (params execution.threads for direct/DVC runs)."""
    value = os.environ.get("ECHOCEM_THREADS")
    if value is None:
        return max(1, int(default))
    try:
        n = int(value)
    except ValueError as exc:
        raise EchoCemError(f"environment ECHOCEM_THREADS={value!r} is not an integer") from exc
    if n < 1:
        raise EchoCemError(f"environment ECHOCEM_THREADS={value!r} must be >= 1")
    return n


def configure_threads(n: int) -> None:
    """Cap BLAS/OpenMP/torch threads so parallel Snakemake jobs do not oversubscribe cores."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)


def resolve_device(preference: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cpu'/'cuda' force it."""
    import torch

    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda" and not torch.cuda.is_available():
        raise EchoCemError("params execution.device is 'cuda' but no CUDA device is available")
    if preference not in ("cpu", "cuda"):
        raise EchoCemError(f"params execution.device: unknown device {preference!r}")
    return preference
