"""Samplers and data sets of the generative tasks (all offline, all seeded)."""
from __future__ import annotations

import numpy as np


def convex_test_function(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """f(x) = log sum_j exp(a_j . x + c_j) + 1/2 |x|^2 + 1/4 (x1 - x2)^4 and its gradient.

    Log-sum-exp, a positive quadratic and the fourth power of a linear form are each convex
    on all of R^2, so f is convex on [0, 1]^2 (and everywhere), strictly so.
    """
    a = np.array([[2.0, -1.0], [-1.5, 2.5], [0.5, 0.5]])
    c = np.array([0.0, -0.5, 0.3])
    logits = x @ a.T + c
    m = logits.max(1, keepdims=True)
    w = np.exp(logits - m)
    lse = m[:, 0] + np.log(w.sum(1))
    p = w / w.sum(1, keepdims=True)
    diff = x[:, 0] - x[:, 1]
    f = lse + 0.5 * (x**2).sum(1) + 0.25 * diff**4
    grad = p @ a + x + np.stack([diff**3, -(diff**3)], axis=1)
    return f, grad


def banana(n: int, rng: np.random.Generator, bend: float = 0.8, width: float = 0.4) -> np.ndarray:
    """2-D banana: y1 = x1, y2 = width * x2 + bend * (x1^2 - 1), x ~ N(0, I)."""
    x = rng.standard_normal((n, 2))
    return np.stack([x[:, 0], width * x[:, 1] + bend * (x[:, 0] ** 2 - 1)], axis=1)


def digits() -> np.ndarray:
    """scikit-learn's bundled 8x8 digits (1797 x 64), scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float64) / 16.0


def photo_pixels(name: str) -> np.ndarray:
    """An RGB photo bundled with scikit-image (no network), as (H, W, 3) floats in [0, 1]."""
    import skimage.data

    from echocem.io import EchoCemError

    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise EchoCemError(f"params generative.color: skimage.data has no image {name!r}")
    img = np.asarray(loader())
    if img.ndim != 3 or img.shape[2] != 3:
        raise EchoCemError(f"params generative.color: skimage.data.{name} is not an RGB photo (shape {img.shape})")
    return img.astype(np.float64) / 255.0
