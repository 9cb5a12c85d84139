"""benchmarks/transport_one_network.py: one network at one D, alone, with overridden settings."""
from __future__ import annotations

import pytest

from benchmarks.transport_one_network import parse_overrides, train_one
from echocem.transport.benchmark import TrueMap
from echocem.transport.experiment import start_replicate
from echocem.transport.metrics import cosine, l2_uvp

TINY = {"width": 16, "width_per_dim": 1, "depth": 2, "steps": 40, "batch": 256, "lr": 0.1, "warmup": 0.1,
        "pool": 1024, "newton_iter": 3, "newton_tol": 1.0e-3, "line_points": 2}


def test_overrides_keep_each_setting_type_and_refuse_unknown_keys():
    cfg = parse_overrides(["steps=4000", "lr=0.05", "pool=2.62144e5"], TINY)
    assert cfg["steps"] == 4000 and isinstance(cfg["steps"], int)
    assert cfg["pool"] == 262144 and isinstance(cfg["pool"], int)
    assert cfg["lr"] == 0.05 and TINY["steps"] == 40  # the profile's dict is left as it was
    with pytest.raises(SystemExit, match="'stepz=3'.*steps"):
        parse_overrides(["stepz=3"], TINY)
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse_overrides(["steps"], TINY)


def test_one_network_trains_from_the_replicates_bures_start_and_is_deterministic(pair2):
    first = train_one(pair2, "cmgn", TINY, n_fit=2048, seed=7, replicate=1, n_eval=1024)
    again = train_one(pair2, "cmgn", TINY, n_fit=2048, seed=7, replicate=1, n_eval=1024)
    assert first["uvp"] == again["uvp"] and first["cos"] == again["cos"]
    start = start_replicate(pair2, TrueMap(pair2), 2048, 7, 1, 1024)
    linear = start.linear(start.x_eval)
    # the network improves on the linear map it starts from (40 steps: 6.5 % against 14.1 %)
    assert 0 < first["uvp"] < 0.75 * l2_uvp(linear, start.t_eval, pair2.var_q)
    assert cosine(linear, start.t_eval, start.x_eval) < first["cos"] <= 1
    other = train_one(pair2, "cmgn", TINY, n_fit=2048, seed=7, replicate=2, n_eval=1024)
    assert other["uvp"] != first["uvp"]   # another replicate: other streams
