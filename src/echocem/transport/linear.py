"""The linear (Bures) baseline: the OT map between the Gaussians with the samples' moments.

T(x) = m_q + A (x - m_p), A = S_p^-1/2 (S_p^1/2 S_q S_p^1/2)^1/2 S_p^-1/2 (symmetric positive
definite). It is the exact map when P and Q are Gaussian, and the benchmark's reference
"linear" row otherwise. The matrix algebra is echocem.generative.gaussians'.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from echocem.generative.gaussians import bures_map_matrix


@dataclass(frozen=True)
class LinearMap:
    matrix: np.ndarray   # A, symmetric positive definite (d, d)
    offset: np.ndarray   # m_q - A m_p, so that T(x) = A x + offset

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64) @ self.matrix + self.offset  # A is symmetric


def fit_bures(x: np.ndarray, y: np.ndarray, reg: float = 1e-6) -> LinearMap:
    """Fit the Bures map on samples x ~ P, y ~ Q (unpaired; only their means and covariances
    count). `reg` is added to both covariances' diagonals (a few samples in high dimension)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or min(len(x), len(y)) < 2:
        raise ValueError(f"fit_bures: expected two (n, d) sample arrays of one d, got {x.shape} and {y.shape}")
    eye = np.eye(x.shape[1])
    A = bures_map_matrix(np.cov(x, rowvar=False) + reg * eye, np.cov(y, rowvar=False) + reg * eye)
    return LinearMap(A, y.mean(0) - x.mean(0) @ A)
