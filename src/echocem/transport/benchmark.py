"""The continuous W2 benchmark pair Mix3 -> Mix10 (Korotin et al., NeurIPS 2021) from its arrays.

P is a mixture of 3 Gaussians; the true map T* = grad psi with psi convex is known, so a
solver's map can be scored against the truth. Q = T*#P is sampled by pushing fresh samples
of P through T*. Solvers get the two samplers only (never T*, never pairs): `sample_q`
draws its own P points, independent of any `sample_p` call.

T*(x) = scale * (grad psi_1(x) + grad psi_2(x) - shift), each psi_j a dense input-convex
network with rank-1 quadratic skips and CELU (third_party/w2bench/README.md gives the
formulas); the gradient is taken by autograd, like the benchmark's own code.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from echocem.io import EchoCemError

DIMS = (2, 4, 8, 16, 32, 64, 128)
N_LAYERS = 3  # quadratic blocks q_0, q_1, q_2 of each potential


def pair_path(data_dir: str | Path, dim: int) -> Path:
    return Path(data_dir) / f"mix3_to_mix10_d{dim}.npz"


@dataclass(frozen=True)
class W2Pair:
    """One benchmark pair: the arrays of `mix3_to_mix10_d{dim}.npz`, as float64 NumPy."""

    dim: int
    arrays: dict

    @property
    def var_q(self) -> float:
        """Total variance of Q (trace of its covariance), the L2-UVP denominator."""
        return float(self.arrays["var_q"])

    @property
    def x_check(self) -> np.ndarray:
        return self.arrays["x_check"]

    @property
    def t_check(self) -> np.ndarray:
        return self.arrays["t_check"]

    @property
    def uvp_linear_reference(self) -> float:
        """L2-UVP (%) of the moment-fitted linear map, as recomputed by the arrays' exporter."""
        return float(self.arrays["uvp_linear"])


def _required_keys(dim: int) -> list[str]:
    keys = ["p_centers", "p_maps", "p_std", "scale", "shift", "strong_convexity", "x_check", "t_check", "var_q"]
    for j in (1, 2):
        for k in range(N_LAYERS):
            keys += [f"psi{j}_quad{k}", f"psi{j}_lin{k}_w", f"psi{j}_lin{k}_b"]
        keys += [f"psi{j}_convex{k}" for k in range(N_LAYERS - 1)] + [f"psi{j}_final"]
    return keys


