"""Section context, as the networks use it: training windows across patch borders, and
prediction of whole sections by several models with depth-flip test-time augmentation.

The geometry (runs of depth-adjacent patches, stitching, blending windows) is
echocem.seg.sections; this module applies it to the pipeline's data and models.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from echocem.io import EchoCemError
from echocem.seg.sections import (PATCH_ROWS, Run, background_padding, chunk_runs, depth_flipped, ensemble,
                                  flip_tta, model_predictor, predict_runs, runs_from_split, training_windows)


@dataclass(frozen=True)
class Inference:
    """How probabilities are predicted.

    sections: whole sections, overlapping windows of `window_rows` every
    `stride_rows`, blended; else patch by patch. tta: averaged with the
    depth-flipped prediction. flipped: the depth-flipped prediction alone (TTA's
    second view: its mean with the plain prediction is the TTA one, blending
    being linear). Several models are averaged (an ensemble).
    """

    sections: bool
    tta: bool
    window_rows: int = 2 * PATCH_ROWS
    stride_rows: int = PATCH_ROWS
    batch_size: int = 8
    flipped: bool = False

    def __post_init__(self) -> None:
        if self.tta and self.flipped:
            raise EchoCemError("prediction: tta already holds the flipped view; ask for one of tta, flipped")

    @staticmethod
    def from_params(context: Mapping[str, Any], batch_size: int, sections: bool, tta: bool,
                    flipped: bool = False) -> "Inference":
        return Inference(sections=sections, tta=tta, window_rows=int(context["window_rows"]),
                         stride_rows=int(context["stride_rows"]), batch_size=int(batch_size), flipped=flipped)


def patch_runs(n: int, widths: np.ndarray) -> list[Run]:
    """Every patch a run of its own: patch-by-patch prediction through the same code path."""
    return [Run(well=0, section=k, patches=(0,), indices=(k,), width=int(widths[k])) for k in range(n)]


def iter_probs(models: Sequence[nn.Module], data: Mapping[str, np.ndarray], norm_spec: Mapping[str, Any],
               device: str, how: Inference, chunk_patches: int = 128, desc: str = "predict"
               ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(indices, float32 probabilities (n, 3, 160, W)) chunk by chunk over a split.

    Chunks hold whole sections (never cut), so memory stays bounded on the real
    test set while every patch sees its neighbours.
    """
    from echocem.data.preprocess import normalize

    if not models:
        raise EchoCemError("prediction: no model given")
    widths = np.asarray(data["widths"])
    n = len(widths)
    runs = runs_from_split(data) if how.sections else patch_runs(n, widths)
    predict = ensemble([model_predictor(m, device) for m in models])
    if how.tta:
        predict = flip_tta(predict)
    elif how.flipped:
        predict = depth_flipped(predict)
    window, stride = (how.window_rows, how.stride_rows) if how.sections else (PATCH_ROWS, PATCH_ROWS)
    bar = tqdm(total=n, desc=desc, unit="patch", dynamic_ncols=True, leave=False)
    for idx, local in chunk_runs(runs, chunk_patches):
        x = normalize(torch.from_numpy(np.ascontiguousarray(data["images"][idx])),
                      torch.from_numpy(widths[idx].astype(np.int64)), norm_spec).float()
        probs = predict_runs(x, widths[idx], local, predict, window, stride, how.batch_size,
                             progress=lambda run: bar.update(run.n_patches))
        yield idx, probs
    bar.close()


def predict_probs(models: Sequence[nn.Module], data: Mapping[str, np.ndarray], norm_spec: Mapping[str, Any],
                  device: str, how: Inference, chunk_patches: int = 128, desc: str = "predict") -> np.ndarray:
    """float32 (N, 3, 160, W) probabilities of a whole (small) split, in its order."""
    n = len(data["widths"])
    out = np.zeros((n, 3, PATCH_ROWS, np.asarray(data["images"]).shape[-1]), dtype=np.float32)
    for idx, probs in iter_probs(models, data, norm_spec, device, how, chunk_patches, desc):
        out[idx] = probs
    return background_padding(out, data["widths"])


def take(data: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """The patches `idx` of a split (every per-patch array)."""
    n = len(data["widths"])
    return {k: v[idx] for k, v in data.items() if isinstance(v, np.ndarray) and v.shape[:1] == (n,)}


def with_border_windows(data: Mapping[str, np.ndarray], per_border: int, rng: np.random.Generator
                        ) -> dict[str, np.ndarray]:
    """The labelled patches of `data` plus `per_border` windows across each border between
    depth-adjacent patches (160 rows: extra training patches that see both sides of a border)."""
    if per_border <= 0:
        return dict(data)
    runs = runs_from_split(data)
    windows = training_windows(data, runs, rng, PATCH_ROWS, per_border)
    m = len(windows["widths"])
    out = {"images": np.concatenate([data["images"], windows["images"]]),
           "masks": np.concatenate([data["masks"], windows["masks"]]),
           "widths": np.concatenate([data["widths"], windows["widths"]]),
           "well": np.concatenate([data["well"], windows["well"]]),
           "ids": np.concatenate([data["ids"], np.asarray([f"window_{k}" for k in range(m)])])}
    return out
