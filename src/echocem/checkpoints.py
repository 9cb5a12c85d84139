"""Resumable training checkpoints, shared by every training loop of the package.

A checkpoint is one torch file (written by atomic rename, so a kill leaves the
previous one) tagged with its format and the fingerprint of the run's config and
inputs: a rerun with the same fingerprint resumes from it, anything else starts over.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from echocem.io import EchoCemError, atomic_path

log = logging.getLogger(__name__)


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of a module's weights on the CPU (under a torch.compile wrapper: the module's own)."""
    module = getattr(module, "_orig_mod", module)
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def load_checkpoint(path: Path, kind: str, fp: str) -> dict[str, Any] | None:
    """The checkpoint at `path` if it is of format `kind` and fingerprint `fp`; None otherwise."""
    if not path.is_file():
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn file cannot happen (atomic writes), a foreign one can
        raise EchoCemError(f"{path}: unreadable training checkpoint ({exc}); delete it to start over") from exc
    if not isinstance(ck, dict) or ck.get("format") != kind or ck.get("fingerprint") != fp:
        log.warning("%s: checkpoint of another configuration, starting over", path)
        return None
    return ck


def save_checkpoint(path: Path, kind: str, fp: str, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"format": kind, "fingerprint": fp, **state}, tmp)
