"""A segmentation network trained end to end: the profile a params section selects,
a freshly seeded model, training with selection on the validation wells."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from echocem.runtime import derived_seed
from echocem.seg.accel import Accel
from echocem.seg.dataset import SegSet
from echocem.seg.loop import FitResult, fit
from echocem.seg.unet import unwrap


def new_model(model_cfg: Mapping[str, Any], seed: int) -> nn.Module:
    """A freshly initialised network; its initial weights depend on `seed` only."""
    from echocem.seg.unet import build_model

    torch.manual_seed(int(seed))
    return build_model(model_cfg)


@dataclass
class Trained:
    """A trained network (best epoch's weights loaded, on the training device) and its run."""

    model: nn.Module
    fit: FitResult
    accel: Accel


def train_segmenter(
    train: SegSet,
    val: SegSet | None,
    model_cfg: Mapping[str, Any],
    profile: Mapping[str, Any],
    epochs: int,
    seed: int,
    device: str,
    checkpoint_dir: Path | None = None,
    fp: str = "",
    desc: str = "unet",
    evaluate_start: bool = False,
    model: nn.Module | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> Trained:
    """Train a network on `train` (inputs on `device`), select its epoch on `val` (None: the last)."""
    accel = Accel.from_profile(profile, device)
    model = model if model is not None else new_model(model_cfg, seed)
    result = fit(model, train, val, profile, epochs, derived_seed(seed, "fit"), accel, checkpoint_dir, fp, desc,
                 evaluate_start=evaluate_start, on_epoch_end=on_epoch_end)
    base = unwrap(model)
    base.load_state_dict(result.best_state)
    base.eval()
    return Trained(model=base, fit=result, accel=accel)


def refit_epochs(selected_epochs: int, n_selected: int, n_refit: int) -> int:
    """Epochs of a refit on `n_refit` samples that take the optimizer steps the selected run took.

    The validation chose a step count (its epoch on `n_selected` training samples, the
    learning-rate schedule stretched over it); a refit on more samples for as many epochs
    would take more steps than were ever validated, and cost that much more.
    """
    if min(selected_epochs, n_selected, n_refit) < 1:
        raise ValueError(f"refit_epochs needs positive counts, got {selected_epochs}, {n_selected}, {n_refit}")
    return max(1, round(selected_epochs * n_selected / n_refit))
