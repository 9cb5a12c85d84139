"""Sections as continuous depth strips: stitching, cutting back, windowed inference.

The patches of one section are consecutive 160-row slices of one image, in
patch-number order along depth. A network that sees only one patch cannot use
the rows just above and below it, so the TIE track is guessed afresh at every
patch border. This module rebuilds the strips and runs a network over them:

- `section_runs` groups patches into runs: the patches of one section with
  consecutive patch numbers and one width, in depth order. A gap in the patch
  numbers (a missing patch) starts a new run, so patches that were not
  neighbours in the image are never glued together; a lone patch is a run of one.
- `stitch` / `cut` turn a run's patches into one strip (rows = 160 x patches)
  and back, for any per-patch array (images, masks, probabilities with a class
  axis in front). Narrow patches keep their zero / -1 padding columns on the
  right: the strip has the full padded width and its padding is the patches'.
- `windowed_predict` runs a `predict` callable over overlapping windows of a
  strip and blends them with a depth taper, so every row is predicted mostly
  by windows in which it sits far from an edge; `flip_tta` and `ensemble`
  wrap predict callables; `predict_runs` does the whole round trip.
- `border_windows` / `window_index` draw training windows that straddle patch
  borders, so the network also learns on the context it is given at inference.

Rows are depth, columns are time: the only flip here is along rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from echocem.io import EchoCemError

PATCH_ROWS = 160

# a batch of windows (B, C_in, h, W) -> class probabilities (B, C, h, W)
PredictFn = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class Run:
    """Consecutive patches of one section, in depth order.

    `indices` are positions in the split's arrays (top patch first), `patches`
    their patch numbers (consecutive), `width` their common true width.
    """

    well: int
    section: int
    patches: tuple[int, ...]
    indices: tuple[int, ...]
    width: int

    @property
    def n_patches(self) -> int:
        return len(self.indices)

    @property
    def rows(self) -> int:
        return PATCH_ROWS * len(self.indices)

    @property
    def borders(self) -> tuple[int, ...]:
        """Strip rows where one patch ends and the next begins (none for a one-patch run)."""
        return tuple(PATCH_ROWS * k for k in range(1, len(self.indices)))


def section_runs(
    well: Sequence[int] | np.ndarray,
    section: Sequence[int] | np.ndarray,
    patch: Sequence[int] | np.ndarray,
    widths: Sequence[int] | np.ndarray,
) -> list[Run]:
    """Group patches into runs of depth-adjacent patches, ordered by (well, section, first patch).

    The input order does not matter. A run breaks where a patch number is
    missing or the width changes (two widths cannot be one image).
    """
    well = np.asarray(well).reshape(-1)
    section = np.asarray(section).reshape(-1)
    patch = np.asarray(patch).reshape(-1)
    widths = np.asarray(widths).reshape(-1)
    n = well.shape[0]
    for name, arr in (("section", section), ("patch", patch), ("widths", widths)):
        if arr.shape[0] != n:
            raise EchoCemError(f"section_runs: {arr.shape[0]} values of {name} for {n} patches")
    if n == 0:
        return []
    order = np.lexsort((patch, section, well))
    w, s, p, wd = well[order], section[order], patch[order], widths[order]
    same_place = (w[1:] == w[:-1]) & (s[1:] == s[:-1])
    dup = same_place & (p[1:] == p[:-1])
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        raise EchoCemError(
            f"section_runs: well {w[k]} section {s[k]} patch {p[k]} appears twice "
            f"(positions {int(order[k])} and {int(order[k + 1])})"
        )
    breaks = ~(same_place & (p[1:] == p[:-1] + 1) & (wd[1:] == wd[:-1]))
    starts = np.r_[0, np.flatnonzero(breaks) + 1]
    ends = np.r_[starts[1:], n]
    return [
        Run(well=int(w[a]), section=int(s[a]), patches=tuple(int(x) for x in p[a:b]),
            indices=tuple(int(x) for x in order[a:b]), width=int(wd[a]))
        for a, b in zip(starts, ends)
    ]


def runs_from_split(data: Mapping[str, np.ndarray]) -> list[Run]:
    """Runs of an ingested split (a dict with `well`, `section`, `patch`, `widths`)."""
    missing = [k for k in ("well", "section", "patch", "widths") if k not in data]
    if missing:
        raise EchoCemError(f"runs_from_split: arrays {missing} missing")
    return section_runs(data["well"], data["section"], data["patch"], data["widths"])


def runs_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run: well, section, first_patch, last_patch, n_patches, rows, width."""
    return pd.DataFrame(
        [{"well": r.well, "section": r.section, "first_patch": r.patches[0], "last_patch": r.patches[-1],
          "n_patches": r.n_patches, "rows": r.rows, "width": r.width} for r in runs],
        columns=["well", "section", "first_patch", "last_patch", "n_patches", "rows", "width"],
    )


