"""Mask proposals: new, physically plausible masks made from the training masks.

A proposal starts from one training mask and changes its two structures the
way the wells themselves vary:

- the TIE (class 1) track is stretched along depth about a random row, warped
  by a smooth random column offset along depth, shifted in column, made absent
  over an interval of rows and doubled (a second track to its right) over
  another, as the third interface echo is seen to do;
- the casing (class 2) band is moved and its width changed, within the centres
  and widths the training masks show, and redrawn as one band per row.

Every draw stays inside what the training masks show (`observed_ranges`): the
TIE never leaves the columns where training TIEs lie and always stays right of
the casing (at least the smallest gap seen), the casing centre and width stay
within the training ones. The result keeps the contract of data/ingested:
0/1/2 on the valid columns, -1 on the padding of narrow patches.

Pure NumPy; every draw comes from the `numpy.random.Generator` passed in.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
from scipy.ndimage import gaussian_filter1d
from tqdm.auto import tqdm

from echocem.io import EchoCemError

BACKGROUND, TIE, CASING, PADDING = 0, 1, 2, -1

# the record of each proposal: (name, dtype); -1 marks "not applied" for the intervals
MODIFICATION_FIELDS = (
    ("tie_stretch", np.float32), ("tie_warp", np.float32), ("tie_shift", np.int16),
    ("absent_from", np.int16), ("absent_to", np.int16),
    ("double_from", np.int16), ("double_to", np.int16), ("double_offset", np.int16),
    ("casing_shift", np.int16), ("casing_width_change", np.int16),
)


@dataclass(frozen=True)
class MaskRanges:
    """What the training masks show (columns are 0-based, widths in pixels)."""

    casing_center: tuple[float, float]  # mean casing centre column of a patch
    casing_width: tuple[int, int]  # casing band width of a row
    tie_columns: tuple[int, int]  # leftmost and rightmost TIE pixel
    tie_gap: int  # smallest number of background columns between casing and TIE


def _row_casing(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: (has casing, leftmost casing column, rightmost casing column)."""
    cas = mask == CASING
    has = cas.any(axis=1)
    w = mask.shape[1]
    left = np.where(has, np.argmax(cas, axis=1), -1)
    right = np.where(has, w - 1 - np.argmax(cas[:, ::-1], axis=1), -1)
    return has, left, right


def observed_ranges(masks: np.ndarray) -> MaskRanges:
    """Ranges of casing centre, casing width, TIE columns and casing-TIE gap in `masks`."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or len(masks) == 0:
        raise EchoCemError(f"mask proposals: need (N, H, W) training masks, got shape {masks.shape}")
    centers, widths, gaps = [], [], []
    tie_lo, tie_hi = masks.shape[2], -1
    for m in masks:
        has, left, right = _row_casing(m)
        if has.any():
            centers.append(float(((left + right) / 2)[has].mean()))
            widths.extend((right - left + 1)[has].tolist())
        tie = m == TIE
        rows = tie.any(axis=1)
        if rows.any():
            cols = np.flatnonzero(tie.any(axis=0))
            tie_lo, tie_hi = min(tie_lo, int(cols[0])), max(tie_hi, int(cols[-1]))
            first = np.argmax(tie, axis=1)
            both = rows & has
            if both.any():
                gaps.append(int((first - right - 1)[both].min()))
    if not centers:
        raise EchoCemError("mask proposals: no casing (class 2) in any training mask")
    if tie_hi < 0:
        raise EchoCemError("mask proposals: no TIE (class 1) in any training mask")
    return MaskRanges(casing_center=(min(centers), max(centers)), casing_width=(min(widths), max(widths)),
                      tie_columns=(tie_lo, tie_hi), tie_gap=max(0, min(gaps)) if gaps else 0)


def _shift_rows(layer: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each row of a boolean layer right by its integer offset (pixels pushed out are lost)."""
    h, w = layer.shape
    src = np.arange(w)[None, :] - offsets[:, None]
    inside = (src >= 0) & (src < w)
    return np.take_along_axis(layer, np.clip(src, 0, w - 1), axis=1) & inside


