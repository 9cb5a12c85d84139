"""Gaussian ground truth: closed-form Brenier map and W2, random covariances, L2-UVP."""
from __future__ import annotations

import numpy as np


def sqrtm_psd(S: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (eigendecomposition)."""
    w, Q = np.linalg.eigh((S + S.T) / 2)
    return (Q * np.sqrt(np.clip(w, 0, None))) @ Q.T


def random_covariance(dim: int, rng: np.random.Generator, low: float = 0.5, high: float = 2.0) -> np.ndarray:
    """Q diag(lambda) Q^T with Q Haar-random and eigenvalues log-uniform in [low, high]."""
    Q, R = np.linalg.qr(rng.standard_normal((dim, dim)))
    Q = Q * np.sign(np.diag(R))
    lam = np.exp(rng.uniform(np.log(low), np.log(high), dim))
    return (Q * lam) @ Q.T


def bures_map_matrix(S1: np.ndarray, S2: np.ndarray) -> np.ndarray:
    """A = S1^-1/2 (S1^1/2 S2 S1^1/2)^1/2 S1^-1/2: the OT map is x -> m2 + A (x - m1)."""
    r = sqrtm_psd(S1)
    r_inv = np.linalg.inv(r)
    A = r_inv @ sqrtm_psd(r @ S2 @ r) @ r_inv
    return (A + A.T) / 2


def w2_gaussian(m1: np.ndarray, S1: np.ndarray, m2: np.ndarray, S2: np.ndarray) -> float:
    """Closed-form W2 between N(m1, S1) and N(m2, S2)."""
    r = sqrtm_psd(S1)
    w2sq = float(np.sum((m1 - m2) ** 2) + np.trace(S1 + S2 - 2 * sqrtm_psd(r @ S2 @ r)))
    return float(np.sqrt(max(w2sq, 0.0)))


def fit_linear_map(x: np.ndarray, y: np.ndarray, reg: float = 1e-6):
    """Linear (Gaussian / Bures) baseline fitted on samples: the OT map between the two
    Gaussians with the samples' means and covariances. Returns a callable."""
    m1, m2 = x.mean(0), y.mean(0)
    eye = np.eye(x.shape[1])
    A = bures_map_matrix(np.cov(x, rowvar=False) + reg * eye, np.cov(y, rowvar=False) + reg * eye)
    return lambda z: m2 + (np.asarray(z) - m1) @ A


def l2_uvp(mapped: np.ndarray, true_mapped: np.ndarray, target_var: float) -> float:
    """L2-UVP (%) = 100 E|T_hat(x) - T*(x)|^2 / Var(target) (Korotin et al. 2021)."""
    return float(100.0 * np.mean(np.sum((mapped - true_mapped) ** 2, axis=1)) / target_var)
