"""Input-convex network (ICNN) solver: the baseline of the kind Korotin et al. (2021) found best.

The paper's strongest solvers parametrise the Brenier potential by a dense ICNN (Amos et
al. 2017) and train it on a dual objective. Here the ICNN is trained on exactly the MGNs'
objective (the semi-dual with an exact conjugate, echocem.transport.semidual), so the
comparison isolates the parametrisation: a convex potential (its gradient and Hessian in closed
form, checked against autograd), against networks that are the gradient map themselves.

psi(x) = w . z_K + 1/2 x^T (V^T V + eps I) x + b^T x,
z_1 = celu(A_0 x + c_0),  z_{k+1} = celu(W_k z_k + A_k x + c_k),  W_k, w >= 0 (softplus),
convex because CELU is convex and non-decreasing and the z-path weights are non-negative.
The quadratic part is the MGNs' linear part, so it too starts at the Bures map.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from echocem.generative.mgn import _LinearPSD, _outer_rows  # the same SPD linear part as the MGNs
from echocem.transport.linear import LinearMap
from echocem.transport.semidual import init_linear_part, train_semidual


class ICNN(nn.Module):
    """Dense input-convex potential; `forward` is its gradient map, `jacobian` its Hessian (both
    analytic: several times cheaper than torch.func's vmap(grad) / vmap(hessian), which the tests
    check them against)."""

    def __init__(self, dim: int, hidden: list[int], eps: float = 1e-3) -> None:
        super().__init__()
        if dim < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"ICNN: dim and hidden sizes must be >= 1 (got {dim}, {hidden})")
        self.skips = nn.ModuleList(nn.Linear(dim, h) for h in hidden)
        # raw weights of the non-negative z-path; softplus(-2) ~ 0.13 keeps activations O(1) at the start
        self.z_raw = nn.ParameterList(
            nn.Parameter(torch.randn(h_out, h_in) / math.sqrt(h_in) - 2.0) for h_in, h_out in zip(hidden, hidden[1:]))
        # a small output weight: the map starts close to its quadratic part (set to the Bures map)
        self.out_raw = nn.Parameter(torch.full((hidden[-1],), math.log(math.expm1(0.1 / hidden[-1]))))
        self.linear = _LinearPSD(dim, eps)

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        z = F.celu(self.skips[0](x))
        for skip, raw in zip(self.skips[1:], self.z_raw):
            z = F.celu(z @ F.softplus(raw).T + skip(x))
        return z @ F.softplus(self.out_raw) + self.linear.potential(x)

    def _layers(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Pre-activations u_k and the non-negative z-path matrices W_k (softplus of the raw weights)."""
        pos = [F.softplus(raw) for raw in self.z_raw]
        us = [self.skips[0](x)]
        for skip, w in zip(self.skips[1:], pos):
            us.append(F.celu(us[-1]) @ w.T + skip(x))
        return us, pos

    def _adjoints(self, us: list[torch.Tensor], pos: list[torch.Tensor]) -> list[torch.Tensor]:
        """a_k = d psi / d z_k per layer (n, h_k), from the output back (reverse mode by hand)."""
        adj = [F.softplus(self.out_raw).expand_as(us[-1])]
        for k in range(len(us) - 1, 0, -1):
            adj.insert(0, (adj[0] * _celu_slope(us[k])) @ pos[k - 1])
        return adj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """grad psi(x) per row: sum_k A_k^T (a_k * celu'(u_k)) + the linear part (analytic; differentiable)."""
        us, pos = self._layers(x)
        adj = self._adjoints(us, pos)
        g = self.linear(x)
        for skip, u, a in zip(self.skips, us, adj):
            g = g + (a * _celu_slope(u)) @ skip.weight
        return g

    def jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """Hessian of psi per row, (n, d, d): sum_k M_k^T diag(a_k * celu''(u_k)) M_k + V^T V + eps I,
        M_k = du_k/dx. Exact: every u_k is affine in (z_{k-1}, x), so the only curvature is the
        activations'; symmetric PSD because a_k >= 0 (non-negative weights) and celu'' >= 0."""
        us, pos = self._layers(x)
        adj = self._adjoints(us, pos)
        n, d = x.shape
        first = self.skips[0].weight                                                   # M_1, one for all rows
        hess = ((adj[0] * _celu_curvature(us[0])) @ _outer_rows(first)).view(n, d, d)
        M = first.expand(n, *first.shape)
        for k in range(1, len(us)):
            M = (pos[k - 1] * _celu_slope(us[k - 1]).unsqueeze(1)) @ M + self.skips[k].weight   # (n, h_k, d)
            weighted = (adj[k] * _celu_curvature(us[k])).unsqueeze(-1) * M
            hess = hess + M.transpose(1, 2) @ weighted
        return hess + self.linear.matrix()


def _celu_slope(u: torch.Tensor) -> torch.Tensor:
    """celu'(u) (alpha = 1): 1 for u > 0, exp(u) otherwise."""
    return torch.where(u > 0, torch.ones_like(u), torch.exp(torch.clamp(u, max=0.0)))


def _celu_curvature(u: torch.Tensor) -> torch.Tensor:
    """celu''(u) (alpha = 1): 0 for u > 0, exp(u) otherwise."""
    return torch.where(u > 0, torch.zeros_like(u), torch.exp(torch.clamp(u, max=0.0)))


def icnn_config(dim: int, cfg: dict) -> dict:
    """Hidden sizes for dimension D: max(width, width_per_dim * D) per layer, `depth` layers."""
    width = max(int(cfg["width"]), int(cfg["width_per_dim"]) * dim)
    return {"dim": dim, "hidden": [width] * int(cfg["depth"])}


def make_icnn(config: dict) -> ICNN:
    return ICNN(config["dim"], list(config["hidden"]))


def fit_icnn(dim: int, cfg: dict, sample_p: Callable, sample_q: Callable, start: LinearMap,
             dtype: torch.dtype = torch.float32, device: str = "cpu",
             log: Callable[[str], None] | None = None,
             generator: torch.Generator | None = None) -> tuple[ICNN, dict, list[float]]:
    """Build, initialise at `start` and train one ICNN potential on the semi-dual."""
    config = icnn_config(dim, cfg)
    model = make_icnn(config).to(device, dtype)
    init_linear_part(model.linear, start.matrix, start.offset)
    gap = lambda x, x_hat: model.potential(x).mean() - model.potential(x_hat).mean()
    history = train_semidual(model, gap, sample_p, sample_q, steps=int(cfg["steps"]), batch=int(cfg["batch"]),
                             lr=float(cfg["lr"]), newton_iter=int(cfg["newton_iter"]),
                             newton_tol=float(cfg["newton_tol"]), pool=int(cfg.get("pool", 0)),
                             warmup=float(cfg.get("warmup", 0.0)), generator=generator, desc=f"icnn d={dim}",
                             log_every=max(int(cfg["steps"]) // 4, 1), log=log)
    return model.eval(), config, history
