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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = x[:, 1:].float()
        return torch.log(probs.clamp_min(self.eps)) + self.net(x)


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


def train_refiner(
    images: np.ndarray,
    masks: np.ndarray,
    widths: np.ndarray,
    wells: np.ndarray,
    train_idx: np.ndarray,
    train_probs: np.ndarray,
    val_idx: np.ndarray,
    val_probs: np.ndarray,
    norm_spec: Mapping[str, Any],
    profile: Mapping[str, Any],
    seed: int,
    device: str,
    checkpoint_dir=None,
    fp: str = "",
    on_epoch_end=None,
):
    """Train the refiner on (`train_idx` patches, their out-of-fold probabilities), select it on
    (`val_idx`, the first model's validation probabilities); epoch 0 (identity) is a candidate.

    Returns echocem.seg.train.Trained with the selected refiner.
    """
    from echocem.seg.train import normalised_images, train_segmenter

    cfg = refiner_config(profile["model"], float(profile["model"]["prob_floor"]))
    order = np.concatenate([train_idx, val_idx])
    image_x = normalised_images(images[order], widths[order], norm_spec, device)
    probs = np.concatenate([np.asarray(train_probs, dtype=np.float32), np.asarray(val_probs, dtype=np.float32)])
    x = refiner_inputs(image_x, probs)
    del image_x
    n_tr = len(train_idx)
    torch.manual_seed(int(seed))
    refiner = build_refiner(cfg)
    return cfg, train_segmenter(
        x, masks[order], widths[order], wells[order], np.arange(n_tr), np.arange(n_tr, len(order)), cfg,
        profile, int(profile["train"]["epochs"]), seed, device, checkpoint_dir, fp, desc="postproc_unet",
        evaluate_start=True, model=refiner, on_epoch_end=on_epoch_end)


def predict_labels(
    model: nn.Module,
    images: np.ndarray,
    widths: np.ndarray,
    norm_spec: Mapping[str, Any],
    device: str,
    batch_size: int,
    refiner: nn.Module | None = None,
    compile: bool = False,
) -> np.ndarray:
    """int8 (N, H, W) classes (-1 padding) of the U-Net, refined when `refiner` is given.

    The fast path for a submission: the U-Net, the refiner and the argmax all
    run on the device per batch, so only int16 images go in and int8 labels
    come out (the probabilities never cross the bus). Same numbers as
    predict_proba -> refine_proba -> argmax. `compile` (CUDA) torch.compiles both.
    """
    from echocem.seg.unet import background_outside, image_batch_maker, inference_context, valid_columns

    check_images(images, widths)
    cuda = device.startswith("cuda")
    nets = [m.to(device).to(memory_format=torch.channels_last).eval() for m in (model, refiner) if m is not None]
    if compile and cuda:
        nets = [torch.compile(m) for m in nets]
    make = image_batch_maker(images, widths, norm_spec, device)
    out = []
    with inference_context(device):
        for lo in range(0, len(images), batch_size):
            x, w = make(lo, min(len(images), lo + batch_size))
            x = x.contiguous(memory_format=torch.channels_last)
            logits = nets[0](x).float()
            if len(nets) > 1:
                probs = background_outside(torch.softmax(logits, dim=1), w)
                logits = nets[1](torch.cat([x, probs], dim=1).contiguous(memory_format=torch.channels_last)).float()
            labels = logits.argmax(dim=1).to(torch.int8)
            out.append(torch.where(valid_columns(w, labels.shape[-1])[:, 0], labels,
                                   torch.full_like(labels, -1)).cpu().numpy())
    if not out:
        raise EchoCemError("nothing to predict: no patches given")
    return np.concatenate(out)
