"""Normalisation and well-grouped splits (stage preprocess), applied on the fly downstream.

Normalisation: a global robust z-score, x = clip((raw - median) / (1.4826 * MAD), +-clip),
padding columns set to 0. The median and MAD are fitted once on the valid pixels of the
TRAINING wells only (never the validation wells), exactly, from an int16 histogram.
Why: most pixels are background noise, so the MAD measures the noise level (about the
real std of 25-29) without being pulled by the rare strong casing peaks and glitch rows;
one global scale keeps the physical contrast between casing (strong), TIE (weaker) and
noise that a per-patch min-max would erase, and clipping bounds glitches and peaks.
The constants live in normalization.json; `normalize` works on NumPy arrays and on torch
tensors (so the GPU path normalises on the device) with the same float32 arithmetic.

Splits: `val_wells` (params) are held out entirely; the other wells are `train_wells`,
grouped into K out-of-fold folds balanced by patch count. No patch of a validation well
is ever in `train_wells` (checked when splits are loaded). `selection_sections`: whole
sections of the validation wells, spread evenly, at most `selection_patches` patches:
what the networks choose their epoch on (each epoch's validation pass), and the
held-out set of the generator's judge and of the augmentation study. The ladder
scores every validation patch: validation costs inference only, so the validation
wells can hold many more patches than an epoch can afford to predict.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from echocem.io import EchoCemError, load_json, load_npz

METHOD = "global_robust_zscore"
MAD_TO_STD = 1.4826  # MAD of a Gaussian times this is its std
DEFAULT_CLIP = 20.0


def _valid_pixels(images: np.ndarray, widths: np.ndarray) -> np.ndarray:
    valid = np.arange(images.shape[-1])[None, None, :] < np.asarray(widths)[:, None, None]
    return images[np.broadcast_to(valid, images.shape)]


def _histogram_median(hist: np.ndarray, offset: int) -> float:
    """Exact median of integer data given as a histogram of (value + offset)."""
    cum = np.cumsum(hist)
    total = int(cum[-1])
    lo = int(np.searchsorted(cum, (total - 1) // 2, side="right"))  # value at sorted position k
    hi = int(np.searchsorted(cum, total // 2, side="right"))
    return (lo + hi) / 2 - offset


def fit_normalization(images: np.ndarray, widths: np.ndarray, clip: float = DEFAULT_CLIP) -> dict[str, Any]:
    """Median and MAD-based scale of the valid pixels of `images` (the training wells)."""
    if len(images) == 0:
        raise EchoCemError("fit_normalization: no training patches to fit on")
    v = _valid_pixels(np.asarray(images), widths)
    if np.issubdtype(v.dtype, np.integer):
        v = v.astype(np.int64)
        lo = int(v.min())
        center = _histogram_median(np.bincount(v - lo), -lo)
        dev = np.abs(2 * v - int(round(2 * center)))  # 2|x - median|: integers even for a .5 median
        mad = _histogram_median(np.bincount(dev), 0) / 2
    else:
        v = v.astype(np.float64)
        center = float(np.median(v))
        mad = float(np.median(np.abs(v - center)))
    scale = MAD_TO_STD * mad
    if not scale > 0:
        raise EchoCemError("fit_normalization: the training pixels have no spread (MAD = 0)")
    return {"method": METHOD, "center": round(float(center), 6), "scale": round(float(scale), 6),
            "clip": float(clip), "n_pixels": int(v.size)}


def normalize(images: Any, widths: Any, spec: Mapping[str, Any]) -> Any:
    """float32 (N, H, W) of the same kind (NumPy or torch, same device): z-scored, clipped,
    columns j >= width set to 0. Same values both ways (float32 subtract, divide, clip)."""
    center, scale, clip = float(spec["center"]), float(spec["scale"]), float(spec["clip"])
    if isinstance(images, np.ndarray):
        x = (images.astype(np.float32) - np.float32(center)) / np.float32(scale)
        np.clip(x, -clip, clip, out=x)
        pad = np.arange(x.shape[-1])[None, None, :] >= np.asarray(widths).reshape(-1, 1, 1)
        x[np.broadcast_to(pad, x.shape)] = 0.0
        return x
    import torch

    if not isinstance(images, torch.Tensor):
        raise EchoCemError(f"normalize: expected a NumPy array or a torch tensor, got {type(images).__name__}")
    x = (images.to(torch.float32) - center) / torch.tensor(scale, dtype=torch.float32, device=images.device)
    x = x.clamp_(-clip, clip)
    w = torch.as_tensor(widths, device=images.device).reshape(-1, 1, 1)
    pad = torch.arange(x.shape[-1], device=images.device)[None, None, :] >= w
    return x.masked_fill_(pad, 0.0)


LABELLED_KEYS = ("images", "masks", "widths", "ids", "well")


def load_labelled(path: str | Path) -> dict[str, np.ndarray]:
    """The ingested training split (data/ingested/train.npz), its arrays checked."""
    data = load_npz(path)
    missing = [k for k in LABELLED_KEYS if k not in data]
    if missing:
        raise EchoCemError(f"{path}: arrays {missing} missing")
    return data


def load_normalization(path: str | Path) -> dict[str, Any]:
    """normalization.json, checked: method, center, scale > 0, clip > 0."""
    spec = load_json(path)
    if not isinstance(spec, dict) or spec.get("method") != METHOD:
        raise EchoCemError(f"{path}: expected a normalisation spec with method {METHOD!r}")
    for key in ("center", "scale", "clip"):
        value = spec.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
            raise EchoCemError(f"{path}: key {key} must be a finite number, got {value!r}")
    if spec["scale"] <= 0 or spec["clip"] <= 0:
        raise EchoCemError(f"{path}: scale and clip must be > 0")
    return spec


def make_splits(wells: np.ndarray, val_wells: Sequence[int], n_folds: int) -> dict[str, Any]:
    """Hold out `val_wells`; the other wells form K folds balanced by patch count (greedy, deterministic)."""
    present, counts = np.unique(np.asarray(wells), return_counts=True)
    absent = sorted(set(int(w) for w in val_wells) - set(present.tolist()))
    if absent:
        raise EchoCemError(f"params preprocess.val_wells: well(s) {absent} not in the training data "
                           f"(wells present: {present.tolist()})")
    if len(set(val_wells)) != len(val_wells):
        raise EchoCemError(f"params preprocess.val_wells: repeated wells in {list(val_wells)}")
    train = [(int(w), int(c)) for w, c in zip(present, counts) if int(w) not in set(val_wells)]
    if len(train) < n_folds:
        raise EchoCemError(f"params preprocess.oof_folds: {n_folds} folds need at least {n_folds} training "
                           f"wells; only {[w for w, _ in train]} remain after the validation wells")
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    load = [0] * n_folds
    for w, c in sorted(train, key=lambda wc: (-wc[1], wc[0])):
        k = int(np.argmin(load))
        folds[k].append(w)
        load[k] += c
    return {"val_wells": sorted(int(w) for w in val_wells), "train_wells": [w for w, _ in train],
            "oof_folds": sorted(sorted(f) for f in folds)}


def selection_sections(wells: np.ndarray, sections: np.ndarray, val_wells: Sequence[int],
                       max_patches: int | None) -> list[list[int]]:
    """[[well, section], ...] of the validation wells: whole sections, spread evenly over the
    wells' sections in (well, section) order, as many as fit in `max_patches` patches (at least
    one section; None: every section). Deterministic: no random draw."""
    wells, sections = np.asarray(wells).reshape(-1), np.asarray(sections).reshape(-1)
    val = np.isin(wells, np.asarray(list(val_wells), dtype=np.int64))
    if not val.any():
        raise EchoCemError(f"params preprocess.val_wells: no patch of the wells {list(val_wells)}")
    return spread_sections(wells[val], sections[val], max_patches)


def spread_sections(wells: np.ndarray, sections: np.ndarray, max_patches: int | None) -> list[list[int]]:
    """[[well, section], ...] of the given patches: whole sections evenly spaced in (well, section)
    order, the most that fit in `max_patches` patches (at least one; None: all)."""
    keys, counts = np.unique(np.stack([np.asarray(wells).reshape(-1), np.asarray(sections).reshape(-1)], axis=1),
                             axis=0, return_counts=True)
    chosen = np.arange(len(keys))
    if max_patches is not None:
        for m in range(len(keys), 0, -1):
            chosen = np.unique(np.linspace(0, len(keys) - 1, m).round().astype(int))
            if counts[chosen].sum() <= max_patches:
                break
    return [[int(w), int(s)] for w, s in keys[chosen]]


def refit_indices(wells: np.ndarray, sections: np.ndarray, train_idx: np.ndarray,
                  val_idx: np.ndarray) -> np.ndarray:
    """The patches a refit trains on (ascending): every training patch, and of each validation
    well at most as many patches as the largest training well has (whole sections, spread evenly).

    Why the cap: validation costs inference only, so a validation well may hold many more
    patches than any training well (the embedded default's does); the refit learns the
    wells in about the proportions the selected run saw instead of mostly that one well.
    On data whose validation wells are no larger than the largest training well it keeps
    every labelled patch.
    """
    wells, sections = np.asarray(wells).reshape(-1), np.asarray(sections).reshape(-1)
    cap = int(np.unique(wells[train_idx], return_counts=True)[1].max())
    keep = [np.asarray(train_idx, dtype=np.int64)]
    for w in np.unique(wells[val_idx]):
        idx = np.asarray(val_idx)[wells[val_idx] == w]
        chosen = {s for _, s in spread_sections(wells[idx], sections[idx], cap)}
        keep.append(idx[np.isin(sections[idx], list(chosen))])
    return np.sort(np.concatenate(keep))


def selection_indices(wells: np.ndarray, sections: np.ndarray, splits: Mapping[str, Any]) -> np.ndarray:
    """Indices (ascending) of the patches that select the networks' epochs: those of
    splits["selection_sections"], or every validation patch where splits.json has none."""
    chosen = splits.get("selection_sections")
    if chosen is None:
        return split_indices(wells, splits["val_wells"])
    wanted = {(int(w), int(s)) for w, s in chosen}
    pairs = zip(np.asarray(wells).reshape(-1).tolist(), np.asarray(sections).reshape(-1).tolist())
    return np.asarray([i for i, key in enumerate(pairs) if key in wanted], dtype=np.int64)


def load_splits(path: str | Path) -> dict[str, Any]:
    """splits.json, checked: integer well lists, validation and training wells disjoint,
    folds a partition of the training wells, selection sections (optional) of validation wells."""
    splits = load_json(path)
    if not isinstance(splits, dict):
        raise EchoCemError(f"{path}: expected a mapping with val_wells, train_wells, oof_folds")
    for key in ("val_wells", "train_wells"):
        v = splits.get(key)
        if not isinstance(v, list) or not v or not all(isinstance(w, int) for w in v):
            raise EchoCemError(f"{path}: key {key} must be a non-empty list of well numbers, got {v!r}")
    folds = splits.get("oof_folds")
    if not isinstance(folds, list) or not all(isinstance(f, list) and all(isinstance(w, int) for w in f)
                                              for f in folds):
        raise EchoCemError(f"{path}: key oof_folds must be a list of lists of well numbers")
    leak = sorted(set(splits["val_wells"]) & set(splits["train_wells"]))
    if leak:
        raise EchoCemError(f"{path}: wells {leak} are both validation and training wells")
    fold_wells = [w for f in folds for w in f]
    if folds and sorted(fold_wells) != sorted(splits["train_wells"]):
        raise EchoCemError(f"{path}: oof_folds {folds} do not partition train_wells {splits['train_wells']}")
    chosen = splits.get("selection_sections")
    if chosen is not None:
        if (not isinstance(chosen, list) or not chosen
                or not all(isinstance(p, list) and len(p) == 2 and all(isinstance(v, int) for v in p) for p in chosen)):
            raise EchoCemError(f"{path}: key selection_sections must be a non-empty list of [well, section] pairs")
        outside = sorted({w for w, _ in chosen} - set(splits["val_wells"]))
        if outside:
            raise EchoCemError(f"{path}: selection_sections name wells {outside} that are not validation wells")
    return {"val_wells": splits["val_wells"], "train_wells": splits["train_wells"], "oof_folds": folds,
            "selection_sections": chosen}


def split_indices(wells_array: np.ndarray, wells: Sequence[int]) -> np.ndarray:
    """Indices (ascending) of the patches whose well is in `wells`."""
    return np.flatnonzero(np.isin(np.asarray(wells_array), np.asarray(list(wells), dtype=np.int64)))


def preview_figure(data: Mapping[str, np.ndarray], spec: Mapping[str, Any], splits: Mapping[str, Any],
                   n_wells: int = 4) -> Any:
    """Image/mask pairs, one middle patch of each of up to `n_wells` wells (val wells marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    val = [int(w) for w in splits["val_wells"]][:n_wells]
    others = [int(w) for w in np.unique(data["well"]) if int(w) not in val]
    n_other = min(n_wells - len(val), len(others))
    picks = np.linspace(0, len(others) - 1, n_other).round().astype(int) if n_other > 0 else []
    chosen = sorted(val + [others[k] for k in picks])  # the validation wells always shown
    fig, axes = plt.subplots(2, len(chosen), figsize=(3.2 * len(chosen), 5.8), squeeze=False)
    cmap = ListedColormap(["#f0f0f0", "#2b8cbe", "#e34a33"])
    for j, w in enumerate(chosen):
        idx = split_indices(data["well"], [w])
        i = int(idx[len(idx) // 2])
        width = int(data["widths"][i])
        img = normalize(data["images"][i:i + 1], data["widths"][i:i + 1], spec)[0, :, :width]
        role = "val" if int(w) in splits["val_wells"] else "train"
        ax = axes[0, j]
        ax.imshow(img, cmap="gray", aspect="auto", vmin=-6, vmax=6)
        ax.set_title(f"well {w} ({role})\n{data['ids'][i]}", fontsize=8)
        ax.set_xlabel("time sample (column)")
        ax.set_ylabel("depth (row)")
        ax = axes[1, j]
        ax.imshow(np.asarray(data["masks"][i, :, :width]), cmap=cmap, vmin=0, vmax=2, aspect="auto",
                  interpolation="nearest")
        ax.set_title("mask", fontsize=8)
        ax.set_xlabel("time sample (column)")
        ax.set_ylabel("depth (row)")
    fig.legend(handles=[Patch(color=cmap(k), label=name) for k, name in
                        enumerate(("0 background", "1 TIE", "2 casing"))],
               loc="lower center", ncol=3, frameon=False)
    fig.suptitle("Training patches: normalised image (top, clipped at +-6) and mask (bottom)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return fig
