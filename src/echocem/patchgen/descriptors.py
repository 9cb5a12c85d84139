"""Descriptors of patches, the points between which the generator is judged.

Each patch is cut along depth into strips of `strip_rows` rows; each strip
gives one point per block:

- "amplitude": per class region (background, TIE, casing, by the patch's mask)
  the mean |amplitude|, the amplitude std, the mean envelope and its 90th
  percentile (envelope: modulus of the analytic signal along the time axis,
  scipy.signal.hilbert), each divided by the strip's background std. The
  ratio makes the block blind to the per-well gain, a nuisance that otherwise
  dominates every distance between wells (measured: the held-out well's gain
  alone put real training patches as far from it as class-matched noise);
  what is left is the contrast and shape of the echoes. A class absent from a
  strip takes the background's values (an empty region looks like
  background); that keeps every point finite.
- "encoder": the first U-Net's deepest encoder features averaged over each
  class region of the strip (what the segmentation sees where the casing,
  the TIE and the background are; a plain average over the strip is
  dominated by background and cannot tell noise from echoes).

Strips rather than whole patches: a held-out well has few patches, and five
strips per patch make the point clouds dense enough for a stable distance,
while each strip still spans the whole time axis.
"""
from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np
import torch
from scipy.signal import hilbert

from echocem.io import EchoCemError
from echocem.patchgen import unet_adapter

AMPLITUDE_STATS = ("mean_abs", "std", "mean_envelope", "p90_envelope")
CLASSES = (0, 1, 2)


def _strips(height: int, strip_rows: int) -> int:
    if strip_rows < 1 or height % strip_rows:
        raise EchoCemError(f"descriptors: strip_rows {strip_rows} must divide the patch height {height}")
    return height // strip_rows


def amplitude_descriptors(x_norm: np.ndarray, masks: np.ndarray, widths: np.ndarray, strip_rows: int) -> np.ndarray:
    """(N * S, 3 * 4) float64 class-region statistics relative to the strip's background std,
    S strips per patch, patch-major order."""
    n, h, w = x_norm.shape
    s = _strips(h, strip_rows)
    valid = np.arange(w)[None, None, :] < np.asarray(widths)[:, None, None]
    env = np.zeros_like(x_norm, dtype=np.float64)
    for width in np.unique(widths):
        rows = np.flatnonzero(widths == width)
        # the envelope over each patch's own columns only: padding would bend it at the edge
        env[rows, :, :width] = np.abs(hilbert(x_norm[rows, :, :width].astype(np.float64), axis=-1))
    x = x_norm.astype(np.float64).reshape(n, s, strip_rows * w)
    env = env.reshape(n, s, strip_rows * w)
    m = np.where(valid, masks, -1).reshape(n, s, strip_rows * w)
    out = np.empty((n, s, len(CLASSES), len(AMPLITUDE_STATS)))
    for c in CLASSES:
        region = m == c
        count = region.sum(axis=-1)
        safe = np.maximum(count, 1)
        mean = (x * region).sum(-1) / safe
        out[:, :, c, 0] = (np.abs(x) * region).sum(-1) / safe
        out[:, :, c, 1] = np.sqrt(np.maximum(((x - mean[..., None]) ** 2 * region).sum(-1) / safe, 0.0))
        out[:, :, c, 2] = (env * region).sum(-1) / safe
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an empty region: NaN, replaced below
            p90 = np.nanpercentile(np.where(region, env, np.nan), 90, axis=-1)
        out[:, :, c, 3] = np.nan_to_num(p90)
        if c != 0:
            empty = count == 0
            out[:, :, c, :][empty] = out[:, :, 0, :][empty]
    background_std = np.maximum(out[:, :, 0, 1], 1e-6)
    return (out / background_std[:, :, None, None]).reshape(n * s, -1)


def encoder_descriptors(model: torch.nn.Module, x_norm: np.ndarray, masks: np.ndarray, widths: np.ndarray,
                        strip_rows: int, batch_size: int = 16) -> np.ndarray:
    """(N * S, 3 * C) float64: the U-Net's deepest encoder features averaged over each class
    region of each strip (a feature cell weighs by the share of its pixels in the class;
    an empty region takes the background's values)."""
    import torch.nn.functional as F

    n, h, w = x_norm.shape
    s = _strips(h, strip_rows)
    model = model.eval()
    out = []
    for lo in range(0, n, batch_size):
        x = torch.from_numpy(np.ascontiguousarray(x_norm[lo:lo + batch_size], dtype=np.float32)).unsqueeze(1)
        feats, stride = unet_adapter.encoder_feature_map(model, x)  # (B, C, h', w') of the padded input
        m = torch.from_numpy(np.asarray(masks[lo:lo + batch_size], dtype=np.int64))
        onehot = F.one_hot(m.clamp_min(0), len(CLASSES)).permute(0, 3, 1, 2).double() * (m >= 0).unsqueeze(1)
        onehot = F.pad(onehot, (0, feats.shape[3] * stride - w, 0, feats.shape[2] * stride - h))
        share = F.avg_pool2d(onehot, stride)  # (B, 3, h', w'): class share of each feature cell
        feats = feats.double()
        edges = np.linspace(0, -(-h // stride), s + 1).round().astype(int)
        strips = []
        for k in range(s):
            rows = slice(edges[k], max(edges[k + 1], edges[k] + 1))
            wgt, f = share[:, :, rows], feats[:, :, rows]
            total = wgt.sum(dim=(2, 3))  # (B, 3)
            mean = torch.einsum("bkhw,bchw->bkc", wgt, f) / total.clamp_min(1e-9)[..., None]
            mean = torch.where((total > 0)[..., None], mean, mean[:, :1])  # empty region: background
            strips.append(mean.reshape(len(mean), -1).numpy())
        out.append(np.stack(strips, axis=1))  # (B, S, 3C)
    return np.concatenate(out).reshape(n * s, -1)


def describe(images: np.ndarray, masks: np.ndarray, widths: np.ndarray, norm_spec: Mapping[str, Any],
             strip_rows: int, encoder_model: torch.nn.Module | None) -> dict[str, np.ndarray]:
    """Descriptor blocks {"amplitude", "encoder"} of raw int16 patches with their masks."""
    from echocem.data.preprocess import normalize

    x = normalize(np.asarray(images), np.asarray(widths), norm_spec)
    blocks = {"amplitude": amplitude_descriptors(x, np.asarray(masks), np.asarray(widths), strip_rows)}
    if encoder_model is not None:
        blocks["encoder"] = encoder_descriptors(encoder_model, x, np.asarray(masks), np.asarray(widths), strip_rows)
    return blocks

