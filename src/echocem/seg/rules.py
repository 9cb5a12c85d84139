"""Rule-based clean-up of predicted masks, from what the physics allows.

- small morphological closing then opening of each class (fills pin holes
  first, so a prediction with scattered holes is not eroded away, then removes
  specks; the closing only fills background pixels, never another class);
- the casing (class 2) is one straight band: keep its largest connected
  component per patch, the rest becomes background;
- the TIE (class 1) is one wavefront: at most one class-1 interval per image
  row, the one with the most support, i.e. the most class-1 pixels in the same
  columns over the neighbouring rows (so the interval that continues the
  wavefront of the rows around it wins over a stray blob).

Each rule is switched by params `rules` (schema: src/echocem/schema/rules.yaml).
Everything works on whole (N, 160, 272) stacks with scipy.ndimage, in chunks of
patches; padding (columns right of each width) is kept as -1.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage

from echocem.io import EchoCemError

BACKGROUND, TIE, CASING = 0, 1, 2
_CHUNK = 128  # patches per vectorised step (the run labels are int64 per pixel)


def _valid(widths: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    cols = np.arange(shape[2])
    return np.broadcast_to((cols[None, :] < widths[:, None])[:, None, :], shape)


def _per_patch_structure(size: int) -> np.ndarray:
    """3-D structuring element acting within each patch (nothing across the patch axis)."""
    s = np.zeros((1, size, size), dtype=bool)
    s[0] = True
    return s


def open_close(pred: np.ndarray, valid: np.ndarray, size: int, do_open: bool, do_close: bool) -> np.ndarray:
    """Closing then opening of classes 2 and 1 with a size x size square, per patch."""
    if size < 2 or not (do_open or do_close):
        return pred
    out = pred.copy()
    struct = _per_patch_structure(size)
    pad = size  # edge padding: the bands touch the top/bottom rows and must not erode there
    for c in (CASING, TIE):
        m = (out == c) & valid
        mp = np.pad(m, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        if do_close:
            mp = ndimage.binary_closing(mp, structure=struct)
        if do_open:
            mp = ndimage.binary_opening(mp, structure=struct)
        m_new = mp[:, pad:-pad, pad:-pad] & valid
        out[(out == c) & ~m_new] = BACKGROUND
        out[m_new & (out == BACKGROUND)] = c
    return out


def largest_component(pred: np.ndarray, cls: int, connectivity: int = 2) -> np.ndarray:
    """Keep, in each patch, only the largest connected component of class `cls`."""
    m = pred == cls
    if not m.any():
        return pred
    struct = np.zeros((3, 3, 3), dtype=bool)
    struct[1] = ndimage.generate_binary_structure(2, connectivity)
    labels, n = ndimage.label(m, structure=struct)
    if n <= 1:
        return pred
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    sizes[0] = 0
    flat = labels.ravel()
    nz = np.flatnonzero(flat)
    patch_of = np.zeros(n + 1, dtype=np.int64)
    patch_of[flat[nz]] = nz // (pred.shape[1] * pred.shape[2])
    lab = np.arange(1, n + 1)
    # per patch, the label of largest size (ties: the smaller label, i.e. the first found)
    order = np.lexsort((lab, -sizes[1:], patch_of[1:]))
    first = np.ones(order.size, dtype=bool)
    first[1:] = patch_of[1:][order[1:]] != patch_of[1:][order[:-1]]
    keep = np.zeros(n + 1, dtype=bool)
    keep[lab[order[first]]] = True
    out = pred.copy()
    out[m & ~keep[labels]] = BACKGROUND
    return out


def single_interval_per_row(pred: np.ndarray, cls: int, support_rows: int) -> np.ndarray:
    """Keep at most one run of class `cls` per image row: the run with the most support.

    A run's support is the sum over its pixels of the number of `cls` pixels in
    the same column within +-support_rows rows (its own row included), so long
    runs that line up with the rows around them win.
    """
    m = pred == cls
    if not m.any():
        return pred
    n, h, w = m.shape
    vertical = ndimage.uniform_filter1d(
        m.astype(np.float32), size=2 * support_rows + 1, axis=1, mode="constant"
    ) * (2 * support_rows + 1)
    starts = m.copy()
    starts[:, :, 1:] &= ~m[:, :, :-1]
    run_id = np.cumsum(starts.ravel(), dtype=np.int64)
    run_id = np.where(m.ravel(), run_id, 0)
    n_runs = int(run_id.max())
    support = np.bincount(run_id, weights=np.rint(vertical.ravel()), minlength=n_runs + 1)
    row_of = np.zeros(n_runs + 1, dtype=np.int64)
    start_pos = np.flatnonzero(starts.ravel())
    row_of[run_id[start_pos]] = start_pos // w  # global row index (patch * h + row)
    runs = np.arange(1, n_runs + 1)
    order = np.lexsort((runs, -support[1:], row_of[1:]))
    first = np.ones(order.size, dtype=bool)
    first[1:] = row_of[1:][order[1:]] != row_of[1:][order[:-1]]
    keep = np.zeros(n_runs + 1, dtype=bool)
    keep[runs[order[first]]] = True
    out = pred.copy()
    drop = (m.ravel() & ~keep[run_id]).reshape(m.shape)
    out[drop] = BACKGROUND
    return out


def _apply_chunk(pred: np.ndarray, widths: np.ndarray, cfg: Mapping) -> np.ndarray:
    valid = _valid(widths, pred.shape)
    out = np.where(valid, pred, BACKGROUND).astype(np.int8)
    out = open_close(out, valid, int(cfg["morph_size"]), bool(cfg["open"]), bool(cfg["close"]))
    if cfg["casing_largest_component"]:
        out = largest_component(out, CASING)
    if cfg["tie_single_interval"]:
        out = single_interval_per_row(out, TIE, int(cfg["tie_support_rows"]))
    out[~valid] = -1
    return out


RULE_KEYS = ("open", "close", "morph_size", "casing_largest_component", "tie_single_interval", "tie_support_rows")


def apply_rules(pred: np.ndarray, widths: Sequence[int] | np.ndarray, cfg: Mapping) -> np.ndarray:
    """Clean (N, 160, 272) predicted masks with the rules switched on in `cfg` (params `rules`).

    Returns int8 masks of the same shape with -1 right of each patch's width;
    the input is not modified.
    """
    pred = np.asarray(pred)
    widths = np.asarray(widths, dtype=np.int64).reshape(-1)
    if pred.ndim != 3 or widths.shape[0] != pred.shape[0]:
        raise EchoCemError(f"apply_rules: expected (N, H, W) masks and N widths; got {pred.shape} and {widths.shape}")
    missing = [k for k in RULE_KEYS if k not in cfg]
    if missing:
        raise EchoCemError(f"apply_rules: params rules lacks {missing}")
    out = np.empty(pred.shape, dtype=np.int8)
    for start in range(0, pred.shape[0], _CHUNK):
        sl = slice(start, start + _CHUNK)
        out[sl] = _apply_chunk(pred[sl], widths[sl], cfg)
    return out
