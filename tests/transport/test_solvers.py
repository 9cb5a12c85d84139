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
from echocem.io import EchoCemError
from echocem.transport.experiment import check_budgets
from echocem.transport.semidual import (ConjugatePool, TrainingDiverged, init_linear_part, linear_start, lr_factor,
                                        param_groups, solve_conjugate, train_semidual)

NET = {"width": 32, "width_per_dim": 0, "depth": 2, "steps": 60, "batch": 256, "newton_iter": 10,
       "newton_tol": 1e-3, "line_points": 1, "warmup": 0.1}
LR = {"cmgn": 0.1, "mmgn": 0.4, "icnn": 0.1}
# the default way: Q from a pool with warm-started conjugates, a few Newton steps per batch
POOLED = {**NET, "newton_iter": 4, "pool": 2048}


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


@pytest.mark.parametrize("pooled", [False, True], ids=["fresh-q", "pooled-q"])
@pytest.mark.parametrize("name", ["cmgn", "mmgn", "icnn"])
def test_networks_improve_on_their_linear_start(problem, name: str, pooled: bool) -> None:
    torch.manual_seed(0)
    cfg = {**(POOLED if pooled else NET), "lr": LR[name]}
    s = problem["s"]
    if name == "icnn":
        model, config, history = fit_icnn(2, cfg, s.sample_p, s.sample_q, problem["start"],
                                          generator=problem["gen"])
    else:
        model, config, history = fit_mgn(name, 2, cfg, s.sample_p, s.sample_q, problem["start"], problem["gen"])
    assert len(history) == cfg["steps"] and np.isfinite(history).all()
    score = problem["uvp"](apply_model(model, problem["x"]))
    assert score < problem["identity"]
    assert score < 0.7 * problem["linear"]  # training moved it well past the Bures map it started from


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


def test_icnn_gradient_and_hessian_match_autograd() -> None:
    """The ICNN's closed-form gradient and Hessian are those of its potential (torch.func), any depth."""
    from torch.func import grad, hessian, vmap

    for depth in (1, 2, 3):
        torch.manual_seed(depth)
        model = ICNN(4, [12] * depth).double()
        with torch.no_grad():  # leave the start: both signs of every pre-activation, a curved potential
            for p in model.parameters():
                p.add_(0.5 * torch.randn_like(p))
        x = 2 * torch.randn(64, 4, dtype=torch.float64)
        single = lambda v: model.potential(v.unsqueeze(0)).squeeze(0)
        H = vmap(hessian(single))(x)
        assert torch.allclose(model(x), vmap(grad(single))(x), atol=1e-10)
        assert torch.allclose(model.jacobian(x), H, atol=1e-10)
        assert float((H - model.linear.matrix()).detach().abs().max()) > 1e-2  # the nonlinear part counts
        assert torch.linalg.eigvalsh(model.jacobian(x)).min() > 0


def test_conjugate_pool_passes_over_every_sample_without_replacement() -> None:
    torch.manual_seed(0)
    model = build_model("mmgn", 2, 4, 2).double()
    draws = []
    sample_q = lambda n: draws.append(n) or torch.randn(n, 2, dtype=torch.float64)
    pool = ConjugatePool(model, sample_q, 12, torch.Generator().manual_seed(0))
    assert draws == [12] and len(pool) == 12  # Q is sampled once
    assert torch.allclose(pool.x, linear_start(model, pool.y))  # starts at the linear part's inverse
    first = torch.cat([pool.indices(4) for _ in range(3)])
    assert sorted(first.tolist()) == list(range(12))  # one pass: every sample once
    second = torch.cat([pool.indices(4) for _ in range(3)])
    assert sorted(second.tolist()) == list(range(12)) and not torch.equal(first, second)  # a new permutation
    again = ConjugatePool(model, sample_q, 12, torch.Generator().manual_seed(0))
    assert torch.equal(torch.cat([again.indices(4) for _ in range(3)]), first)  # seeded
    with pytest.raises(ValueError, match="exceeds"):
        pool.indices(13)


