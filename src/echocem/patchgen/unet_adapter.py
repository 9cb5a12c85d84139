"""The only place where echocem.patchgen touches the segmentation code (echocem.seg).

The segmentation training code is being reorganised; every import of it by
this package goes through the functions below, so re-pointing them is a change
to this one file. Each function is a thin call, no logic of its own beyond
choosing which seg function does the job.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from echocem.io import EchoCemError

N_CLASSES = 3


# --------------------------------------------------------------------------- networks


def build_unet(encoder: str, encoder_depth: int, decoder_channels: list[int], in_channels: int,
               out_channels: int) -> nn.Module:
    """An smp U-Net padded to its encoder stride (any input size), built by the project's builder."""
    from echocem.seg.unet import build_model

    cfg = {"encoder": encoder, "encoder_depth": int(encoder_depth),
           "decoder_channels": [int(c) for c in decoder_channels], "encoder_weights_path": None,
           "in_channels": int(in_channels), "classes": int(out_channels)}
    return build_model(cfg, load_encoder_weights=False)


def save_network(path: str | os.PathLike, model: nn.Module, cfg: Mapping[str, Any], meta: Mapping[str, Any],
                 kind: str) -> None:
    """Self-describing model file (config + meta + weights), atomic and byte-stable."""
    from echocem.seg.unet import save_model

    save_model(path, model, cfg, meta, kind=kind)


def read_network_file(path: str | os.PathLike, kind: str) -> dict:
    """The dict written by `save_network`; EchoCemError for a missing or foreign file."""
    from echocem.seg.unet import read_model_file

    return read_model_file(path, kind)


# --------------------------------------------------------------------------- the first U-Net


def load_segmenter(path: str | os.PathLike) -> tuple[nn.Module, dict]:
    """(U-Net in eval mode on CPU, its meta) from a file written by the `unet` stage."""
    from echocem.seg.unet import load_model

    return load_model(path)


def predict_labels(model: nn.Module, images: np.ndarray, widths: np.ndarray, norm_spec: Mapping[str, Any],
                   device: str, batch_size: int) -> np.ndarray:
    """int8 (N, H, W) classes, -1 on padding, of raw int16 images."""
    from echocem.seg.unet import labels_from_proba, predict_proba

    probs = predict_proba(model, images, widths, norm_spec, device, batch_size)
    return labels_from_proba(probs, widths)


def encoder_feature_map(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(deepest encoder features, their stride in pixels) of the U-Net for normalised
    (B, 1, H, W) inputs.

    The input is zero-padded to the encoder stride as the U-Net itself does, so
    the features are those the segmentation sees.
    """
    import torch.nn.functional as F

    from echocem.seg.unet import unwrap

    padded = unwrap(model)
    unet, multiple = padded.unet, int(padded.multiple)
    h, w = x.shape[-2:]
    x = F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple))
    with torch.inference_mode():
        return unet.encoder(x)[-1], multiple


def patch_scores(masks: np.ndarray, pred: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """(N,) challenge score of each patch (mean IoU of classes 1 and 2 over its valid columns)."""
    from echocem.seg.metric import patch_scores as scores

    return scores(masks, pred, widths)


def challenge_iou(masks: np.ndarray, pred: np.ndarray, widths: np.ndarray) -> dict:
    from echocem.seg.metric import challenge_iou as iou

    return iou(masks, pred, widths)


def active_unet_profile(unet_section: Mapping[str, Any]) -> dict:
    """The profile that params `unet.profile` selects."""
    from echocem.params import active_profile

    return active_profile(unet_section, "unet")


# --------------------------------------------------------------------------- training a first U-Net


def train_unet(images_norm: torch.Tensor, masks: np.ndarray, widths: np.ndarray, profile: Mapping[str, Any],
               steps: int, seed: int, device: str, desc: str = "unet") -> tuple[nn.Module, int]:
    """Train a fresh first U-Net (the `unet` profile's network, loss, augmentation and
    schedule) for exactly `steps` optimiser steps; return (model at its last step, steps).

    Whole shuffled epochs, then the remaining steps as one pass over a random
    subset of the patches, so two training sets of different sizes get the same
    compute. No model selection: the study evaluates on the held-out wells, which
    must not choose the epoch as well (that would favour whichever arm is noisier).
    """
    from echocem.seg.accel import Accel, execution_mode
    from echocem.seg.dataset import SegSet
    from echocem.seg.loop import StepRunner
    from echocem.seg.optim import make_optimizer
    from echocem.seg.segmenter import new_model
    from echocem.seg.unet import model_config, unwrap

    batch = int(profile["train"]["batch_size"])
    n = len(masks)
    b = min(batch, n)
    if n == 0 or steps < 1:
        raise EchoCemError(f"train_unet: {n} patches and {steps} steps: nothing to train")
    epochs, rest = divmod(int(steps), n // b)
    accel = Accel.from_profile(profile, device)
    cfg = model_config(profile["model"], in_channels=1)
    data = SegSet(x=images_norm.to(device).float(),
                  y=torch.from_numpy(np.asarray(masks, dtype=np.int8)).to(device),
                  widths=torch.from_numpy(np.asarray(widths, dtype=np.int64)).to(device),
                  wells=np.zeros(n, dtype=np.int32), ids=np.arange(n).astype(str))
    with execution_mode(accel):
        model = new_model(cfg, seed).to(device)
        if accel.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt, sched = make_optimizer(model, profile["train"], int(steps), accel)
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
        runner = StepRunner(model, opt, sched, profile["train"], profile["augment"], accel, gen)
        model.train()
        for _ in tqdm(range(epochs), desc=desc, unit="epoch", leave=False, dynamic_ncols=True):
            runner.epoch(data, batch)
        if rest:
            part = torch.randperm(n, generator=gen, device=gen.device)[:rest * b].cpu().numpy()
            runner.epoch(data.subset(part), batch)
    base = unwrap(model)
    base.eval()
    return base, int(steps)


def normalised_images(images: np.ndarray, widths: np.ndarray, norm_spec: Mapping[str, Any],
                      device: str) -> torch.Tensor:
    """(N, 1, H, W) float32 normalised as the U-Net's inputs are."""
    from echocem.seg.dataset import normalised_images as normalised

    return normalised(images, widths, norm_spec, device)


