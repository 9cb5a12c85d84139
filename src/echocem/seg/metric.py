"""The challenge metric: mean over patches of the mean IoU of classes 1 and 2.

For one patch, the IoU of a class is computed over the non-padding pixels
(columns below the patch's true width); a class absent from both the truth and
the prediction counts 1 (nothing to find, nothing wrongly found). The patch
score is the mean of the class-1 (TIE) and class-2 (casing) IoUs; the score of
a set of patches is the mean of their patch scores. Class 0 (background) is
not scored.

Arrays follow the project contract: masks and predictions are (N, 160, 272)
with anything (usually -1) right of each patch's width; `widths` is (N,).
Everything here is vectorised over patches, in chunks to bound memory.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from echocem.io import EchoCemError

SCORED_CLASSES = (1, 2)
N_CLASSES = 3
_CHUNK = 256  # patches per vectorised step: 256 x 160 x 272 bytes stay small


def _as_stack(y_true: np.ndarray, y_pred: np.ndarray, widths: Sequence[int] | np.ndarray):
    """Check shapes and widths; return (y_true, y_pred, widths) as 3-D arrays and int array."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    widths = np.asarray(widths, dtype=np.int64).reshape(-1)
    if y_true.ndim != 3 or y_true.shape != y_pred.shape:
        raise EchoCemError(
            f"metric: truth and prediction must both be (N, H, W); got {y_true.shape} and {y_pred.shape}"
        )
    if widths.shape[0] != y_true.shape[0]:
        raise EchoCemError(f"metric: {widths.shape[0]} widths for {y_true.shape[0]} patches")
    if widths.size and (widths.min() < 1 or widths.max() > y_true.shape[2]):
        raise EchoCemError(
            f"metric: widths must lie in 1..{y_true.shape[2]}; got {int(widths.min())}..{int(widths.max())}"
        )
    return y_true, y_pred, widths


def valid_mask(widths: np.ndarray, height: int, full_width: int) -> np.ndarray:
    """(N, height, full_width) bool: True on each patch's non-padding pixels."""
    cols = np.arange(full_width)
    return np.broadcast_to(
        (cols[None, :] < np.asarray(widths)[:, None])[:, None, :], (len(widths), height, full_width)
    )


def class_ious(y_true: np.ndarray, y_pred: np.ndarray, widths: Sequence[int] | np.ndarray) -> np.ndarray:
    """(N, 2) float64: per patch, the IoU of class 1 and of class 2 (absent from both -> 1)."""
    y_true, y_pred, widths = _as_stack(y_true, y_pred, widths)
    n, h, w = y_true.shape
    out = np.empty((n, len(SCORED_CLASSES)), dtype=np.float64)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        valid = valid_mask(widths[sl], h, w)
        t, p = y_true[sl], y_pred[sl]
        for k, c in enumerate(SCORED_CLASSES):
            in_t = (t == c) & valid
            in_p = (p == c) & valid
            inter = np.count_nonzero(in_t & in_p, axis=(1, 2))
            union = np.count_nonzero(in_t | in_p, axis=(1, 2))
            # union 0: the class is absent from both, a perfect answer
            out[sl, k] = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    return out


def patch_iou(y_true: np.ndarray, y_pred: np.ndarray, width: int) -> tuple[float, float]:
    """IoU of class 1 and of class 2 of one (H, W) patch over its first `width` columns."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.ndim != 2 or t.shape != p.shape:
        raise EchoCemError(f"patch_iou: expected two equal (H, W) arrays; got {t.shape} and {p.shape}")
    ious = class_ious(t[None], p[None], [width])[0]
    return float(ious[0]), float(ious[1])


def patch_scores(y_true: np.ndarray, y_pred: np.ndarray, widths: Sequence[int] | np.ndarray) -> np.ndarray:
    """(N,) float64: each patch's challenge score (mean of its class-1 and class-2 IoU)."""
    return class_ious(y_true, y_pred, widths).mean(axis=1)


def _summary(ious: np.ndarray) -> dict:
    """Challenge score of a set of patches from their (n, 2) class IoUs."""
    if len(ious) == 0:
        return {"iou": float("nan"), "iou_class1": float("nan"), "iou_class2": float("nan"), "n_patches": 0}
    per_class = ious.mean(axis=0)
    return {
        "iou": float(ious.mean(axis=1).mean()),
        "iou_class1": float(per_class[0]),
        "iou_class2": float(per_class[1]),
        "n_patches": int(len(ious)),
    }


def challenge_iou(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    widths: Sequence[int] | np.ndarray,
    wells: Sequence[int] | np.ndarray | None = None,
) -> dict:
    """The challenge score with its per-class (and, given `wells`, per-well) breakdown.

    Returns {"iou", "iou_class1", "iou_class2", "n_patches"} and, if `wells` is
    given, "per_well": {str(well): the same four keys over that well's patches}.
    Per-class values are means over patches of that class's patch IoU, so
    "iou" == (iou_class1 + iou_class2) / 2.
    """
    ious = class_ious(y_true, y_pred, widths)
    result = _summary(ious)
    if wells is not None:
        wells = np.asarray(wells).reshape(-1)
        if wells.shape[0] != ious.shape[0]:
            raise EchoCemError(f"metric: {wells.shape[0]} well numbers for {ious.shape[0]} patches")
        result["per_well"] = {
            str(w.item()): _summary(ious[wells == w])
            for w in np.unique(wells)
        }
    return result


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, widths: Sequence[int] | np.ndarray
) -> np.ndarray:
    """(3, 3) int64 pixel counts over non-padding pixels: rows truth class, columns predicted."""
    y_true, y_pred, widths = _as_stack(y_true, y_pred, widths)
    n, h, w = y_true.shape
    counts = np.zeros(N_CLASSES * N_CLASSES, dtype=np.int64)
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(n, start + _CHUNK))
        valid = valid_mask(widths[sl], h, w)
        t = y_true[sl][valid].astype(np.int64)
        p = y_pred[sl][valid].astype(np.int64)
        bad = (t < 0) | (t >= N_CLASSES) | (p < 0) | (p >= N_CLASSES)
        if bad.any():
            raise EchoCemError(
                "confusion_matrix: class values outside 0..2 inside the patch width "
                f"(truth {np.unique(t[bad]).tolist()}, prediction {np.unique(p[bad]).tolist()})"
            )
        counts += np.bincount(t * N_CLASSES + p, minlength=N_CLASSES * N_CLASSES)
    return counts.reshape(N_CLASSES, N_CLASSES)