def check_cover(runs: Sequence[Run], n: int) -> None:
    """Every patch 0..n-1 in exactly one run (what `cut_all` needs to fill an array)."""
    idx = np.fromiter((i for r in runs for i in r.indices), dtype=np.int64)
    counts = np.bincount(idx, minlength=n) if idx.size else np.zeros(n, dtype=np.int64)
    if counts.shape[0] != n or (counts != 1).any():
        bad = np.flatnonzero(counts != 1)[:5].tolist()
        raise EchoCemError(f"runs do not cover the {n} patches exactly once (e.g. positions {bad})")


def chunk_runs(runs: Sequence[Run], max_patches: int) -> list[tuple[np.ndarray, list[Run]]]:
    """Whole runs grouped into chunks of at most `max_patches` patches (a longer run is a chunk alone).

    Each chunk is (idx, local_runs): `idx` the split positions of its patches,
    `local_runs` the same runs re-indexed to positions in `idx`, so that
    `predict_runs(x[idx], widths[idx], local_runs, ...)` predicts the chunk and
    its result goes back with `out[idx] = ...`. Bounds memory without ever
    cutting a section in two (chunking by patch index would).
    """
    if max_patches < 1:
        raise EchoCemError(f"chunk_runs: max_patches must be >= 1, got {max_patches}")
    chunks: list[list[Run]] = []
    size = 0
    for run in runs:
        if chunks and size + run.n_patches <= max_patches:
            chunks[-1].append(run)
            size += run.n_patches
        else:
            chunks.append([run])
            size = run.n_patches
    out = []
    for group in chunks:
        idx = np.fromiter((i for r in group for i in r.indices), dtype=np.int64)
        local, start = [], 0
        for r in group:
            local.append(Run(r.well, r.section, r.patches, tuple(range(start, start + r.n_patches)), r.width))
            start += r.n_patches
        out.append((idx, local))
    return out


# --------------------------------------------------------------------------- stitch and cut


def stitch(per_patch: Any, run: Run) -> Any:
    """(..., 160 x n, W) strip of a run from a per-patch array (N, ..., 160, W).

    Works on NumPy arrays and torch tensors alike (the leading axes, e.g. a
    class axis of probabilities, are kept in front of the rows).
    """
    if per_patch.shape[-2] != PATCH_ROWS:
        raise EchoCemError(f"stitch: patches must have {PATCH_ROWS} rows, got shape {tuple(per_patch.shape)}")
    idx = list(run.indices)
    part = per_patch[idx]  # (n, ..., H, W)
    n, h, w = part.shape[0], part.shape[-2], part.shape[-1]
    lead = tuple(part.shape[1:-2])
    # (n, *lead, H, W) -> (*lead, n, H, W) -> (*lead, n*H, W): patch k becomes rows k*H..(k+1)*H
    perm = (*range(1, 1 + len(lead)), 0, len(lead) + 1, len(lead) + 2)
    moved = part.transpose(perm) if isinstance(part, np.ndarray) else part.permute(perm)
    return moved.reshape(*lead, n * h, w)


def cut(strip: Any, run: Run) -> Any:
    """(n, ..., 160, W) patches of a run from its strip (..., 160 x n, W): the inverse of `stitch`."""
    n = run.n_patches
    if strip.shape[-2] != run.rows:
        raise EchoCemError(f"cut: the strip has {strip.shape[-2]} rows, the run needs {run.rows} "
                           f"({n} patches of well {run.well} section {run.section})")
    lead = tuple(strip.shape[:-2])
    w = strip.shape[-1]
    split = strip.reshape(*lead, n, PATCH_ROWS, w)
    perm = (len(lead), *range(len(lead)), len(lead) + 1, len(lead) + 2)
    return split.transpose(perm) if isinstance(split, np.ndarray) else split.permute(perm)


