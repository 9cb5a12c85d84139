"""Entropic (Sinkhorn) barycentric map: the entropic OT estimator of Pooladian & Niles-Weed (2021).

Fit: solve entropic OT between n samples of P and n samples of Q and keep the dual
potential g on the Q samples. Map any x (in or out of the sample):

    T(x) = sum_j y_j exp((g_j - |x - y_j|^2 / 2) / eps) / sum_j exp((g_j - |x - y_j|^2 / 2) / eps),

the barycentre of the conditional plan, extended to new points through g.

Backend: geomloss (SamplesLoss with potentials=True), the project's Sinkhorn backend
(echocem.generative.losses): log-domain, epsilon-scaling, stable at small epsilon, and its
potentials are already in the convention the formula needs: cost |x - y|^2 / 2 and
eps = blur^2. (POT's `reg` is on the cost |x - y|^2: POT reg = 2 eps for the same plan.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class EntropicMap:
    support: np.ndarray    # the Q samples y_j, (n, d)
    potential: np.ndarray  # the dual potential g_j on them, (n,)
    epsilon: float         # eps = blur^2, for the cost |x - y|^2 / 2

    def __call__(self, x: np.ndarray, chunk: int = 2048) -> np.ndarray:
        y = torch.as_tensor(self.support, dtype=torch.float64)
        g = torch.as_tensor(self.potential, dtype=torch.float64)
        out = []
        for start in range(0, len(x), chunk):
            xi = torch.as_tensor(np.asarray(x[start:start + chunk]), dtype=torch.float64)
            logits = (g - 0.5 * torch.cdist(xi, y) ** 2) / self.epsilon
            out.append(torch.softmax(logits, dim=1) @ y)
        return torch.cat(out).numpy() if out else np.zeros((0, self.support.shape[1]))


def fit_entropic(x: np.ndarray, y: np.ndarray, blur: float, scaling: float = 0.8,
                 dtype: torch.dtype = torch.float32, device: str = "cpu") -> EntropicMap:
    """Entropic OT between the uniform clouds x ~ P and y ~ Q (geomloss, eps = blur^2).

    The solve runs in `dtype` on `device` (float32 halves the time; geomloss works in the
    log domain, so it stays stable); the map keeps the potential in float64.
    """
    from geomloss import SamplesLoss

    if blur <= 0:
        raise ValueError(f"fit_entropic: blur must be > 0, got {blur}")
    xt = torch.as_tensor(np.asarray(x), dtype=dtype, device=device).contiguous()
    yt = torch.as_tensor(np.asarray(y), dtype=dtype, device=device).contiguous()
    loss = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=scaling, debias=False, potentials=True,
                       backend="tensorized")
    with torch.no_grad():
        _, g = loss(xt, yt)
    return EntropicMap(np.asarray(y, dtype=np.float64), g.reshape(-1).double().cpu().numpy(), float(blur) ** 2)
