"""The benchmark pair: T* from the arrays reproduces the published check points; samplers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from echocem.io import EchoCemError
from echocem.transport.benchmark import DIMS, Samplers, TrueMap, load_pair
from tests.transport.conftest import DATA_DIR


@pytest.mark.parametrize("dim", DIMS)
def test_true_map_reproduces_t_check(dim: int) -> None:
    pair = load_pair(DATA_DIR, dim)
    mapped = TrueMap(pair)(torch.as_tensor(pair.x_check, dtype=torch.float64)).numpy()
    assert mapped.shape == pair.t_check.shape == (4096, dim)
    assert np.abs(mapped - pair.t_check).max() < 1e-4


def test_true_map_is_gradient_of_convex_potential(pair2) -> None:
    """Monotone: <T(x) - T(y), x - y> >= 0 on random pairs (a Brenier map)."""
    T = TrueMap(pair2)
    g = torch.Generator().manual_seed(0)
    x, y = 3 * torch.randn(2000, 2, generator=g, dtype=torch.float64), 3 * torch.randn(2000, 2, generator=g,
                                                                                         dtype=torch.float64)
    assert (((T(x) - T(y)) * (x - y)).sum(1) >= -1e-9).all()


def test_samplers_match_the_arrays_moments(pair4) -> None:
    s = Samplers(pair4, torch.Generator().manual_seed(0), torch.float64, q_chunk=4096)
    x = s.sample_p(20000)
    assert x.shape == (20000, 4) and x.dtype == torch.float64
    # P: mixture of the 3 equal-weight components: its mean is the centres' mean
    centers = pair4.arrays["p_centers"]
    assert np.allclose(x.mean(0).numpy(), centers.mean(0), atol=0.05)
    y = s.sample_q(20000)
    assert abs(float(y.var(0).sum()) - pair4.var_q) / pair4.var_q < 0.05  # var_q: trace of Q's covariance
    transport_cost = float(((s.true_map(x) - x) ** 2).sum(1).mean() / 2)
    assert transport_cost == pytest.approx(float(pair4.arrays["cost"]), rel=0.05)


def test_samplers_are_fresh_and_seeded(pair2) -> None:
    a = Samplers(pair2, torch.Generator().manual_seed(1), q_chunk=64)
    b = Samplers(pair2, torch.Generator().manual_seed(1), q_chunk=64)
    q1, q2 = a.sample_q(50), a.sample_q(50)   # the second call crosses a chunk boundary
    assert q1.shape == (50, 2) and not torch.allclose(q1, q2)
    assert torch.equal(q1, b.sample_q(50)) and torch.equal(q2, b.sample_q(50))
    assert not torch.allclose(a.sample_p(50), a.sample_p(50))


def test_load_pair_errors_name_the_problem(tmp_path) -> None:
    with pytest.raises(EchoCemError, match="dimension 3"):
        load_pair(DATA_DIR, 3)
    with pytest.raises(EchoCemError, match="not found"):
        load_pair(tmp_path, 2)
    np.savez(tmp_path / "mix3_to_mix10_d2.npz", p_centers=np.zeros((3, 2)))
    with pytest.raises(EchoCemError, match="missing arrays .*scale"):
        load_pair(tmp_path, 2)
    (tmp_path / "mix3_to_mix10_d4.npz").write_text("not a zip")
    with pytest.raises(EchoCemError, match="mix3_to_mix10_d4.npz"):
        load_pair(tmp_path, 4)
