"""Augmentations that respect the physics of the images, done in batch on the device.

Rows are depth, columns are the time axis of the echo. Allowed:
- depth flips (a well logged upward looks like one logged downward);
- small shifts along depth and along time (where a section starts, a small
  change of the casing's travel time); uncovered pixels get image 0 and label -1
  (ignored by the loss), so nothing is invented;
- gain (the amplitude scale varies by well), contrast (a power law on the
  magnitude, keeping the sign of the wave) and additive noise, on the image
  channel only (channel 0; further channels, e.g. class probabilities, keep
  their values).
Never a time-axis flip: echoes arrive in time order (casing first, TIE later).

Every draw comes from one `torch.Generator` on the batch's device, so a run is
reproducible and resumable (its state is checkpointed).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen, device=device)


def _shift_index(n: int, size: int, max_shift: int, gen: torch.Generator, device: torch.device):
    """Per-sample source index for a shift by s in [-max_shift, max_shift], and its validity."""
    shift = torch.randint(-max_shift, max_shift + 1, (n, 1), generator=gen, device=device)
    src = torch.arange(size, device=device)[None, :] - shift
    valid = (src >= 0) & (src < size)
    return src.clamp(0, size - 1), valid


def shift_batch(
    x: torch.Tensor, y: torch.Tensor, max_rows: int, max_cols: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Translate each (x[i], y[i]) by its own integer offset; uncovered pixels: x 0, y -1."""
    b, c, h, w = x.shape
    if max_rows > 0:
        src, valid = _shift_index(b, h, max_rows, gen, x.device)
        x = torch.gather(x, 2, src.view(b, 1, h, 1).expand(b, c, h, w))
        y = torch.gather(y, 1, src.view(b, h, 1).expand(b, h, w))
        x = x * valid.view(b, 1, h, 1)
        y = torch.where(valid.view(b, h, 1), y, torch.full_like(y, -1))
    if max_cols > 0:
        src, valid = _shift_index(b, w, max_cols, gen, x.device)
        x = torch.gather(x, 3, src.view(b, 1, 1, w).expand(b, c, h, w))
        y = torch.gather(y, 2, src.view(b, 1, w).expand(b, h, w))
        x = x * valid.view(b, 1, 1, w)
        y = torch.where(valid.view(b, 1, w), y, torch.full_like(y, -1))
    return x, y


def flip_depth(
    x: torch.Tensor, y: torch.Tensor, p: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse the rows (depth) of each sample with probability p."""
    if p <= 0:
        return x, y
    flip = torch.rand(x.shape[0], generator=gen, device=x.device) < p
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(2), x)
    y = torch.where(flip.view(-1, 1, 1), y.flip(1), y)
    return x, y


def intensity(
    image: torch.Tensor, labelled: torch.Tensor, cfg: Mapping[str, Any], gen: torch.Generator
) -> torch.Tensor:
    """Gain, contrast and noise on a (B, 1, H, W) image; zero stays zero outside `labelled`."""
    b = image.shape[0]
    dev = image.device
    gain, contrast, noise = float(cfg["gain"]), float(cfg["contrast"]), float(cfg["noise_std"])
    if contrast > 0:
        gamma = _uniform(b, 1.0 - contrast, 1.0 + contrast, gen, dev).view(b, 1, 1, 1)
        image = torch.sign(image) * image.abs().pow(gamma)
    if gain > 0:
        # log-uniform: a gain and its inverse are equally likely
        log_g = torch.log1p(torch.tensor(gain, device=dev))
        image = image * torch.exp(_uniform(b, -1.0, 1.0, gen, dev) * log_g).view(b, 1, 1, 1)
    if noise > 0:
        sigma = _uniform(b, 0.0, noise, gen, dev).view(b, 1, 1, 1)
        image = image + sigma * torch.randn(image.shape, generator=gen, device=dev, dtype=image.dtype)
    return image * labelled


def augment_batch(
    x: torch.Tensor, y: torch.Tensor, cfg: Mapping[str, Any], gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch: x (B, C, H, W) float with the image in channel 0, y (B, H, W) int labels
    (-1 = padding). Returns new tensors; geometry moves x and y together."""
    x, y = flip_depth(x, y, float(cfg["depth_flip"]), gen)
    x, y = shift_batch(x, y, int(cfg["max_shift_rows"]), int(cfg["max_shift_cols"]), gen)
    labelled = (y >= 0).unsqueeze(1).to(x.dtype)
    image = intensity(x[:, :1], labelled, cfg, gen)
    x = torch.cat([image, x[:, 1:]], dim=1) if x.shape[1] > 1 else image
    return x, y
