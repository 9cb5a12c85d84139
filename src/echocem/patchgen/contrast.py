"""Echo contrast profiles: how strong the casing and TIE echoes are, row by row, over a patch's background.

Why the generator needs them: real patches carry a gain and an echo strength that change from section
to section and along depth. A generator conditioned on the mask alone draws every patch at about the
average contrast: the contrasts of its 32-row strips spread 2.5 to 3 x less than the real ones
(docs/validation.md). So the generator is also conditioned on a contrast profile: the casing and TIE
one-hot channels of its input are scaled, row by row, by the patch's contrast over the training
patches' median (`scale_condition`). Training reads each labelled patch's own profile; sampling draws
the profile of a random training patch (`ContrastPrior.draw`; the generator's file keeps them), so the
contrasts follow the training wells' distribution and are not copied from the patch a mask came from.

The profile of a class in a row (`contrast_profiles`): the root mean square of the image over the
row's pixels of that class, over the standard deviation of the patch's background (class 0, its own
columns). Rows without the class take the value interpolated between the nearest rows that have it;
the profile is then smoothed along depth by a Gaussian of `rows` rows. A patch without the class gets
no profile for it (NaN), which normalises to the median (1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d

from echocem.io import EchoCemError

CLASSES = (2, 1)  # a profile's channels: the casing's, then the TIE's
MIN_BACKGROUND_STD = 1e-6


def contrast_profiles(x: np.ndarray, masks: np.ndarray, widths: np.ndarray, rows: float) -> np.ndarray:
    """(N, 2, H) float64 contrast of the casing and the TIE per row of each patch (NaN: class absent).

    `x` (N, H, W) images in any units proportional to the amplitude (the contrast is a ratio),
    `masks` (N, H, W) labels (-1 padding), `widths` (N,) each patch's real columns, `rows` the
    Gaussian's standard deviation along depth (> 0).
    """
    x, masks, widths = np.asarray(x, dtype=np.float64), np.asarray(masks), np.asarray(widths)
    if x.ndim != 3 or masks.shape != x.shape or widths.shape != (len(x),):
        raise EchoCemError(f"contrast: images {x.shape}, masks {masks.shape} and widths {widths.shape} "
                           "must be (N, H, W), (N, H, W) and (N,)")
    if rows <= 0:
        raise EchoCemError(f"contrast: the smoothing length must be > 0 rows, got {rows}")
    n, h, w = x.shape
    labels = np.where(np.arange(w)[None, None, :] < widths[:, None, None], masks, -1)
    out = np.full((n, len(CLASSES), h), np.nan)
    depth = np.arange(h)
    for i in range(n):
        background = x[i][labels[i] == 0]
        spread = max(float(background.std()) if background.size else 0.0, MIN_BACKGROUND_STD)
        for channel, cls in enumerate(CLASSES):
            region = labels[i] == cls
            count = region.sum(axis=1)
            present = np.flatnonzero(count)
            if present.size == 0:
                continue
            rms = np.sqrt((x[i] ** 2 * region).sum(axis=1)[present] / count[present]) / spread
            out[i, channel] = gaussian_filter1d(np.interp(depth, present, rms), rows, mode="nearest")
    return out


@dataclass(frozen=True)
class ContrastPrior:
    """The training patches' normalised profiles (`bank`, (M, 2, H) float32) and the medians that
    normalised them (`median`, (2,): casing, TIE), with the smoothing length they were made with."""

    rows: float
    median: np.ndarray
    bank: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, masks: np.ndarray, widths: np.ndarray, rows: float) -> "ContrastPrior":
        """The prior of a set of labelled patches (`contrast_profiles`' arguments)."""
        raw = contrast_profiles(x, masks, widths, rows)
        if len(raw) == 0:
            raise EchoCemError("contrast: no labelled patches to take the contrast prior from")
        # a class no training patch has (no TIE anywhere) keeps its profiles at 1, the median's value
        median = np.array([np.median(c[np.isfinite(c)]) if np.isfinite(c).any() else 1.0
                           for c in raw.transpose(1, 0, 2)])
        median = np.where(median > 0, median, 1.0)
        return cls(float(rows), median, normalised(raw, median))

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 2, H) float32 profiles of training patches drawn with replacement."""
        return self.bank[rng.integers(0, len(self.bank), int(n))]


def normalised(raw: np.ndarray, median: np.ndarray) -> np.ndarray:
    """Profiles over the medians, float32; an absent class reads 1 (the median)."""
    return np.nan_to_num(raw / np.asarray(median)[None, :, None], nan=1.0).astype(np.float32)


def scale_condition(cond: torch.Tensor, profiles: torch.Tensor) -> torch.Tensor:
    """`cond` (B, 4, H, W) of `echocem.patchgen.denoiser.condition` with its casing and TIE one-hot
    channels multiplied row by row by `profiles` (B, 2, H); the other channels unchanged."""
    if profiles.shape != (cond.shape[0], len(CLASSES), cond.shape[-2]):
        raise EchoCemError(f"contrast: profiles {tuple(profiles.shape)} do not fit conditioning "
                           f"{tuple(cond.shape)}: expected ({cond.shape[0]}, {len(CLASSES)}, {cond.shape[-2]})")
    out = cond.clone()
    for channel, cls in enumerate(CLASSES):
        out[:, cls] = cond[:, cls] * profiles[:, channel, :, None].to(cond.dtype)
    return out
