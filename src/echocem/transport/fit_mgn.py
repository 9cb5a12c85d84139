"""Train the project's monotone gradient networks (echocem.generative.mgn) as maps from P to Q.

Objective: the semi-dual with an exact conjugate (echocem.transport.semidual). Both
networks are gradients of convex potentials, so they are exactly the class the semi-dual
ranges over, and their analytic SPD Jacobians make the conjugate a few Newton steps.

- M-MGN has a closed-form potential: the gap psi(x) - psi(x_hat) is computed exactly.
- C-MGN's potential has no closed form (its quadrature costs one cascade evaluation per
  node), so its gap is the exact potential of the linear part plus an unbiased stratified
  line integral of the nonlinear part of the map (semidual.line_integral_gap). The
  estimate's variance matters: at D = 16 (200 steps) 4 points per pair gave L2-UVP 18-21 %
  against 25-27 % with 1, in about the same CPU time; 16-node Gauss-Legendre quadrature
  gave 17-18 % at twice the cost.

Both start from the Bures map fitted to samples (their linear part is set to it), so the
nonlinear part only has to learn what the moments miss.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from echocem.generative.mgn import CMGN, MMGN, build_model
from echocem.transport.linear import LinearMap
from echocem.transport.semidual import init_linear_part, line_integral_gap, train_semidual

MGN_ARCHS = ("cmgn", "mmgn")


def mgn_config(arch: str, dim: int, cfg: dict) -> dict:
    """Constructor arguments of the network for dimension `dim` (widths grow with D)."""
    width = max(int(cfg["width"]), int(cfg["width_per_dim"]) * dim)
    return {"arch": arch, "dim": dim, "width": width, "depth": int(cfg["depth"])}


def make_mgn(config: dict) -> torch.nn.Module:
    return build_model(config["arch"], config["dim"], config["width"], config["depth"])


def potential_gap(model: torch.nn.Module, generator: torch.Generator, line_points: int) -> Callable:
    """mean psi(x) - mean psi(x_hat) for this network, differentiable in its parameters."""
    if isinstance(model, MMGN):
        return lambda x, x_hat: model.potential(x).mean() - model.potential(x_hat).mean()
    if isinstance(model, CMGN):
        def gap(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
            linear = model.linear.potential(x).mean() - model.linear.potential(x_hat).mean()
            nonlinear = line_integral_gap(lambda p: model(p) - model.linear(p), x, x_hat, generator, line_points)
            return linear + nonlinear
        return gap
    raise TypeError(f"potential_gap: not a monotone gradient network: {type(model).__name__}")


def fit_mgn(arch: str, dim: int, cfg: dict, sample_p: Callable, sample_q: Callable, start: LinearMap,
            generator: torch.Generator, dtype: torch.dtype = torch.float32, device: str = "cpu",
            log: Callable[[str], None] | None = None) -> tuple[torch.nn.Module, dict, list[float]]:
    """Build, initialise at `start` and train one MGN. Returns (model in eval mode, config, history)."""
    config = mgn_config(arch, dim, cfg)
    model = make_mgn(config).to(device, dtype)
    init_linear_part(model.linear, start.matrix, start.offset)
    line_points = int(cfg["line_points"]) if arch == "cmgn" else 1  # only C-MGN's gap is a line integral
    history = train_semidual(model, potential_gap(model, generator, line_points), sample_p, sample_q,
                             steps=int(cfg["steps"]), batch=int(cfg["batch"]), lr=float(cfg["lr"]),
                             newton_iter=int(cfg["newton_iter"]), newton_tol=float(cfg["newton_tol"]),
                             pool=int(cfg.get("pool", 0)), warmup=float(cfg.get("warmup", 0.0)), generator=generator,
                             desc=f"{arch} d={dim}",
                             log_every=max(int(cfg["steps"]) // 4, 1), log=log)
    return model.eval(), config, history


def apply_model(model: torch.nn.Module, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
    """Push NumPy points through a torch map in chunks (no graph); float64 NumPy out."""
    p = next(model.parameters())
    with torch.no_grad():
        outs = [model(torch.as_tensor(x[i:i + chunk], dtype=p.dtype, device=p.device)).double().cpu().numpy()
                for i in range(0, len(x), chunk)]
    return np.concatenate(outs) if outs else np.zeros_like(x, dtype=np.float64)
