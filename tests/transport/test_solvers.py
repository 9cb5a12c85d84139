"""Every solver learns the benchmark map from samples on a tiny budget; the semi-dual's parts."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from echocem.generative.mgn import build_model
from echocem.transport.benchmark import Samplers
from echocem.transport.entropic import fit_entropic
from echocem.transport.fit_mgn import apply_model, fit_mgn, potential_gap
from echocem.transport.icnn import ICNN, fit_icnn
from echocem.transport.linear import fit_bures
from echocem.transport.metrics import l2_uvp
from echocem.transport.semidual import init_linear_part, linear_start, solve_conjugate

NET = {"width": 32, "width_per_dim": 0, "depth": 2, "steps": 60, "batch": 256, "newton_iter": 10,
       "newton_tol": 1e-3, "line_points": 1}
LR = {"cmgn": 0.05, "mmgn": 0.1, "icnn": 0.03}


@pytest.fixture(scope="module")
def problem(pair2):
    """Samplers, fit samples, the Bures start and 4096 scored points with their truth."""
    gen = torch.Generator().manual_seed(0)
    s = Samplers(pair2, gen, torch.float32, q_chunk=4096)
    x_fit, y_fit = s.sample_p(4096).double().numpy(), s.sample_q(4096).double().numpy()
    x_eval = Samplers(pair2, torch.Generator().manual_seed(99), torch.float64).sample_p(4096)
    t_eval = s.true_map(x_eval).numpy()
    x_eval = x_eval.numpy()
    start = fit_bures(x_fit, y_fit)
    uvp = lambda y: l2_uvp(y, t_eval, pair2.var_q)
    return {"s": s, "gen": gen, "x_fit": x_fit, "y_fit": y_fit, "x": x_eval, "start": start, "uvp": uvp,
            "identity": uvp(x_eval), "linear": uvp(start(x_eval))}


def test_linear_map_beats_identity_and_matches_the_paper(problem, pair2) -> None:
    assert problem["linear"] < problem["identity"] / 2
    assert problem["linear"] == pytest.approx(pair2.uvp_linear_reference, abs=1.5)  # 13.9 % from the arrays
    A = problem["start"].matrix
    assert np.allclose(A, A.T) and np.linalg.eigvalsh(A).min() > 0


def test_entropic_map_beats_the_linear_map(problem) -> None:
    entropic = fit_entropic(problem["x_fit"][:1024], problem["y_fit"][:1024], blur=0.3)
    assert entropic.epsilon == pytest.approx(0.09)
    assert problem["uvp"](entropic(problem["x"])) < problem["linear"]


@pytest.mark.parametrize("name", ["cmgn", "mmgn", "icnn"])
def test_networks_improve_on_their_linear_start(problem, name: str) -> None:
    torch.manual_seed(0)
    cfg = {**NET, "lr": LR[name]}
    s = problem["s"]
    if name == "icnn":
        model, config, history = fit_icnn(2, cfg, s.sample_p, s.sample_q, problem["start"])
    else:
        model, config, history = fit_mgn(name, 2, cfg, s.sample_p, s.sample_q, problem["start"], problem["gen"])
    assert len(history) == cfg["steps"] and np.isfinite(history).all()
    score = problem["uvp"](apply_model(model, problem["x"]))
    assert score < problem["identity"]
    assert score < 0.85 * problem["linear"]  # training moved it well past the Bures map it started from


@pytest.mark.parametrize("kind", ["cmgn", "mmgn", "icnn"])
def test_conjugate_solve_inverts_the_map(kind: str) -> None:
    torch.manual_seed(1)
    model = ICNN(3, [16, 16]) if kind == "icnn" else build_model(kind, 3, 16, 3)
    model = model.double()
    with torch.no_grad():  # a strongly nonlinear map, far from its linear part
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    y = model(2 * torch.randn(200, 3, dtype=torch.float64))
    x_hat, stats = solve_conjugate(model, y, linear_start(model, y), max_iter=30, tol=1e-10)
    assert torch.allclose(model(x_hat), y, atol=1e-7)
    assert stats.iterations >= 1 and stats.max_residual < 1e-7


def test_line_integral_is_an_unbiased_potential_gap() -> None:
    """C-MGN's gap from its map alone averages to the exact difference of its potential."""
    torch.manual_seed(2)
    model = build_model("cmgn", 2, 8, 3).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x, x_hat = torch.randn(64, 2, dtype=torch.float64), 2 * torch.randn(64, 2, dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        exact = float(model.potential(x).mean() - model.potential(x_hat).mean())
        estimates = [float(potential_gap(model, gen, 2)(x, x_hat)) for _ in range(400)]
    assert np.mean(estimates) == pytest.approx(exact, abs=4 * np.std(estimates) / np.sqrt(400) + 1e-9)
    assert np.std(estimates) > 0  # it is an estimate (random points), not a quadrature


def test_init_linear_part_sets_the_bures_map(problem) -> None:
    model = build_model("mmgn", 2, 4, 2).double()
    init_linear_part(model.linear, problem["start"].matrix, problem["start"].offset)
    assert np.allclose(model.linear.matrix().detach().numpy(), problem["start"].matrix, atol=1e-10)
    x = torch.as_tensor(problem["x"][:10])
    assert np.allclose(model.linear(x).detach().numpy(), problem["start"](problem["x"][:10]), atol=1e-10)
