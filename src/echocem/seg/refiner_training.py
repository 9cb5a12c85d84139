"""Training of the post-processing U-Net (the refiner of echocem.seg.postproc)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch

from echocem.seg.dataset import SegSet
from echocem.seg.postproc import build_refiner, refiner_config, refiner_inputs
from echocem.seg.segmenter import Trained, train_segmenter


def train_refiner(
    train: SegSet,
    train_probs: np.ndarray,
    val: SegSet,
    val_probs: np.ndarray,
    profile: Mapping[str, Any],
    seed: int,
    device: str,
    checkpoint_dir=None,
    fp: str = "",
    on_epoch_end=None,
) -> tuple[dict, Trained]:
    """Train the refiner on the `train` patches with their out-of-fold probabilities, select
    it on `val` with the first model's validation probabilities; epoch 0 (identity) is a
    candidate. Returns (config, the trained refiner)."""
    cfg = refiner_config(profile["model"], float(profile["model"]["prob_floor"]))
    train_x = train.with_inputs(refiner_inputs(train.x, np.asarray(train_probs, dtype=np.float32)))
    val_x = val.with_inputs(refiner_inputs(val.x, np.asarray(val_probs, dtype=np.float32)))
    torch.manual_seed(int(seed))
    refiner = build_refiner(cfg)
    return cfg, train_segmenter(
        train_x, val_x, cfg, profile, int(profile["train"]["epochs"]), seed, device, checkpoint_dir, fp,
        desc="postproc_unet", evaluate_start=True, model=refiner, on_epoch_end=on_epoch_end)
