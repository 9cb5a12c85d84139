"""Random Forest baseline: class-balanced pixel sampling, training, full-mask prediction.

Training uses a class-balanced subsample of the training wells' pixels
(`pixels_per_class` per class, drawn uniformly among that class's pixels), so
the forest is not swamped by the 85 % background. Prediction classifies every
non-padding pixel of every patch, in chunks of patches to bound memory.
Features: echocem.seg.features.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from tqdm import tqdm

from echocem.io import EchoCemError
from echocem.seg.features import FEATURE_NAMES, pixel_features

N_CLASSES = 3
# turns raw int16 patches (n, H, W) and their widths into normalised float32 images
Prepare = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _as_float(images: np.ndarray, widths: np.ndarray) -> np.ndarray:
    return np.asarray(images, dtype=np.float32)


def _features(images: np.ndarray, widths: np.ndarray, cfg: Mapping, prepare: Prepare) -> np.ndarray:
    x = np.asarray(prepare(images, widths), dtype=np.float32)
    return pixel_features(x, widths, smooth_rows=int(cfg["smooth_rows"]), window=int(cfg["window"]))


def class_quotas(
    masks: np.ndarray, widths: np.ndarray, per_class: int, rng: np.random.Generator
) -> np.ndarray:
    """(N, 3) pixels to draw from each patch and class: `per_class` per class in all,
    spread over patches in proportion to how many pixels of the class each holds."""
    cols = np.arange(masks.shape[2])
    valid = (cols[None, :] < widths[:, None])[:, None, :]
    counts = np.stack([((masks == c) & valid).sum(axis=(1, 2)) for c in range(N_CLASSES)], axis=1)
    quotas = np.zeros_like(counts)
    for c in range(N_CLASSES):
        total = int(counts[:, c].sum())
        if total == 0:
            continue
        if total <= per_class:
            quotas[:, c] = counts[:, c]
        else:
            quotas[:, c] = np.minimum(rng.multinomial(per_class, counts[:, c] / total), counts[:, c])
    return quotas


def training_set(
    images: np.ndarray,
    masks: np.ndarray,
    widths: Sequence[int] | np.ndarray,
    cfg: Mapping,
    rng: np.random.Generator,
    prepare: Prepare = _as_float,
) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, F) float32, y (n,) int8): features of class-balanced sampled training pixels.

    `prepare` normalises a chunk of raw patches (echocem.data.preprocess.normalize
    in the stage), so the whole training set is never held as float.
    """
    widths = np.asarray(widths, dtype=np.int64).reshape(-1)
    if images.shape != masks.shape or images.shape[0] != widths.shape[0]:
        raise EchoCemError(f"rf: images {images.shape}, masks {masks.shape} and {widths.shape[0]} widths disagree")
    chunk = int(cfg["feature_chunk"])
    quotas = class_quotas(masks, widths, int(cfg["pixels_per_class"]), rng)
    used = np.flatnonzero(quotas.sum(axis=1) > 0)  # patches with nothing to draw are not featurised
    cols = np.tile(np.arange(masks.shape[2]), masks.shape[1])
    xs, ys = [], []
    for start in tqdm(range(0, len(used), chunk), desc="rf features (train)", unit="chunk", leave=False):
        idx = used[start : start + chunk]
        feats = _features(images[idx], widths[idx], cfg, prepare)
        for j, i in enumerate(idx):
            flat_mask = masks[i].ravel()
            for c in range(N_CLASSES):
                q = int(quotas[i, c])
                if q == 0:
                    continue
                where = np.flatnonzero((flat_mask == c) & (cols < widths[i]))
                pick = rng.choice(where, size=q, replace=False)
                xs.append(feats[j].reshape(-1, feats.shape[-1])[np.sort(pick)])
                ys.append(np.full(q, c, dtype=np.int8))
    if not xs:
        raise EchoCemError("rf: no labelled pixels in the training wells")
    return np.concatenate(xs), np.concatenate(ys)


def train_rf(X: np.ndarray, y: np.ndarray, cfg: Mapping, seed: int, n_jobs: int = 1) -> RandomForestClassifier:
    """Fit the forest of params `rf` on sampled pixels."""
    model = RandomForestClassifier(
        n_estimators=int(cfg["n_estimators"]),
        max_depth=cfg["max_depth"],
        min_samples_leaf=int(cfg["min_samples_leaf"]),
        max_features=cfg["max_features"],
        random_state=seed,
        n_jobs=n_jobs,
    )
    model.fit(X, y)
    # the thread count is an execution detail: keep it out of the saved model's bytes
    model.set_params(n_jobs=None)
    # remember which features, in which order, the forest was fitted on
    model.feature_names_echocem_ = list(FEATURE_NAMES)
    return model


def predict_masks(
    model: RandomForestClassifier,
    images: np.ndarray,
    widths: Sequence[int] | np.ndarray,
    cfg: Mapping,
    prepare: Prepare = _as_float,
    n_jobs: int = 1,
) -> np.ndarray:
    """(N, 160, 272) int8 predicted classes, -1 right of each patch's width.

    Patches are featurised and classified `cfg["feature_chunk"]` at a time,
    with `n_jobs` threads over the trees.
    """
    chunk = int(cfg["feature_chunk"])
    widths = np.asarray(widths, dtype=np.int64).reshape(-1)
    n, h, w = images.shape
    pred = np.full((n, h, w), -1, dtype=np.int8)
    cols = np.arange(w)
    saved_jobs = model.n_jobs
    model.set_params(n_jobs=n_jobs)
    try:
        for start in tqdm(range(0, n, chunk), desc="rf predict", unit="chunk", leave=False):
            sl = slice(start, start + chunk)
            feats = _features(images[sl], widths[sl], cfg, prepare)
            valid = np.broadcast_to((cols[None, :] < widths[sl][:, None])[:, None, :], feats.shape[:3])
            out = pred[sl]
            out[valid] = model.predict(feats[valid]).astype(np.int8)
    finally:
        model.set_params(n_jobs=saved_jobs)
    return pred


def feature_importances(model: RandomForestClassifier) -> dict[str, float]:
    """Mean decrease in impurity per feature name (what the forest leaned on)."""
    names = getattr(model, "feature_names_echocem_", list(FEATURE_NAMES))
    return {name: float(v) for name, v in zip(names, model.feature_importances_)}