def _smooth_curve(rng: np.random.Generator, n: int, amplitude: float, length: float) -> np.ndarray:
    """A smooth random curve of n values with max |value| = amplitude (correlation ~ length rows)."""
    if amplitude <= 0:
        return np.zeros(n)
    curve = gaussian_filter1d(rng.standard_normal(n + 4 * int(length)), length, mode="wrap")[2 * int(length):][:n]
    peak = np.abs(curve).max()
    return amplitude * curve / peak if peak > 0 else np.zeros(n)


def _interval(rng: np.random.Generator, height: int, length: tuple[int, int]) -> tuple[int, int]:
    size = int(rng.integers(length[0], length[1] + 1))
    start = int(rng.integers(-size // 2, height - size // 2))
    return max(0, start), min(height, start + size)


def propose_mask(mask: np.ndarray, width: int, ranges: MaskRanges, cfg: Mapping[str, Any],
                 rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One proposal from one training mask; returns (int8 (H, W) mask, modification record).

    `cfg` is the params `proposals` block: tie_stretch [lo, hi], tie_warp (px),
    tie_warp_rows, tie_shift (px), absent_prob, absent_rows [lo, hi],
    double_prob, double_rows [lo, hi], double_offset [lo, hi], casing_shift
    (px), casing_width_change (px).
    """
    mask = np.asarray(mask)
    h, w = mask.shape
    if not 1 <= width <= w:
        raise EchoCemError(f"mask proposals: width {width} outside 1..{w}")
    rec: dict[str, Any] = {name: -1 for name, _ in MODIFICATION_FIELDS}

    # casing: shift the centre and change the width within the observed ranges, one band per row
    has, left, right = _row_casing(mask[:, :width])
    center = float(((left + right) / 2)[has].mean()) if has.any() else 0.0
    max_cs = int(cfg["casing_shift"])
    cs_lo = max(-max_cs, int(np.ceil(ranges.casing_center[0] - center)))
    cs_hi = min(max_cs, int(np.floor(ranges.casing_center[1] - center)))
    cs = int(rng.integers(cs_lo, cs_hi + 1)) if cs_lo <= cs_hi and has.any() else 0
    row_width = right - left + 1
    max_dw = int(cfg["casing_width_change"])
    dw_lo = max(-max_dw, ranges.casing_width[0] - int(row_width[has].min())) if has.any() else 0
    dw_hi = min(max_dw, ranges.casing_width[1] - int(row_width[has].max())) if has.any() else 0
    dw = int(rng.integers(dw_lo, dw_hi + 1)) if dw_lo <= dw_hi else 0
    new_left = np.clip(left + cs - dw // 2, 0, width - 1)
    new_right = np.clip(right + cs + (dw - dw // 2), new_left, width - 1)
    rec["casing_shift"], rec["casing_width_change"] = cs, dw

    # TIE: stretch along depth about a random row, then a smooth warp of its column
    tie = mask[:, :width] == TIE
    lo_s, hi_s = (float(v) for v in cfg["tie_stretch"])
    stretch = float(np.exp(rng.uniform(np.log(lo_s), np.log(hi_s))))
    pivot = rng.uniform(0, h - 1)
    src_rows = np.clip(np.rint(pivot + (np.arange(h) - pivot) / stretch), 0, h - 1).astype(np.int64)
    tie = tie[src_rows]
    warp_amp = float(rng.uniform(0.0, float(cfg["tie_warp"])))
    warp = np.rint(_smooth_curve(rng, h, warp_amp, float(cfg["tie_warp_rows"]))).astype(np.int64)
    tie = _shift_rows(tie, warp)
    rec["tie_stretch"], rec["tie_warp"] = stretch, warp_amp

    # TIE: a shift that keeps it within the observed columns and right of the new casing
    if tie.any():
        cols = np.flatnonzero(tie.any(axis=0))
        casing_edge = int(new_right[has].max()) if has.any() else -1
        lowest = max(ranges.tie_columns[0], casing_edge + 1 + ranges.tie_gap)
        highest = min(ranges.tie_columns[1], width - 1)
        max_ts = int(cfg["tie_shift"])
        ts_lo, ts_hi = max(-max_ts, lowest - int(cols[0])), min(max_ts, highest - int(cols[-1]))
        ts = int(rng.integers(ts_lo, ts_hi + 1)) if ts_lo <= ts_hi else 0
        tie = _shift_rows(tie, np.full(h, ts))
        rec["tie_shift"] = ts

        # absent over an interval of rows
        if rng.random() < float(cfg["absent_prob"]):
            a, b = _interval(rng, h, tuple(cfg["absent_rows"]))
            tie[a:b] = False
            rec["absent_from"], rec["absent_to"] = a, b
        # doubled over an interval: a second track right of the first
        if rng.random() < float(cfg["double_prob"]) and tie.any():
            a, b = _interval(rng, h, tuple(cfg["double_rows"]))
            offset = int(rng.integers(cfg["double_offset"][0], cfg["double_offset"][1] + 1))
            second = np.zeros_like(tie)
            second[a:b] = _shift_rows(tie[a:b], np.full(b - a, offset))
            second[:, min(width, ranges.tie_columns[1] + 1):] = False
            tie |= second
            rec["double_from"], rec["double_to"], rec["double_offset"] = a, b, offset

    out = np.full((h, w), PADDING, dtype=np.int8)
    out[:, :width] = BACKGROUND
    cols = np.arange(width)[None, :]
    # the TIE lies right of the casing: pixels a move pushed onto or left of it are dropped
    right_of_casing = cols > np.where(has, new_right + ranges.tie_gap, -1)[:, None]
    out[:, :width][tie & right_of_casing] = TIE
    band = has[:, None] & (cols >= new_left[:, None]) & (cols <= new_right[:, None])
    out[:, :width][band] = CASING
    return out, rec


def propose_masks(masks: np.ndarray, widths: np.ndarray, ids: np.ndarray, n: int, cfg: Mapping[str, Any],
                  rng: np.random.Generator, ranges: MaskRanges | None = None) -> dict[str, np.ndarray]:
    """`n` proposals from the training `masks` (sources taken in a shuffled round-robin).

    Returns the arrays of the generated set's mask side: masks int8 (n, H, W),
    widths int16, source_index int32 (into `masks`), source_id (the training
    patch's stem), and one array per modification (MODIFICATION_FIELDS).
    """
    masks, widths = np.asarray(masks), np.asarray(widths)
    if len(masks) == 0:
        raise EchoCemError("mask proposals: no training masks to start from")
    ranges = ranges or observed_ranges(masks)
    order = np.concatenate([rng.permutation(len(masks)) for _ in range(-(-n // len(masks)))])[:n]
    out = np.empty((n, *masks.shape[1:]), dtype=np.int8)
    records = []
    for k, src in enumerate(tqdm(order, desc="mask proposals", unit="mask", leave=False, dynamic_ncols=True)):
        out[k], rec = propose_mask(masks[src], int(widths[src]), ranges, cfg, rng)
        records.append(rec)
    result = {"masks": out, "widths": widths[order].astype(np.int16), "source_index": order.astype(np.int32),
              "source_id": np.asarray(ids)[order].astype(str)}
    for name, dtype in MODIFICATION_FIELDS:
        result[name] = np.array([r[name] for r in records], dtype=dtype)
    return result


def ranges_dict(ranges: MaskRanges) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(ranges).items()}


def plausibility_problems(mask: np.ndarray, width: int) -> list[str]:
    """Why a mask is not plausible (empty list: it is): labels in {0, 1, 2} on the valid
    columns and -1 beyond them, at most one casing band per row, TIE right of the casing."""
    mask = np.asarray(mask)
    problems = []
    valid, pad = mask[:, :width], mask[:, width:]
    bad = np.setdiff1d(np.unique(valid), [BACKGROUND, TIE, CASING])
    if bad.size:
        problems.append(f"labels {bad.tolist()} on the valid columns")
    if pad.size and not (pad == PADDING).all():
        problems.append("padding columns not all -1")
    cas = valid == CASING
    starts = (cas[:, 1:] & ~cas[:, :-1]).sum(axis=1) + cas[:, 0]
    if (starts > 1).any():
        problems.append(f"{int((starts > 1).sum())} rows with more than one casing band")
    has, _, right = _row_casing(valid)
    tie = valid == TIE
    left_of = tie & (np.arange(width)[None, :] <= right[:, None]) & has[:, None]
    if left_of.any():
        problems.append(f"{int(left_of.any(axis=1).sum())} rows with TIE pixels not right of the casing")
    return problems
