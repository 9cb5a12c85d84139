"""L2-UVP and the cosine on known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from echocem.io import EchoCemError
from echocem.transport.benchmark import Samplers
from echocem.transport.metrics import cosine, l2_uvp


def test_known_values_by_hand() -> None:
    x = np.array([[0.0, 0.0], [2.0, 0.0]])
    truth = np.array([[1.0, 0.0], [3.0, 0.0]])       # T*(x) = x + (1, 0)
    assert l2_uvp(truth, truth, 2.0) == 0.0
    assert l2_uvp(x, truth, 2.0) == pytest.approx(50.0)   # 100 * mean(1) / 2
    assert cosine(truth, truth, x) == pytest.approx(1.0)
    assert cosine(x - (truth - x), truth, x) == pytest.approx(-1.0)  # opposite displacement
    assert cosine(x + np.array([0.0, 1.0]), truth, x) == pytest.approx(0.0)  # orthogonal
    assert np.isnan(cosine(x, truth, x))  # the identity moves nothing: undefined


def test_on_the_benchmark(pair2) -> None:
    s = Samplers(pair2, torch.Generator().manual_seed(0), torch.float64)
    x = s.sample_p(2**14)
    t = s.true_map(x).numpy()
    x = x.numpy()
    assert l2_uvp(t, t, pair2.var_q) == 0.0
    # the identity scores 100 E|x - T*(x)|^2 / Var(Q) = 200 cost / Var(Q)
    expected = 200 * float(pair2.arrays["cost"]) / pair2.var_q
    assert l2_uvp(x, t, pair2.var_q) == pytest.approx(expected, rel=0.03)
    # the constant map at Q's mean scores ~100 %
    assert l2_uvp(np.broadcast_to(t.mean(0), t.shape), t, pair2.var_q) == pytest.approx(100.0, rel=0.03)
    assert cosine(x + 0.5 * (t - x), t, x) == pytest.approx(1.0)  # right direction, wrong length


def test_bad_shapes_are_rejected() -> None:
    with pytest.raises(EchoCemError, match="l2_uvp"):
        l2_uvp(np.zeros((3, 2)), np.zeros((3, 3)), 1.0)
    with pytest.raises(EchoCemError, match="var_q"):
        l2_uvp(np.zeros((3, 2)), np.zeros((3, 2)), 0.0)
