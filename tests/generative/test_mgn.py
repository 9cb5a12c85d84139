"""C-MGN and M-MGN are monotone gradient maps for any weights, and the losses/ground truth agree."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import jacrev, vmap

from echocem.generative.gaussians import bures_map_matrix, l2_uvp, random_covariance, w2_gaussian
from echocem.generative.losses import gaussian_logpdf, sinkhorn_divergence
from echocem.generative.mgn import build_model
from echocem.generative.train import train_likelihood

torch.set_num_threads(1)
ARCHS = ["cmgn", "mmgn"]


def random_model(arch: str, dim: int, seed: int, dtype=torch.float64) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(arch, dim, width=7, depth=3).to(dtype)
    with torch.no_grad():  # random weights everywhere, including the raw (pre-softplus) scalings
        for p in model.parameters():
            p.normal_(0.0, 1.5)
    return model


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_jacobian_symmetric_psd(arch: str, seed: int) -> None:
    dim = 5
    model = random_model(arch, dim, seed)
    x = 3.0 * torch.randn(16, dim, dtype=torch.float64)
    J = vmap(jacrev(lambda v: model(v.unsqueeze(0)).squeeze(0)))(x)
    assert J.shape == (16, dim, dim)
    assert torch.allclose(J, J.transpose(1, 2), atol=1e-10)
    assert torch.linalg.eigvalsh(J).min() >= -1e-10
    assert torch.allclose(model.jacobian(x), J, atol=1e-10)  # analytic Jacobian used by the loss


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_nonlinear_part_alone_is_monotone(arch: str, seed: int) -> None:
    """The linear term (V^T V + eps I) x + b switched off: the PSD linear part can no longer hide
    a negative direction of the nonlinear part (e.g. a sign error in a cascade scaling)."""
    dim = 5
    model = random_model(arch, dim, seed)
    with torch.no_grad():
        model.linear.V.zero_()
        model.linear.b.zero_()
    model.linear.eps = 0.0
    assert torch.count_nonzero(model.linear.matrix()) == 0
    x = 3.0 * torch.randn(64, dim, dtype=torch.float64)
    J = vmap(jacrev(lambda v: model(v.unsqueeze(0)).squeeze(0)))(x)
    eig = torch.linalg.eigvalsh((J + J.transpose(1, 2)) / 2)
    assert torch.allclose(J, J.transpose(1, 2), atol=1e-10)
    assert eig.min() >= -1e-10
    assert eig.max() > 1e-3  # the nonlinear part is really there (not a vacuous zero map)
    assert torch.allclose(model.jacobian(x), J, atol=1e-10)


@pytest.mark.parametrize("arch", ARCHS)
def test_output_is_gradient_of_potential(arch: str) -> None:
    model = random_model(arch, 4, 3)
    x = (2.0 * torch.randn(32, 4, dtype=torch.float64)).requires_grad_(True)
    (grad,) = torch.autograd.grad(model.potential(x).sum(), x)
    assert torch.allclose(model(x), grad, atol=1e-9)


@pytest.mark.parametrize("arch", ARCHS)
def test_float32_batched_and_single(arch: str) -> None:
    model = build_model(arch, 3, 8, 2)
    x = torch.randn(10, 3)
    y = model(x)
    assert y.dtype == torch.float32 and y.shape == (10, 3)
    assert torch.allclose(model(x[:1]), y[:1], atol=1e-6)


def test_closed_form_gaussian_map_pushes_covariance() -> None:
    rng = np.random.default_rng(0)
    S1, S2 = random_covariance(6, rng), random_covariance(6, rng)
    A = bures_map_matrix(S1, S2)
    assert np.allclose(A @ S1 @ A, S2, atol=1e-10)
    assert np.linalg.eigvalsh(A).min() > 0
    m = np.zeros(6)
    assert w2_gaussian(m, S1, m, S1) == pytest.approx(0.0, abs=1e-6)


def test_sinkhorn_divergence_small_for_same_cloud_and_positive_otherwise() -> None:
    torch.manual_seed(0)
    x = torch.randn(200, 2, dtype=torch.float64)
    assert float(sinkhorn_divergence(x, x, 0.05)) == pytest.approx(0.0, abs=1e-6)
    assert float(sinkhorn_divergence(x, x + 1.0, 0.05)) > 0.4  # ~ |shift|^2 / 2 = 1


@pytest.mark.parametrize("arch", ARCHS)
def test_likelihood_training_recovers_gaussian_map(arch: str) -> None:
    rng = np.random.default_rng(4)
    d = 2
    m1, m2 = rng.normal(size=d), rng.normal(size=d)
    S1, S2 = random_covariance(d, rng), random_covariance(d, rng)
    L1 = torch.tensor(np.linalg.cholesky(S1))
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model(arch, d, 4, 2).double()
    source = lambda n: torch.tensor(m1) + torch.randn(n, d, generator=gen, dtype=torch.float64) @ L1.T
    train_likelihood(model, source, gaussian_logpdf(torch.tensor(m2), torch.tensor(S2)), 300, 128, 0.03)
    x = source(4000)
    with torch.no_grad():
        y = model(x).numpy()
    true = m2 + (x.numpy() - m1) @ bures_map_matrix(S1, S2)
    assert l2_uvp(y, true, float(np.trace(S2))) < 1.0