def test_warm_start_from_the_last_solution_needs_fewer_newton_steps() -> None:
    """The pool's point: after a small change of the map, the previous solution is a far better
    start than the linear part's inverse."""
    torch.manual_seed(3)
    model = build_model("cmgn", 3, 16, 3).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    y = model(2 * torch.randn(300, 3, dtype=torch.float64))
    x_prev, _ = solve_conjugate(model, y, linear_start(model, y), max_iter=50, tol=1e-9)
    with torch.no_grad():  # one optimiser step's worth of change
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    cold_x, cold = solve_conjugate(model, y, linear_start(model, y), max_iter=50, tol=1e-9)
    warm_x, warm = solve_conjugate(model, y, x_prev, max_iter=50, tol=1e-9)
    assert warm.iterations < cold.iterations and warm.max_residual < 1e-8
    assert torch.allclose(warm_x, cold_x, atol=1e-6)  # the same conjugate points


def _mmgn_at_start(problem) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("mmgn", 2, 16, 2)
    init_linear_part(model.linear, problem["start"].matrix, problem["start"].offset)
    return model


def test_pooled_training_keeps_the_conjugate_points_solved(problem) -> None:
    """After pooled training with 4 Newton steps a batch, the kept points solve grad psi(x) = y."""
    model = _mmgn_at_start(problem)
    kept = {}

    class Spy(ConjugatePool):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            kept["pool"] = self

    import echocem.transport.semidual as semidual
    original, semidual.ConjugatePool = semidual.ConjugatePool, Spy
    try:
        s = problem["s"]
        history = train_semidual(model, lambda a, b: model.potential(a).mean() - model.potential(b).mean(),
                                 s.sample_p, s.sample_q, steps=40, batch=128, lr=0.2, newton_iter=4, newton_tol=1e-3,
                                 pool=512, generator=torch.Generator().manual_seed(0), warmup=0.1)
    finally:
        semidual.ConjugatePool = original
    pool = kept["pool"]
    assert len(history) == 40 and np.isfinite(history).all()
    with torch.no_grad():
        residual = (model(pool.x) - pool.y).norm(dim=1) / (1 + pool.y.norm(dim=1))
        moved = (model(linear_start(model, pool.y)) - pool.y).norm(dim=1) / (1 + pool.y.norm(dim=1))
    assert float(moved.median()) > 1e-2             # the map left its linear part: cold starts are off
    # the kept points track it (each visited 10 times, solved to 1e-3 at most 3 steps before the end)
    assert float(residual.median()) < min(5e-3, float(moved.median()) / 10)


def test_training_stops_once_the_conjugate_solves_stay_far_off(problem) -> None:
    """patience batches in a row with a conjugate row above the residual bound stop the run at that
    step. (A healthy run with the default bound trains every step: the pooled-training test above.)"""
    model = _mmgn_at_start(problem)
    gap = lambda a, b: model.potential(a).mean() - model.potential(b).mean()
    s = problem["s"]
    # no Newton step and a bound below any real residual: every batch is "far", the 7th stops it
    with pytest.raises(TrainingDiverged, match=r"diverged at step 7: 7 batches in a row .* above 1e-09") as err:
        train_semidual(model, gap, s.sample_p, s.sample_q, steps=40, batch=128, lr=0.2, newton_iter=0, newton_tol=1e-3,
                       pool=512, generator=torch.Generator().manual_seed(0), warmup=0.1, diverged_residual=1e-9,
                       patience=7, desc="mmgn d=2")
    assert err.value.step == 7 and str(err.value).startswith("mmgn d=2: ")


