"""Mixing generated (image, mask) pairs into a U-Net training set.

`ratio` is the number of generated pairs added per real training pair
(0: none; 1: as many generated as real). The generated pairs are a seeded
random choice from the pool (without replacement while the pool lasts).

Adding pairs lengthens an epoch. A fair comparison gives both arms the same
number of optimiser steps, otherwise a gain may only be more training:
`matched_epochs` says how many epochs over the mixed set make the steps of
`epochs` epochs over the real set.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from echocem.io import EchoCemError

PAIR_KEYS = ("images", "masks", "widths")


def n_generated(n_real: int, ratio: float) -> int:
    if ratio < 0:
        raise EchoCemError(f"mixing ratio must be >= 0, got {ratio}")
    return int(round(float(ratio) * n_real))


def mix_pairs(real: Mapping[str, np.ndarray], generated: Mapping[str, np.ndarray], ratio: float,
              rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Real pairs followed by round(ratio * n_real) generated pairs.

    Returns images (int16), masks (int8), widths (int16) and is_generated
    (bool), real pairs first in their order. The pool must hold at least one
    pair when ratio > 0; a pool smaller than needed is reused (every pair
    before any twice).
    """
    for name, block in (("real", real), ("generated", generated)):
        missing = [k for k in PAIR_KEYS if k not in block]
        if missing:
            raise EchoCemError(f"mix_pairs: {name} pairs lack arrays {missing}")
    n_real = len(real["images"])
    k = n_generated(n_real, ratio)
    pool = len(generated["images"])
    if k and pool == 0:
        raise EchoCemError("mix_pairs: ratio > 0 but the generated pool is empty")
    if k and generated["images"].shape[1:] != real["images"].shape[1:]:
        raise EchoCemError(f"mix_pairs: generated patches are {generated['images'].shape[1:]}, "
                           f"real ones {real['images'].shape[1:]}")
    pick = np.concatenate([rng.permutation(pool) for _ in range(-(-k // pool))])[:k] if k else np.zeros(0, int)
    return {
        "images": np.concatenate([real["images"], generated["images"][pick]]).astype(np.int16),
        "masks": np.concatenate([real["masks"], generated["masks"][pick]]).astype(np.int8),
        "widths": np.concatenate([real["widths"], generated["widths"][pick]]).astype(np.int16),
        "is_generated": np.concatenate([np.zeros(n_real, bool), np.ones(k, bool)]),
    }


def matched_epochs(epochs: int, n_real: int, n_mixed: int, batch_size: int) -> int:
    """Epochs over `n_mixed` pairs giving about the optimiser steps of `epochs` over `n_real`
    (the seg loop drops the last partial batch)."""
    def per_epoch(n: int) -> int:
        return n // min(batch_size, n) if n else 0

    if per_epoch(n_mixed) < 1:
        raise EchoCemError(f"matched_epochs: no training step with {n_mixed} pairs")
    return max(1, int(round(epochs * per_epoch(n_real) / per_epoch(n_mixed))))
