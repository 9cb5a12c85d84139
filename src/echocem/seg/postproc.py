"""The post-processing U-Net: refines the first U-Net's class probabilities.

Its input is 4 channels: the normalised image (channel 0, where augmentation
applies gain/contrast/noise) and the first model's 3 class probabilities. It
is a residual on those probabilities: logits = log(p) + f(image, p), with the
last layer of f initialised to zero, so the untrained refiner returns p
exactly. Model selection (the untrained state scored as epoch 0) then keeps the
identity unless training beats it on the validation wells: refined >= U-Net.

It is trained on out-of-fold probabilities of the training wells, never on
predictions for the first model's own training patches (those are
over-confident and would teach it to trust the input blindly).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from echocem.io import EchoCemError
from echocem.seg.unet import (N_CLASSES, batched_predict, build_model, check_images, read_model_file,
                              save_model)

REFINER_FORMAT = "echocem-refiner/1"
IN_CHANNELS = 1 + N_CLASSES


class ResidualRefiner(nn.Module):
    """logits = log(max(p, eps)) + net([image, p]); net's last layer starts at zero."""

    def __init__(self, net: nn.Module, eps: float) -> None:
        super().__init__()
        self.net = net
        self.eps = float(eps)

    def zero_last_layer(self) -> None:
        head = self.net.unet.segmentation_head
        for m in head.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.zeros_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def head_is_zero(self) -> bool:
        """The last layer is all zeros: net(x) is exactly 0 and the refiner is the identity."""
        return all(not p.any() for p in self.net.unet.segmentation_head.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = x[:, 1:].float()
        log_p = torch.log(probs.clamp_min(self.eps))
        # Model selection keeps the untrained identity where training did not beat it; its
        # zero head makes net(x) exactly 0 for finite x, so inference skips the network (the
        # same floats, without its cost). Training always runs it: the head's gradient is not zero.
        if not torch.is_grad_enabled() and torch.isfinite(x).all() and self.head_is_zero():
            return log_p
        return log_p + self.net(x)


def build_refiner(cfg: Mapping[str, Any], load_encoder_weights: bool = True) -> ResidualRefiner:
    """A refiner from `refiner_config` output, starting as the identity on p."""
    refiner = ResidualRefiner(build_model(cfg, load_encoder_weights), float(cfg["eps"]))
    refiner.zero_last_layer()
    return refiner


def refiner_config(model_cfg: Mapping[str, Any], eps: float) -> dict:
    from echocem.seg.unet import model_config

    return {**model_config(model_cfg, in_channels=IN_CHANNELS), "eps": float(eps)}


def refiner_inputs(image_x: torch.Tensor, probs: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, 4, H, W) float32 on image_x's device: [normalised image, p0, p1, p2]."""
    p = torch.as_tensor(probs).to(image_x.device).float()
    if p.ndim != 4 or p.shape[1] != N_CLASSES or p.shape[0] != image_x.shape[0] or p.shape[2:] != image_x.shape[2:]:
        raise EchoCemError(f"refiner: probabilities must be (N, 3, H, W) matching the images "
                           f"{tuple(image_x.shape)}; got {tuple(p.shape)}")
    return torch.cat([image_x, p], dim=1)


def save_refiner(path: str | os.PathLike, refiner: nn.Module, cfg: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    save_model(path, refiner, cfg, meta, kind=REFINER_FORMAT)


def load_refiner(path: str | os.PathLike) -> tuple[ResidualRefiner, dict]:
    """(refiner in eval mode on CPU, meta) from a file written by `postproc_unet`."""
    blob = read_model_file(path, REFINER_FORMAT)
    refiner = build_refiner(blob["config"], load_encoder_weights=False)
    refiner.load_state_dict(blob["state_dict"])
    refiner.eval()
    return refiner, {**blob["meta"], "config": blob["config"]}


def refine_proba(
    refiner: nn.Module,
    probs: np.ndarray,
    images: np.ndarray,
    widths: np.ndarray,
    norm_spec: Mapping[str, Any],
    device: str,
    batch_size: int,
) -> np.ndarray:
    """Float32 (N, 3, H, W) refined probabilities from the first model's `probs` and the raw images.

    Batched on `device` (bf16 autocast + channels_last on CUDA); padding
    columns come out as background 1.
    """
    from echocem.data.preprocess import normalize

    check_images(images, widths)
    if probs.shape != (images.shape[0], N_CLASSES, *images.shape[1:]):
        raise EchoCemError(f"refine_proba: probs must be {(images.shape[0], N_CLASSES, *images.shape[1:])}; "
                           f"got {probs.shape}")
    refiner = refiner.to(device).to(memory_format=torch.channels_last)
    images_t = torch.from_numpy(np.ascontiguousarray(images))
    probs_t = torch.from_numpy(np.ascontiguousarray(probs))
    widths_t = torch.from_numpy(np.asarray(widths, dtype=np.int64))

    def make(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        w = widths_t[lo:hi].to(device)
        x = normalize(images_t[lo:hi].to(device), w, norm_spec).float().unsqueeze(1)
        return refiner_inputs(x, probs_t[lo:hi].to(device)), w

    return batched_predict(refiner, make, len(images), device, batch_size)


def align_ids(all_ids: np.ndarray, ids: np.ndarray, source: str) -> np.ndarray:
    """Indices into `all_ids` of each of `ids`; EchoCemError naming `source` if one is unknown."""
    lookup = {str(k): i for i, k in enumerate(all_ids)}
    unknown = [str(k) for k in ids if str(k) not in lookup]
    if unknown:
        raise EchoCemError(f"{source}: {len(unknown)} patch ids not in the training split, e.g. {unknown[:3]}")
    return np.array([lookup[str(k)] for k in ids], dtype=np.int64)
