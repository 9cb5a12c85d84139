"""Per-pixel features of ultrasonic patches for the Random Forest baseline.

Rows are depth, columns are time samples of the echo. What separates the
classes physically:

- the casing (class 2) is the strongest echo, straight in depth: high
  envelope, high column-mean envelope over the whole patch, at a fixed column;
- the TIE (class 1) is a weaker echo right of the casing whose column drifts
  smoothly with depth: the strongest depth-smoothed envelope right of the
  casing, row by row;
- background: low envelope, glitch rows that are strong across the whole row
  but not coherent in depth (depth smoothing suppresses them).

So the features are the amplitude, its envelope along the time axis (magnitude
of the analytic signal, per row, over the patch's true width), local mean and
standard deviation, gradients, depth-smoothed envelopes, and positions relative
to the column of the casing and to the row's strongest echo right of it.
All functions take normalised images (N, 160, 272) float32 and the patch widths;
padding columns get feature value 0 and are never used.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage, signal

FEATURE_NAMES = (
    "amplitude",
    "abs_amplitude",
    "envelope",
    "envelope_depth_smooth",
    "envelope_depth_smooth_wide",
    "local_mean",
    "local_std",
    "grad_time",
    "grad_depth",
    "envelope_grad_time",
    "column",
    "column_from_casing",
    "column_mean_envelope",
    "envelope_over_row_max",
    "envelope_over_right_max",
    "column_from_right_peak",
)
_CASING_SEARCH = 120  # the casing echo lies in the first columns (about 15-40 on the real data)
_RIGHT_MARGIN = 12    # columns right of the casing centre before the TIE search starts


def envelope(images: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Envelope along the time axis: |analytic signal| of each row over the true width."""
    env = np.zeros(images.shape, dtype=np.float32)
    for w in np.unique(widths):
        idx = np.flatnonzero(widths == w)
        env[idx, :, :w] = np.abs(signal.hilbert(images[idx, :, :w].astype(np.float64), axis=-1))
    return env


def pixel_features(
    images: np.ndarray, widths: Sequence[int] | np.ndarray, smooth_rows: int = 9, window: int = 5
) -> np.ndarray:
    """(N, H, W, F) float32 features (order: FEATURE_NAMES) of normalised images.

    `smooth_rows`: depth window of the smoothed envelope (the wide one is 3x);
    `window`: side of the square window of the local mean and std.
    """
    x = np.asarray(images, dtype=np.float32)
    widths = np.asarray(widths, dtype=np.int64).reshape(-1)
    n, h, w = x.shape
    cols = np.arange(w)
    valid = (cols[None, :] < widths[:, None])[:, None, :]  # (N, 1, W)
    x = np.where(valid, x, 0.0).astype(np.float32)
    count = np.broadcast_to(valid, x.shape).astype(np.float32)

    def masked_mean(a: np.ndarray, size: tuple[int, int, int]) -> np.ndarray:
        # mean over the window of valid pixels only, so the padding does not dilute it
        num = ndimage.uniform_filter(a, size=size, mode="nearest")
        den = ndimage.uniform_filter(count, size=size, mode="nearest")
        return np.where(den > 0, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)

    env = envelope(x, widths)
    env_s = ndimage.uniform_filter1d(env, size=smooth_rows, axis=1, mode="nearest")
    env_w = ndimage.uniform_filter1d(env, size=3 * smooth_rows, axis=1, mode="nearest")
    local_mean = masked_mean(x, (1, window, window))
    local_sq = masked_mean(x * x, (1, window, window))
    local_std = np.sqrt(np.maximum(local_sq - local_mean**2, 0.0))
    grad_depth, grad_time = np.gradient(x, axis=(1, 2))
    env_grad_time = np.gradient(env_s, axis=2)

    # casing: the column of the strongest depth-averaged envelope among the first columns
    col_mean_env = env.sum(axis=1) / h  # (N, W)
    casing_col = np.argmax(col_mean_env[:, :_CASING_SEARCH], axis=1)  # (N,)
    # TIE: per row, the strongest depth-smoothed envelope right of the casing
    right = cols[None, None, :] >= (casing_col[:, None, None] + _RIGHT_MARGIN)
    env_right = np.where(right & valid, env_s, 0.0)
    right_peak = np.argmax(env_right, axis=2)  # (N, H)
    right_max = env_right.max(axis=2)  # (N, H)
    row_max = env.max(axis=2)  # (N, H)

    column = np.broadcast_to(cols[None, None, :], x.shape).astype(np.float32)
    feats = np.stack(
        [
            x,
            np.abs(x),
            env,
            env_s,
            env_w,
            local_mean,
            local_std,
            grad_time,
            grad_depth,
            env_grad_time,
            column,
            column - casing_col[:, None, None],
            np.broadcast_to(col_mean_env[:, None, :], x.shape),
            env / np.maximum(row_max[:, :, None], 1e-6),
            env_s / np.maximum(right_max[:, :, None], 1e-6),
            column - right_peak[:, :, None],
        ],
        axis=-1,
    ).astype(np.float32)
    feats[~np.broadcast_to(valid, x.shape)] = 0.0
    return feats