def stitch_all(per_patch: Any, runs: Sequence[Run]) -> list[Any]:
    """The strip of every run, in run order."""
    return [stitch(per_patch, r) for r in runs]


def cut_all(strips: Sequence[Any], runs: Sequence[Run], n: int) -> np.ndarray:
    """(n, ..., 160, W) NumPy array in split order, filled from one strip per run."""
    if len(strips) != len(runs):
        raise EchoCemError(f"cut_all: {len(strips)} strips for {len(runs)} runs")
    check_cover(runs, n)
    if n == 0:
        raise EchoCemError("cut_all: no patches")
    first = np.asarray(strips[0])
    out = np.empty((n, *first.shape[:-2], PATCH_ROWS, first.shape[-1]), dtype=first.dtype)
    for strip, run in zip(strips, runs):
        out[list(run.indices)] = cut(np.asarray(strip), run)
    return out


# --------------------------------------------------------------------------- windowed inference


def window_starts(rows: int, window_rows: int, stride_rows: int) -> np.ndarray:
    """First rows of the windows over a strip of `rows` rows.

    Windows start every `stride_rows`; the last one is pulled back so that it
    ends on the strip's last row. A strip no longer than a window is one window
    of its own height (start 0).
    """
    if window_rows < 1 or not (1 <= stride_rows <= window_rows):
        raise EchoCemError(f"windows: need window_rows >= 1 and 1 <= stride_rows <= window_rows; "
                           f"got window_rows={window_rows}, stride_rows={stride_rows}")
    if rows < 1:
        raise EchoCemError(f"windows: a strip needs at least one row, got {rows}")
    if rows <= window_rows:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, rows - window_rows + 1, stride_rows, dtype=np.int64)
    if starts[-1] != rows - window_rows:
        starts = np.r_[starts, rows - window_rows]
    return starts


def depth_taper(height: int, first: bool, last: bool) -> np.ndarray:
    """(height,) blending weight of a window's rows: a Hann bump, positive everywhere.

    Rows near a window edge have seen little context on that side, so they
    weigh little where another window covers them. At the strip's own top
    (`first`) or bottom (`last`) no other window has more context, so that half
    of the window keeps weight 1 instead of tapering to near 0.
    """
    r = np.arange(height, dtype=np.float64)
    w = np.sin(np.pi * (r + 0.5) / height) ** 2
    half = height / 2.0
    if first:
        w[r < half] = 1.0
    if last:
        w[r >= half] = 1.0
    return w


