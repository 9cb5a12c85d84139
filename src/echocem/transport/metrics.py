"""Scores of a transport map against the known truth (Korotin et al. 2021, section 4).

Both take the mapped points T_hat(x), the true T*(x) and the source points x for the same
fresh samples of P; they are plain NumPy functions of arrays.
"""
from __future__ import annotations

import numpy as np

from echocem.io import EchoCemError


def _check(name: str, *arrays: np.ndarray) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=np.float64) for a in arrays]
    shape = out[0].shape
    if len(shape) != 2 or any(a.shape != shape for a in out):
        raise EchoCemError(f"{name}: expected arrays of one shape (n, d), got {[a.shape for a in out]}")
    return out


def l2_uvp(mapped: np.ndarray, true_mapped: np.ndarray, var_q: float) -> float:
    """L2-UVP (%) = 100 * E|T_hat(x) - T*(x)|^2 / Var(Q), Var(Q) the trace of Q's covariance.

    0 for the true map; 100 for the constant map at Q's mean; the identity scores
    100 * E|x - T*(x)|^2 / Var(Q) = 200 * cost / Var(Q).
    """
    mapped, true_mapped = _check("l2_uvp", mapped, true_mapped)
    if not var_q > 0:
        raise EchoCemError(f"l2_uvp: var_q must be > 0, got {var_q}")
    return float(100.0 * np.mean(np.sum((mapped - true_mapped) ** 2, axis=1)) / var_q)


# A map whose L2-UVP exceeds 100 % is worse than the constant map at Q's mean: it learned nothing
# (the semi-dual ICNN run away at D = 64 scored 9e13 %). Its figure is reported as diverged, not averaged.
DIVERGED_UVP = 100.0


def diverged(uvp: float | None) -> bool:
    """True for an L2-UVP (%) that is missing, not finite or above DIVERGED_UVP."""
    return uvp is None or not np.isfinite(uvp) or uvp > DIVERGED_UVP


def diverged_seeds(uvp_summary: dict) -> int:
    """How many seeds of a method's L2-UVP summary (a metrics file's methods.<m>.uvp) diverged: its
    n_diverged, or counted from per_seed where a metrics file predates that key."""
    if "n_diverged" in uvp_summary:
        return int(uvp_summary["n_diverged"])
    return sum(map(diverged, uvp_summary["per_seed"]))


def cosine(mapped: np.ndarray, true_mapped: np.ndarray, x: np.ndarray) -> float:
    """cos(T_hat - id, T* - id) = <T_hat - id, T* - id>_P / (|T_hat - id|_P |T* - id|_P).

    Inner products and norms are those of L2(P), estimated over the samples (the paper's
    definition: a ratio of averages, not an average of per-point cosines). 1 for the true
    map; undefined (NaN) for the identity, whose displacement is zero.
    """
    mapped, true_mapped, x = _check("cosine", mapped, true_mapped, x)
    u, v = mapped - x, true_mapped - x
    norm = np.sqrt(np.mean(np.sum(u**2, 1)) * np.mean(np.sum(v**2, 1)))
    return float(np.mean(np.sum(u * v, 1)) / norm) if norm > 0 else float("nan")
