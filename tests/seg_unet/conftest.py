"""Shared fixtures of the U-Net tests: one thread, tiny networks, tiny synthetic patches."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from echocem.params import deep_merge
from tests.pipeline import REPO
from tests.seg.synthetic import make_patches

# the repository's small profile with a tinier network and short runs: the tests
# exercise the real code paths, only smaller
TINY_OVERRIDES = {
    "model": {"encoder": "tu-mobilenetv3_small_050", "encoder_depth": 3, "decoder_channels": [16, 8, 8]},
    "train": {"epochs": 4, "batch_size": 4, "eval_batch_size": 8, "lr": 0.003,
              "warmup_fraction": 0.25},
}


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture(scope="session")
def tiny_profile(repo_params) -> dict:
    return deep_merge(repo_params["unet"]["profiles"]["small"], TINY_OVERRIDES)


@pytest.fixture(scope="session")
def tiny_refiner_profile(repo_params) -> dict:
    return deep_merge(repo_params["postproc"]["profiles"]["small"], TINY_OVERRIDES | {
        "train": {"epochs": 2, "batch_size": 4, "eval_batch_size": 8}})


@pytest.fixture(scope="session")
def patches() -> dict:
    """24 patches over 4 wells (every fourth 160 wide, zero/-1 padded)."""
    data = make_patches(24, seed=3)
    data["well"] = (1 + np.arange(24) % 4).astype(np.int32)
    return data


@pytest.fixture(scope="session")
def norm_spec(patches) -> dict:
    from echocem.data.preprocess import fit_normalization

    return fit_normalization(patches["images"], patches["widths"])