def test_training_stops_when_the_objective_is_not_finite(problem) -> None:
    """A batch that makes J NaN stops the run at that step, not at the end of the budget."""
    model = _mmgn_at_start(problem)
    s, calls = problem["s"], []

    def sample_p(n: int) -> torch.Tensor:
        calls.append(n)
        x = s.sample_p(n)
        return x * float("nan") if len(calls) >= 5 else x

    with pytest.raises(TrainingDiverged, match=r"diverged at step 5: the semi-dual J is nan"):
        train_semidual(model, lambda a, b: model.potential(a).mean() - model.potential(b).mean(), sample_p,
                       s.sample_q, steps=40, batch=128, lr=0.2, newton_iter=4, newton_tol=1e-3, pool=512,
                       generator=torch.Generator().manual_seed(0), warmup=0.1)
    assert len(calls) == 5


def test_lr_factor_warms_up_then_decays() -> None:
    f = [lr_factor(s, 100, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(f[:10], f[1:10]))          # linear rise over 10 % of the steps
    assert all(a >= b for a, b in zip(f[9:], f[10:]))            # then non-increasing
    assert lr_factor(100, 100, 0.1) == pytest.approx(0.01)       # to lr/100 at the end
    assert lr_factor(0, 100, 0.0) == pytest.approx(1.0)          # no warm-up: the plain cosine
    with pytest.raises(ValueError, match="warmup"):
        lr_factor(0, 100, 1.0)


@pytest.mark.parametrize("dim", [2, 32, 128])
def test_param_groups_slow_the_matrices_that_read_x(dim: int) -> None:
    """V, W and the ICNN's skip weights get lr * min(1, sqrt(8 / D)); biases never, even when the
    width equals D (M-MGN's bias is (K, width), width = D here)."""
    for model, wide in [(build_model("mmgn", dim, dim, 2), {"W", "linear.V"}),
                        (build_model("cmgn", dim, 2 * dim, 2), {"W", "linear.V"}),
                        (ICNN(dim, [dim, dim]), {"skips.0.weight", "skips.1.weight", "linear.V"})]:
        groups = param_groups(model, 0.4)
        names = {id(p): n for n, p in model.named_parameters()}
        rate = 0.4 * min(1.0, (8 / dim) ** 0.5)
        assert groups[0]["lr"] == 0.4 and groups[1]["lr"] == pytest.approx(rate)
        assert {names[id(p)] for p in groups[1]["params"]} == wide
        assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_a_pool_smaller_than_a_batch_is_refused() -> None:
    cfg = {name: {"batch": 512, "pool": 16384} for name in ("cmgn", "mmgn", "icnn")}
    check_budgets(cfg)
    cfg["mmgn"]["pool"] = 256
    with pytest.raises(EchoCemError, match="mmgn.pool"):
        check_budgets(cfg)


def test_rescue_steps_finish_the_rows_left_far_from_solved() -> None:
    torch.manual_seed(1)
    model = build_model("cmgn", 3, 16, 3).double()
    with torch.no_grad():  # a strongly nonlinear map: one Newton step from the linear start is not enough
        for p in model.parameters():
            p.add_(0.5 * torch.randn_like(p))
    y = model(2 * torch.randn(200, 3, dtype=torch.float64))
    x0 = linear_start(model, y)
    target = 1e-6 * (1 + y.norm(dim=1))
    _, capped = solve_conjugate(model, y, x0, max_iter=1, tol=1e-6)
    x, rescued = solve_conjugate(model, y, x0, max_iter=1, tol=1e-6, rescue_iter=40, rescue_factor=10.0)
    residual = (model(x) - y).norm(dim=1)
    assert capped.max_residual > 1e-2 and capped.iterations == 1
    assert rescued.iterations > 1 and bool((residual <= 10.0 * target).all())
    # the rescue stops at its looser tolerance: rows between it and the tolerance are left as they are
    exact, _ = solve_conjugate(model, y, x0, max_iter=41, tol=1e-6)
    assert rescued.iterations <= 41 and float(residual.max()) > float((model(exact) - y).norm(dim=1).max())
