"""Shared fixtures of the patch-generator tests: one thread, tiny simulated wells, tiny networks."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from echocem.data.simulate import simulate_section
from tests.pipeline import REPO

H, W = 160, 272
TINY_MODEL = {"encoder": "tu-mobilenetv3_small_050", "encoder_depth": 3, "decoder_channels": [16, 8, 8],
              "contrast_rows": 8.0}
TINY_TRAIN = {"epochs": 3, "batch_size": 4, "lr": 0.003, "weight_decay": 0.0001, "warmup_fraction": 0.2,
              "crop_rows": 32, "depth_flip": 0.5, "mask_dropout": 0.2, "tie_weight": 4.0, "time_sampling": "logit_normal",
              "prediction": "data_skip", "data_space": 1.0, "ema_decay": 0.9}
TINY_SAMPLING = {"steps": 2, "method": "heun", "guidance": 2.0, "batch_size": 4}


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def repo_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


@pytest.fixture(scope="session")
def wells(repo_params) -> dict:
    """The project's simulator: wells 1-4 of 4 patches each (well 3 160 wide, padded), like data/ingested."""
    phys = repo_params["simulate"]["physics"]
    images, masks, widths, ids, well = [], [], [], [], []
    for w in (1, 2, 3, 4):
        width = 160 if w == 3 else W
        strip, mask = simulate_section(np.random.default_rng([7, w]), 4, width, 1.0, phys)
        for p in range(4):
            img = np.zeros((H, W), np.int16)
            m = np.full((H, W), -1, np.int8)
            img[:, :width] = strip[p * H:(p + 1) * H]
            m[:, :width] = mask[p * H:(p + 1) * H]
            images.append(img)
            masks.append(m)
            widths.append(width)
            ids.append(f"well_{w}_section_1_patch_{p}")
            well.append(w)
    return {"images": np.stack(images), "masks": np.stack(masks), "widths": np.array(widths, np.int16),
            "ids": np.array(ids), "well": np.array(well, np.int32)}


@pytest.fixture(scope="session")
def norm_spec(wells) -> dict:
    from echocem.data.preprocess import fit_normalization

    return fit_normalization(wells["images"], wells["widths"])


@pytest.fixture(scope="session")
def proposals_cfg(repo_params) -> dict:
    return repo_params["gen_patches"]["proposals"]


@pytest.fixture(scope="session")
def tiny_size() -> dict:
    return {"model": TINY_MODEL, "data_scale": 2.0, "train": TINY_TRAIN, "sampling": TINY_SAMPLING, "n_pairs": 4}
