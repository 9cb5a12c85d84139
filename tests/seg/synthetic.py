"""Small synthetic patches for the segmentation tests: a straight casing echo and a wandering TIE.

Not the project's simulator (that is the data stages' job): just enough physics
for a test to tell a working classifier from a broken one.
"""
from __future__ import annotations

import numpy as np

H, W = 160, 272


def make_patches(n: int, seed: int = 0, narrow_every: int = 4) -> dict[str, np.ndarray]:
    """images int16 (n, 160, 272), masks int8 (-1 padding), widths, ids, well: like data/ingested."""
    rng = np.random.default_rng(seed)
    rows = np.arange(H)[:, None]
    cols = np.arange(W)[None, :]
    images = np.zeros((n, H, W), dtype=np.int16)
    masks = np.full((n, H, W), -1, dtype=np.int8)
    widths = np.where(np.arange(n) % narrow_every == narrow_every - 1, 160, W).astype(np.int16)
    for i in range(n):
        w = int(widths[i])
        casing_c = rng.integers(18, 30)
        tie_c = rng.integers(70, 130) + 25 * np.sin(rows / rng.uniform(25, 60) + rng.uniform(0, 6))
        tie_c = np.minimum(tie_c, w - 15)
        img = rng.normal(0, 25, (H, W))
        casing = np.abs(cols - casing_c) <= 8
        tie = np.abs(cols - tie_c) <= 10
        img += casing * 300 * np.cos((cols - casing_c) * 0.9)
        img += tie * 90 * np.cos((cols - tie_c) * 0.8)
        glitch = rng.integers(0, H)
        img[glitch] += rng.normal(0, 120, W)
        m = np.zeros((H, W), dtype=np.int8)
        m[np.broadcast_to(tie, (H, W))] = 1
        m[np.broadcast_to(casing, (H, W))] = 2
        img[:, w:] = 0
        m[:, w:] = -1
        images[i] = np.clip(img, -700, 700).astype(np.int16)
        masks[i] = m
    ids = np.array([f"well_{1 + i % 3}_section_{i // 3}_patch_{i}" for i in range(n)])
    well = (1 + np.arange(n) % 3).astype(np.int32)
    return {"images": images, "masks": masks, "widths": widths, "ids": ids, "well": well}


def normalise(images: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Global z-score with fixed constants (the preprocess stage's job on real runs)."""
    x = images.astype(np.float32) / 28.8
    x[np.broadcast_to(np.arange(W)[None, None, :] >= widths[:, None, None], x.shape)] = 0.0
    return x