def _as_strip(strip: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(strip)
    if x.ndim == 2:
        x = x.unsqueeze(0)
    if x.ndim != 3:
        raise EchoCemError(f"windowed_predict: strip must be (rows, W) or (C, rows, W); got {tuple(x.shape)}")
    return x.float()


def windowed_predict_many(
    strips: Sequence[np.ndarray | torch.Tensor],
    predict: PredictFn,
    window_rows: int = PATCH_ROWS * 2,
    stride_rows: int = PATCH_ROWS,
    batch_size: int = 8,
    done: Callable[[int], None] | None = None,
) -> list[np.ndarray]:
    """float32 (C, rows, W) probabilities of each strip, blended over overlapping windows.

    Each strip is (rows, W) (one input channel) or (C_in, rows, W), already
    normalised. `predict` gets float32 batches (B, C_in, h, W) on the CPU (it
    moves them to its device) and returns (B, C, h, W). Every output row is the
    taper-weighted mean of the windows covering it.

    The windows of all strips share batches: a section of a few patches has a
    few windows, and batching strip by strip would leave most of each batch
    empty (one window per call for patch-by-patch prediction). A batch holds
    windows of one shape, `batch_size` patches' worth of rows (a 320-row window
    counts as 2 patches; at least one window), so its memory does not grow with
    the window. `done(k)` is called once strip k has all its windows.
    """
    if batch_size < 1:
        raise EchoCemError(f"windowed_predict: batch_size must be >= 1, got {batch_size}")
    xs = [_as_strip(s) for s in strips]
    starts = [window_starts(int(x.shape[1]), window_rows, stride_rows) for x in xs]
    # windows of one height, input channels and width can share a batch; every window of
    # a strip has the strip's shape, so each strip lies in one group
    groups: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
    for k, x in enumerate(xs):
        key = (min(int(x.shape[1]), window_rows), int(x.shape[0]), int(x.shape[2]))
        groups.setdefault(key, []).extend((k, int(s)) for s in starts[k])
    acc: list[torch.Tensor | None] = [None] * len(xs)
    total = [torch.zeros(int(x.shape[1]), dtype=torch.float64) for x in xs]
    left = [len(s) for s in starts]
    for (h, _, width), windows in groups.items():
        per_batch = max(1, (batch_size * PATCH_ROWS) // h)
        for lo in range(0, len(windows), per_batch):
            chunk = windows[lo:lo + per_batch]
            batch = torch.stack([xs[k][:, s:s + h] for k, s in chunk])
            probs = predict(batch)
            if probs.ndim != 4 or probs.shape[0] != len(chunk) or tuple(probs.shape[2:]) != (h, width):
                raise EchoCemError(f"windowed_predict: predict returned shape {tuple(probs.shape)} for a batch "
                                   f"of shape {tuple(batch.shape)}; expected ({len(chunk)}, C, {h}, {width})")
            probs = probs.detach().to("cpu", torch.float64)
            for (k, s), p in zip(chunk, probs):
                rows = int(xs[k].shape[1])
                w = torch.from_numpy(depth_taper(h, first=s == 0, last=s + h == rows))
                if acc[k] is None:
                    acc[k] = torch.zeros((p.shape[0], rows, width), dtype=torch.float64)
                acc[k][:, s:s + h] += p * w[None, :, None]
                total[k][s:s + h] += w
                left[k] -= 1
                if left[k] == 0 and done is not None:
                    done(k)
    return [(a / t[None, :, None]).to(torch.float32).numpy() for a, t in zip(acc, total)]


def windowed_predict(
    strip: np.ndarray | torch.Tensor,
    predict: PredictFn,
    window_rows: int = PATCH_ROWS * 2,
    stride_rows: int = PATCH_ROWS,
    batch_size: int = 8,
) -> np.ndarray:
    """float32 (C, rows, W) probabilities of one strip (`windowed_predict_many`)."""
    return windowed_predict_many([strip], predict, window_rows, stride_rows, batch_size)[0]


def model_predictor(model: torch.nn.Module, device: str, channels_last: bool = True) -> PredictFn:
    """A predict callable from a segmentation network: softmax probabilities of a batch.

    Same precision rules as `echocem.seg.unet.predict_proba` (bf16 autocast on
    CUDA, float32 on CPU, inference mode); the batch moves to `device` here.
    """
    from echocem.seg.unet import inference_context, to_memory_format

    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)

    def predict(batch: torch.Tensor) -> torch.Tensor:
        with inference_context(device):
            x = to_memory_format(batch.to(device, non_blocking=True), channels_last)
            return torch.softmax(model(x).float(), dim=1)

    return predict


def flip_tta(predict: PredictFn) -> PredictFn:
    """`predict` averaged with its depth-flipped twin: (p(x) + flip(p(flip(x)))) / 2.

    The flip is along rows (depth) only: a well logged upward looks like one
    logged downward, but echoes arrive in time order, so columns never flip.
    """
    flipped = depth_flipped(predict)

    def predict_tta(batch: torch.Tensor) -> torch.Tensor:
        return (predict(batch) + flipped(batch)) / 2

    return predict_tta


def depth_flipped(predict: PredictFn) -> PredictFn:
    """TTA's second view alone: flip(p(flip(x))), rows (depth) flipped in and back out. Averaged
    with the plain prediction it is `flip_tta`'s, so a caller that needs both the plain and the
    TTA probabilities runs the network over the flipped view once more, not twice."""
    def predict_flipped(batch: torch.Tensor) -> torch.Tensor:
        return predict(batch.flip(-2)).flip(-2)

    return predict_flipped


def ensemble(predicts: Sequence[PredictFn], weights: Sequence[float] | None = None) -> PredictFn:
    """A predict callable averaging the probabilities of several models (weighted mean)."""
    predicts = list(predicts)
    if not predicts:
        raise EchoCemError("ensemble: no model given")
    w = _weights(weights, len(predicts))

    def predict_mean(batch: torch.Tensor) -> torch.Tensor:
        out = None
        for f, wk in zip(predicts, w):
            p = f(batch)
            out = p * wk if out is None else out + p * wk
        return out

    return predict_mean


def average_probs(probs: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """float32 weighted mean of several models' probability arrays of one shape (e.g. stored float16)."""
    arrays = [np.asarray(p) for p in probs]
    if not arrays:
        raise EchoCemError("average_probs: no probabilities given")
    shape = arrays[0].shape
    for k, a in enumerate(arrays):
        if a.shape != shape:
            raise EchoCemError(f"average_probs: array {k} has shape {a.shape}, array 0 has {shape}")
    w = _weights(weights, len(arrays))
    out = np.zeros(shape, dtype=np.float32)
    for a, wk in zip(arrays, w):
        out += np.float32(wk) * a.astype(np.float32, copy=False)
    return out


def _weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    """Weights normalised to sum 1 (equal when None); EchoCemError on a bad list."""
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != n or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise EchoCemError(f"ensemble weights must be {n} finite non-negative numbers with a positive sum; "
                           f"got {list(np.asarray(weights).reshape(-1))}")
    return w / w.sum()


def background_padding(probs: np.ndarray, widths: Sequence[int] | np.ndarray) -> np.ndarray:
    """(N, C, H, W) probabilities with every padding column set to background 1 (in place).

    Blending can leave 0.99999994 where the network said 1: padding is set
    exactly, as `echocem.seg.unet.predict_proba` leaves it.
    """
    widths = np.asarray(widths).reshape(-1)
    if widths.shape[0] != probs.shape[0]:
        raise EchoCemError(f"background_padding: {widths.shape[0]} widths for {probs.shape[0]} patches")
    for wd in np.unique(widths):
        if wd >= probs.shape[-1]:
            continue
        sel = np.flatnonzero(widths == wd)
        probs[sel, :, :, int(wd):] = 0
        probs[sel, 0, :, int(wd):] = 1
    return probs


def predict_runs(
    x: np.ndarray | torch.Tensor,
    widths: Sequence[int] | np.ndarray,
    runs: Sequence[Run],
    predict: PredictFn,
    window_rows: int = PATCH_ROWS * 2,
    stride_rows: int = PATCH_ROWS,
    batch_size: int = 8,
    progress: Callable[[Run], None] | None = None,
) -> np.ndarray:
    """float32 (N, C, 160, W) per-patch probabilities, predicted run by run.

    `x` holds the normalised inputs, (N, 160, W) or (N, C_in, 160, W), in split
    order; `runs` must cover its N patches once. Each run is stitched, run
    through `windowed_predict_many` (the windows of all runs share batches of
    `batch_size` patches' worth of rows), cut back; padding columns end as
    background 1 (as `echocem.seg.unet.predict_proba` leaves them).
    `progress(run)` is called once a run is predicted (e.g. a tqdm update).
    """
    n = int(x.shape[0])
    check_cover(runs, n)
    done = None if progress is None else (lambda k: progress(runs[k]))
    strips = windowed_predict_many([stitch(x, run) for run in runs], predict, window_rows, stride_rows,
                                   batch_size, done)
    return background_padding(cut_all(strips, runs, n), widths)


# --------------------------------------------------------------------------- training windows


def border_windows(
    runs: Sequence[Run],
    rng: np.random.Generator,
    window_rows: int = PATCH_ROWS,
    per_border: int = 1,
    margin: int = 16,
) -> pd.DataFrame:
    """Training windows that straddle patch borders: one row per window (run, start).

    For every border of every run, `per_border` windows of `window_rows` rows
    start at random (from `rng`) so that at least `margin` rows lie on each
    side of the border, and the window lies inside its run. Runs shorter than a
    window, or of one patch, have no border window. Columns: run (index into
    `runs`), start (strip row), border (strip row of the crossed border).
    """
    if window_rows < 2 or not (1 <= margin <= window_rows // 2):
        raise EchoCemError(f"border_windows: need window_rows >= 2 and 1 <= margin <= window_rows // 2; "
                           f"got window_rows={window_rows}, margin={margin}")
    if per_border < 1:
        raise EchoCemError(f"border_windows: per_border must be >= 1, got {per_border}")
    run_ids, lows, highs, borders = [], [], [], []
    for k, run in enumerate(runs):
        if run.rows < window_rows:
            continue
        for b in run.borders:
            # start in [b - window + margin, b - margin], clipped to keep the window in the strip
            lo = max(0, b - window_rows + margin)
            hi = min(run.rows - window_rows, b - margin)
            if lo > hi:
                continue
            run_ids.append(k)
            lows.append(lo)
            highs.append(hi)
            borders.append(b)
    run_arr = np.repeat(np.asarray(run_ids, dtype=np.int64), per_border)
    lo_arr = np.repeat(np.asarray(lows, dtype=np.int64), per_border)
    hi_arr = np.repeat(np.asarray(highs, dtype=np.int64), per_border)
    starts = rng.integers(lo_arr, hi_arr + 1) if run_arr.size else np.zeros(0, dtype=np.int64)
    return pd.DataFrame({"run": run_arr, "start": np.asarray(starts, dtype=np.int64),
                         "border": np.repeat(np.asarray(borders, dtype=np.int64), per_border)})


def window_index(runs: Sequence[Run], windows: pd.DataFrame, window_rows: int = PATCH_ROWS
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(patch_idx, row_idx), both int64 (M, window_rows): where each window row comes from.

    Row r of window m is row `row_idx[m, r]` of patch `patch_idx[m, r]` (a
    position in the split), so windows can be gathered straight from per-patch
    arrays, also from tensors already on a GPU:
    `x[patch_idx, :, row_idx]` for x (N, C, 160, W) gives (M, h, C, W).
    """
    m = len(windows)
    patch_idx = np.empty((m, window_rows), dtype=np.int64)
    row_idx = np.empty((m, window_rows), dtype=np.int64)
    offsets = np.arange(window_rows, dtype=np.int64)
    for j, (k, s) in enumerate(zip(windows["run"].to_numpy(), windows["start"].to_numpy())):
        run = runs[int(k)]
        if s < 0 or s + window_rows > run.rows:
            raise EchoCemError(f"window_index: window {j} (start {s}, {window_rows} rows) leaves run {k} "
                               f"of {run.rows} rows")
        strip_rows = int(s) + offsets
        patch_idx[j] = np.asarray(run.indices, dtype=np.int64)[strip_rows // PATCH_ROWS]
        row_idx[j] = strip_rows % PATCH_ROWS
    return patch_idx, row_idx


def gather_windows(per_patch: np.ndarray, patch_idx: np.ndarray, row_idx: np.ndarray) -> np.ndarray:
    """(M, ..., h, W) windows from a per-patch array (N, ..., 160, W) and `window_index` output."""
    arr = np.asarray(per_patch)
    picked = arr[patch_idx, ..., row_idx, :]  # (M, h, ..., W): advanced indices go first
    return np.moveaxis(picked, 1, -2)


def training_windows(
    data: Mapping[str, np.ndarray],
    runs: Sequence[Run],
    rng: np.random.Generator,
    window_rows: int = PATCH_ROWS,
    per_border: int = 1,
    margin: int = 16,
) -> dict[str, np.ndarray]:
    """Border-crossing windows of a labelled split, in the ingested layout.

    `data` holds `images` (N, 160, W) and `masks` (N, 160, W); returns
    images/masks of shape (M, window_rows, W), `widths` (M,), `well` (M,), and
    `run`/`start` (where each window lies). With the default 160 rows the
    windows are drop-in extra training patches.
    """
    for key in ("images", "masks"):
        if key not in data:
            raise EchoCemError(f"training_windows: array {key!r} missing")
    windows = border_windows(runs, rng, window_rows, per_border, margin)
    patch_idx, row_idx = window_index(runs, windows, window_rows)
    width = np.asarray([runs[int(k)].width for k in windows["run"]], dtype=np.int16)
    out = {
        "images": gather_windows(data["images"], patch_idx, row_idx),
        "masks": gather_windows(data["masks"], patch_idx, row_idx),
        "widths": width,
        "well": np.asarray([runs[int(k)].well for k in windows["run"]], dtype=np.int32),
        "run": windows["run"].to_numpy(),
        "start": windows["start"].to_numpy(),
    }
    return out
