"""Monotone gradient networks: maps T = grad(phi) with phi convex, by construction.

Both modules share the linear part (V^T V + eps I) x + b: it is symmetric positive definite,
so the Jacobian always has full rank (log-determinant losses stay finite) and the exact
Brenier map between two Gaussians (linear, SPD) is representable.
Monotonicity holds for any weights because every scaling goes through softplus (> 0) and
every activation is elementwise non-decreasing.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _logcosh(z: torch.Tensor) -> torch.Tensor:
    """log(cosh z) without overflow: |z| + log(1 + exp(-2|z|)) - log 2."""
    a = z.abs()
    return a + F.softplus(-2.0 * a) - math.log(2.0)


def _outer_rows(W: torch.Tensor) -> torch.Tensor:
    """Row i of the result is vec(w_i w_i^T) for the rows w_i of W: (m, d) -> (m, d * d).

    sum_i c_i w_i w_i^T = (c @ _outer_rows(W)).view(d, d): a batch of such sums (a Jacobian
    W^T diag(c) W per point) is then one matrix product, several times faster than a
    three-operand einsum for the small d and m of these networks.
    """
    return (W.unsqueeze(2) * W.unsqueeze(1)).reshape(W.shape[0], -1)


class _LinearPSD(nn.Module):
    """x -> (V^T V + eps I) x + b and its potential 1/2 x^T (V^T V + eps I) x + b^T x."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.V = nn.Parameter(torch.eye(dim))
        self.b = nn.Parameter(torch.zeros(dim))
        self.eps = float(eps)

    def matrix(self) -> torch.Tensor:
        eye = torch.eye(self.V.shape[1], dtype=self.V.dtype, device=self.V.device)
        return self.V.T @ self.V + self.eps * eye

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.matrix() + self.b  # matrix() is symmetric

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x @ self.matrix()) * x).sum(-1) + x @ self.b


