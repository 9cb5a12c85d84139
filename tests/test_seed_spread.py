"""benchmarks/seed_spread.py: per-network IoUs and gains with intervals, their spread over networks."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.seed_spread import seed_table, spread


def test_gains_and_spread_over_networks_have_the_known_answer():
    rng = np.random.default_rng(0)
    wells = np.repeat([5, 6], 40)
    networks = {}
    for k, (base, section_gain) in enumerate(((0.70, 0.02), (0.74, 0.00), (0.78, 0.04))):
        unet = np.clip(base + rng.normal(0, 0.05, wells.size), 0, 1)
        # sections add exactly section_gain on every patch; TTA changes nothing
        networks[f"net {k}"] = {"unet": unet, "sections": unet + section_gain, "tta": unet + section_gain}
    table = seed_table(networks, wells, np.arange(wells.size) // 8, n_boot=300, level=0.95, seed=0).set_index("network")
    for k, gain in enumerate((0.02, 0.00, 0.04)):
        row = table.loc[f"net {k}"]
        assert row["gain_sections"] == pytest.approx(gain)
        # a constant per-patch difference: every resample has the same mean, the interval is a point
        assert row["gain_sections_low"] == pytest.approx(gain) and row["gain_sections_high"] == pytest.approx(gain)
        assert row["gain_tta"] == 0 and row["gain_tta_low"] == 0 and row["gain_tta_high"] == 0
        assert row["unet_low"] < row["unet"] < row["unet_high"]
        assert row["unet"] == pytest.approx(networks[f"net {k}"]["unet"].mean())
    summary = spread(table.reset_index())
    assert summary.loc["gain_sections", "mean"] == pytest.approx(0.02)
    assert summary.loc["gain_sections", "std"] == pytest.approx(0.02)  # std of 0.02, 0.00, 0.04 (ddof 1)
    assert summary.loc["gain_sections", "min"] == pytest.approx(0.0)
    assert summary.loc["gain_sections", "max"] == pytest.approx(0.04)
    assert (summary["n_networks"] == 3).all()
    assert summary.loc["unet", "mean"] == pytest.approx(np.mean([n["unet"].mean() for n in networks.values()]))