def load_pair(data_dir: str | Path, dim: int) -> W2Pair:
    """Read and check the arrays of dimension `dim`; EchoCemError names the file and key."""
    if dim not in DIMS:
        raise EchoCemError(f"W2 benchmark: dimension {dim} not available (expected one of {DIMS})")
    path = pair_path(data_dir, dim)
    if not path.is_file():
        raise EchoCemError(f"{path}: benchmark arrays not found (see third_party/w2bench/README.md)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: np.asarray(z[k], dtype=np.float64) for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise EchoCemError(f"{path}: not a readable .npz ({exc})") from exc
    missing = [k for k in _required_keys(dim) if k not in arrays]
    if missing:
        raise EchoCemError(f"{path}: missing arrays {', '.join(missing)}")
    if arrays["p_centers"].shape != (3, dim) or arrays["p_maps"].shape != (3, dim, dim):
        raise EchoCemError(f"{path}: p_centers/p_maps have shapes {arrays['p_centers'].shape}/"
                           f"{arrays['p_maps'].shape}, expected (3, {dim}) / (3, {dim}, {dim})")
    if arrays["x_check"].shape[1:] != (dim,) or arrays["t_check"].shape != arrays["x_check"].shape:
        raise EchoCemError(f"{path}: x_check/t_check shapes {arrays['x_check'].shape}/{arrays['t_check'].shape}")
    return W2Pair(dim, arrays)


class TrueMap:
    """T* of one pair as a torch callable (any float dtype; parameters follow the input's)."""

    def __init__(self, pair: W2Pair) -> None:
        self.pair = pair
        self._cache: dict = {}

    def _params(self, dtype: torch.dtype, device: torch.device) -> dict:
        key = (dtype, str(device))
        if key not in self._cache:
            self._cache[key] = {k: torch.as_tensor(v, dtype=dtype, device=device)
                                for k, v in self.pair.arrays.items() if k.startswith(("psi", "scale", "shift",
                                                                                      "strong"))}
        return self._cache[key]

    @staticmethod
    def _quadratic(p: dict, j: int, k: int, x: torch.Tensor) -> torch.Tensor:
        """q_k(x)_h = sum_r (x . quad_k[:, r, h])^2 + (lin_k_w x + lin_k_b)_h."""
        proj = torch.einsum("nd,drh->nrh", x, p[f"psi{j}_quad{k}"])
        return (proj**2).sum(1) + x @ p[f"psi{j}_lin{k}_w"].T + p[f"psi{j}_lin{k}_b"]

    def potential_j(self, j: int, x: torch.Tensor) -> torch.Tensor:
        """psi_j(x), one value per row: the dense ICNN with quadratic skips and CELU."""
        p = self._params(x.dtype, x.device)
        z = self._quadratic(p, j, 0, x)  # no activation on the first block
        for k in range(1, N_LAYERS):
            z = F.celu(z @ p[f"psi{j}_convex{k - 1}"].T + self._quadratic(p, j, k, x))
        return (z @ p[f"psi{j}_final"].T).squeeze(-1) + 0.5 * p["strong_convexity"] * (x**2).sum(-1)

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """psi(x) = scale * (psi_1 + psi_2 - shift . x); T* is its gradient."""
        p = self._params(x.dtype, x.device)
        return p["scale"] * (self.potential_j(1, x) + self.potential_j(2, x) - x @ p["shift"])

    def __call__(self, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        """T*(x) row by row (no graph kept: the truth is never trained through)."""
        outs = []
        for start in range(0, len(x), chunk):
            with torch.enable_grad():
                xi = x[start:start + chunk].detach().requires_grad_(True)
                (g,) = torch.autograd.grad(self.potential(xi).sum(), xi)
            outs.append(g.detach())
        return torch.cat(outs) if outs else x.new_zeros(x.shape)


class Samplers:
    """Fresh samples of P and of Q = T*#P from one torch.Generator (seeded by the caller).

    Each call draws new points: a solver trained on them sees an endless stream of
    samples, as the benchmark's solvers do, and never a pairing (Q's draws use their own
    P points).
    """

    def __init__(self, pair: W2Pair, generator: torch.Generator, dtype: torch.dtype = torch.float32,
                 device: str = "cpu", q_chunk: int = 16384) -> None:
        self.dim, self.dtype, self.device = pair.dim, dtype, device
        self.gen = generator
        self.q_chunk = int(q_chunk)
        self._q_buffer = torch.empty(0, pair.dim, dtype=dtype, device=device)
        self.true_map = TrueMap(pair)
        self._centers = torch.as_tensor(pair.arrays["p_centers"], dtype=torch.float64)
        self._maps = torch.as_tensor(pair.arrays["p_maps"], dtype=torch.float64)
        self._std = float(pair.arrays["p_std"])

    def _draw_p(self, n: int) -> torch.Tensor:
        # drawn in float64 on the CPU from the generator, so a seed gives the same points on any device
        # one matrix product per component, not a (n, D, D) gather: a pool of 2^18 points at
        # D = 64 would otherwise hold 8.6 GB of copies of the three maps
        comp = torch.randint(0, len(self._centers), (n,), generator=self.gen)
        z = torch.randn(n, self.dim, generator=self.gen, dtype=torch.float64)
        x = self._centers[comp].clone()
        for i, m in enumerate(self._maps):
            rows = comp == i
            x[rows] += self._std * (z[rows] @ m.T)
        return x.to(self.device, self.dtype)

    def sample_p(self, n: int) -> torch.Tensor:
        return self._draw_p(n)

    def sample_q(self, n: int) -> torch.Tensor:
        """n fresh samples of Q. They are made q_chunk at a time (one pass through T* is far
        cheaper per point than many small ones) and each is handed out once."""
        if len(self._q_buffer) < n:
            fresh = self.true_map(self._draw_p(max(n - len(self._q_buffer), self.q_chunk)))
            self._q_buffer = torch.cat([self._q_buffer, fresh])
        out, self._q_buffer = self._q_buffer[:n], self._q_buffer[n:]
        return out
