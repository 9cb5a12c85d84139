"""benchmarks/background_texture.py: the class spreads and the background's row difference of patches."""
from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.background_texture import medians, texture_table


def test_white_noise_and_a_depth_constant_background_are_told_apart():
    rng = np.random.default_rng(0)
    h, w = 160, 272
    masks = np.zeros((2, h, w), np.int8)
    masks[:, :, 200:210] = 2          # a casing band: not background
    masks[:, :, 210:] = -1            # padding beyond width 210
    white = rng.normal(0.0, 20.0, (h, w))
    column = np.tile(rng.normal(0.0, 20.0, (1, w)), (h, 1))  # every row the same: no row difference
    images = np.stack([white, column])
    images[:, :, 200:210] = 500.0      # constant casing: spread 0
    images[:, :, 210:] = 1e6           # padding must not count
    table = texture_table(images, masks, np.array([210, 210]))
    assert table.loc[0, "background std"] == pytest.approx(20.0, rel=0.02)
    assert table.loc[0, "background row difference"] == pytest.approx(2 / math.sqrt(math.pi) * 20.0, rel=0.02)
    assert table.loc[1, "background row difference"] == 0.0
    assert table.loc[0, "casing std"] == 0.0
    assert np.isnan(table.loc[0, "TIE std"])  # no TIE pixels
    summary = medians(table.iloc[[0]])
    assert summary["row difference / std"] == pytest.approx(2 / math.sqrt(math.pi), rel=0.02)