class CMGN(nn.Module):
    """Cascaded monotone gradient network (one shared embedding W, L cascaded steps).

    z_0 = beta_0 * (W x + b_0);  z_l = beta_l * (W x + b_l) + alpha_l * tanh(z_{l-1});
    T(x) = W^T (gamma * tanh(z_{L-1})) + (V^T V + eps I) x + c,  alpha, beta, gamma = softplus(.) > 0.
    Every z_l,i depends on u_i = (W x)_i only, so T = W^T h(W x) + A x with h elementwise
    non-decreasing: the Jacobian W^T diag(h') W + A is symmetric positive definite.
    """

    def __init__(self, dim: int, width: int = 64, n_layers: int = 3, eps: float = 1e-3) -> None:
        super().__init__()
        if n_layers < 1 or width < 1 or dim < 1:
            raise ValueError(f"CMGN: dim, width and n_layers must be >= 1 (got {dim}, {width}, {n_layers})")
        self.W = nn.Parameter(torch.randn(width, dim) / math.sqrt(dim))
        self.bias = nn.Parameter(0.1 * torch.randn(n_layers, width))
        self.beta_raw = nn.Parameter(torch.zeros(n_layers, width))
        self.alpha_raw = nn.Parameter(torch.zeros(max(n_layers - 1, 1), width))
        # gamma starts at 1/width so the network starts near its linear part (the identity)
        self.gamma_raw = nn.Parameter(torch.full((width,), math.log(math.expm1(1.0 / width))))
        self.linear = _LinearPSD(dim, eps)
        self.n_layers = n_layers

    def _h_slope(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """h(u) and h'(u), elementwise; T = W^T h(W x) + linear part, h' > 0."""
        beta, alpha = F.softplus(self.beta_raw), F.softplus(self.alpha_raw)
        z = beta[0] * (u + self.bias[0])
        dz = beta[0].expand_as(z)
        for layer in range(1, self.n_layers):
            t = torch.tanh(z)
            z, dz = (beta[layer] * (u + self.bias[layer]) + alpha[layer - 1] * t,
                     beta[layer] + alpha[layer - 1] * (1 - t**2) * dz)
        gamma, t = F.softplus(self.gamma_raw), torch.tanh(z)
        return gamma * t, gamma * (1 - t**2) * dz

    def _h(self, u: torch.Tensor) -> torch.Tensor:
        return self._h_slope(u)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._h(x @ self.W.T) @ self.W + self.linear(x)

    def jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """Batched analytic Jacobian W^T diag(h'(W x)) W + A, (n, d, d); differentiable."""
        _, slope = self._h_slope(x @ self.W.T)
        d = self.W.shape[1]
        return (slope @ _outer_rows(self.W)).view(*slope.shape[:-1], d, d) + self.linear.matrix()

    def potential(self, x: torch.Tensor, n_nodes: int = 48) -> torch.Tensor:
        """phi(x) = sum_i H_i((W x)_i) + linear potential, H_i(u) = int_0^u h_i.

        The cascade has no elementary antiderivative; h is analytic, so Gauss-Legendre
        quadrature on [0, u] is exact to rounding for moderate |u| (tested in float64).
        """
        nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
        s = torch.as_tensor((nodes + 1) / 2, dtype=x.dtype, device=x.device)
        w = torch.as_tensor(weights / 2, dtype=x.dtype, device=x.device)
        u = x @ self.W.T                                      # (..., m)
        h = self._h(u.unsqueeze(-2) * s.view(-1, 1))         # (..., nodes, m)
        integral = u * (w.view(-1, 1) * h).sum(-2)            # int_0^u h = u * int_0^1 h(s u) ds
        return integral.sum(-1) + self.linear.potential(x)


class MMGN(nn.Module):
    """Modular monotone gradient network (K modules).

    T(x) = (V^T V + eps I) x + a + sum_k c_k s_k(z_k) W_k^T tanh(z_k) / m,  z_k = W_k x + b_k,
    s_k(z) = mean_i log cosh z_i >= 0 (convex), c_k = softplus(.) > 0, m = width.  T = grad of
    a^T x + 1/2 x^T (V^T V + eps I) x + 1/2 sum_k c_k s_k(z_k)^2, a convex function.
    (The mean, not the sum, keeps the start near the linear part whatever the width.)
    """

    def __init__(self, dim: int, width: int = 32, n_modules: int = 4, eps: float = 1e-3) -> None:
        super().__init__()
        if n_modules < 1 or width < 1 or dim < 1:
            raise ValueError(f"MMGN: dim, width and n_modules must be >= 1 (got {dim}, {width}, {n_modules})")
        self.W = nn.Parameter(torch.randn(n_modules, width, dim) / math.sqrt(dim))
        self.bias = nn.Parameter(0.1 * torch.randn(n_modules, width))
        self.scale_raw = nn.Parameter(torch.zeros(n_modules))
        self.linear = _LinearPSD(dim, eps)

    def _z(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("kmd,...d->...km", self.W, x) + self.bias  # (..., K, m)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self._z(x)
        m = z.shape[-1]
        s = _logcosh(z).mean(-1, keepdim=True)                        # (..., K, 1)
        coef = F.softplus(self.scale_raw).unsqueeze(-1) * s * torch.tanh(z) / m
        return torch.einsum("...km,kmd->...d", coef, self.W) + self.linear(x)

    def jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """Batched analytic Jacobian A + sum_k c_k W_k^T (s_k diag(1 - tanh^2 z_k) / m + t_k t_k^T / m^2) W_k."""
        z = self._z(x)                                                  # (n, K, m)
        t = torch.tanh(z)
        m = z.shape[-1]
        c = F.softplus(self.scale_raw)
        s = _logcosh(z).mean(-1)                                        # (n, K)
        n, d = z.shape[0], self.W.shape[2]
        coef = ((c * s / m).unsqueeze(-1) * (1 - t**2)).reshape(n, -1)   # (n, K m)
        diag = (coef @ _outer_rows(self.W.reshape(-1, d))).view(n, d, d)
        wt = torch.einsum("nkm,kmd->nkd", t, self.W) / m                # W_k^T t_k / m
        rank1 = (c.view(1, -1, 1) * wt).transpose(1, 2) @ wt            # sum_k c_k w_k w_k^T
        return diag + rank1 + self.linear.matrix()

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        s = _logcosh(self._z(x)).mean(-1)                               # (..., K)
        return 0.5 * (F.softplus(self.scale_raw) * s**2).sum(-1) + self.linear.potential(x)


def build_model(arch: str, dim: int, width: int, depth: int, eps: float = 1e-3) -> nn.Module:
    """'cmgn' (depth = cascade length) or 'mmgn' (depth = number of modules)."""
    if arch == "cmgn":
        return CMGN(dim, width, depth, eps)
    if arch == "mmgn":
        return MMGN(dim, width, depth, eps)
    raise ValueError(f"unknown architecture {arch!r} (expected 'cmgn' or 'mmgn')")
