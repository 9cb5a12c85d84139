"""Map files: save / load / apply round trip for every kind, the CLI, and clear errors."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from echocem.__main__ import main as echocem_main
from echocem.io import EchoCemError
from echocem.transport import maps
from echocem.transport.entropic import fit_entropic
from echocem.transport.fit_mgn import apply_model, make_mgn, mgn_config
from echocem.transport.icnn import icnn_config, make_icnn
from echocem.transport.linear import fit_bures
from tests.pipeline import REPO

CFG = {"width": 6, "width_per_dim": 1, "depth": 2}


def _random_points(n: int = 40, dim: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim))


def _blobs() -> dict:
    """One blob of every kind, D = 3, with its expected output on the test points."""
    torch.manual_seed(0)
    x = _random_points()
    out = {}
    for kind in ("cmgn", "mmgn"):
        config = mgn_config(kind, 3, CFG)
        model = make_mgn(config)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn_like(p))
        out[kind] = (maps.network_blob(kind, model, config, {"seed": 0}), apply_model(model, x))
    config = icnn_config(3, CFG)
    icnn = make_icnn(config)
    out["icnn"] = (maps.network_blob("icnn", icnn, config, {}), apply_model(icnn, x))
    y = _random_points(200, seed=1) * 2 + 1
    linear = fit_bures(_random_points(200, seed=2), y)
    out["linear"] = (maps.linear_blob(linear, {}), linear(x))
    entropic = fit_entropic(_random_points(100, seed=3), y[:100], blur=0.5)
    out["entropic"] = (maps.entropic_blob(entropic, {}), entropic(x))
    return out


@pytest.mark.parametrize("kind", maps.KINDS)
def test_round_trip_every_kind(tmp_path, kind: str) -> None:
    blob, expected = _blobs()[kind]
    path = tmp_path / f"{kind}.pt"
    maps.save_map(path, blob)
    loaded = maps.load_map(path)
    assert loaded.kind == kind and loaded.dim == 3
    np.testing.assert_allclose(loaded(_random_points()), expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(expected, _random_points())  # not the identity: the test can fail


def test_cli_apply_and_info(tmp_path) -> None:
    blob, expected = _blobs()["cmgn"]
    maps.save_map(tmp_path / "cmgn.pt", blob)
    np.save(tmp_path / "in.npy", _random_points().astype(np.float32))
    proc = subprocess.run([sys.executable, "-m", "echocem", "transport-map", "apply", str(tmp_path / "cmgn.pt"),
                           str(tmp_path / "in.npy"), str(tmp_path / "out.npy")], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = np.load(tmp_path / "out.npy")
    assert out.dtype == np.float64 and out.shape == (40, 3)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)  # float32 input, same map
    assert echocem_main(["transport-map", "info", str(tmp_path / "cmgn.pt")]) == 0


def test_cli_errors_are_one_clear_line(tmp_path, capsys) -> None:
    blob, _ = _blobs()["linear"]
    maps.save_map(tmp_path / "lin.pt", blob)
    np.save(tmp_path / "wrong.npy", np.zeros((5, 4)))
    code = echocem_main(["transport-map", "apply", str(tmp_path / "lin.pt"), str(tmp_path / "wrong.npy"),
                         str(tmp_path / "out.npy")])
    err = capsys.readouterr().err
    assert code == 2 and "wrong.npy" in err and "(n, 3)" in err
    assert not (tmp_path / "out.npy").exists()
    assert echocem_main(["transport-map", "apply", str(tmp_path / "missing.pt"), str(tmp_path / "wrong.npy"),
                         str(tmp_path / "o.npy")]) == 2
    torch.save({"format": "something-else"}, tmp_path / "foreign.pt")
    with pytest.raises(EchoCemError, match="foreign.pt.*something-else"):
        maps.load_map(tmp_path / "foreign.pt")
    np.save(tmp_path / "nan.npy", np.full((2, 3), np.nan))
    with pytest.raises(EchoCemError, match="NaN"):
        maps.apply_file(tmp_path / "lin.pt", tmp_path / "nan.npy", tmp_path / "o.npy")


def test_same_map_same_bytes(tmp_path) -> None:
    blob, _ = _blobs()["mmgn"]
    maps.save_map(tmp_path / "a.pt", blob)
    first = (tmp_path / "a.pt").read_bytes()
    blob2, _ = _blobs()["mmgn"]
    maps.save_map(tmp_path / "a.pt", blob2)  # torch names the archive after the file: same path
    assert (tmp_path / "a.pt").read_bytes() == first  # a rerun gives the same DVC hash
