"""Descriptors and distances: known answers on synthetic inputs, and the naive baselines."""
from __future__ import annotations

import numpy as np
import pytest

from echocem.patchgen.descriptors import AMPLITUDE_STATS, amplitude_descriptors, describe
from echocem.patchgen.judge import (assess, class_noise, class_std, distances, shuffled_masks,
                                    sinkhorn_divergence)


def test_sinkhorn_is_zero_on_itself_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(80, 5))
    assert sinkhorn_divergence(a, a, blur=0.05) == pytest.approx(0.0, abs=1e-6)
    b = rng.normal(size=(80, 5))
    near, far = sinkhorn_divergence(a, b, 0.05), sinkhorn_divergence(a, b + 2.0, 0.05)
    assert 0 < near < far
    # cost |x - y|^2 / 2: a shift by d in every one of 5 dimensions costs about 5 d^2 / 2
    assert far == pytest.approx(5 * 4 / 2, rel=0.3)


def test_amplitude_descriptors_known_values():
    x = np.zeros((1, 160, 272), np.float32)
    masks = np.zeros((1, 160, 272), np.int8)
    masks[:, :, 20:36] = 2
    x[:, :, 20:36] = 4.0  # casing region: constant amplitude 4
    x[:, :, 36:] = np.where(np.arange(236) % 2, 1.0, -1.0)  # background right of it: +-1
    d = amplitude_descriptors(x, masks, np.array([272]), strip_rows=32).reshape(5, 3, len(AMPLITUDE_STATS))
    assert d.shape == (5, 3, 4)
    # background: 20 zero columns and 236 of +-1 (mean 0): std sqrt(236 / 256); everything is relative to it
    bg_std = np.sqrt(236 / 256)
    assert d[:, 0, 1] == pytest.approx(1.0)
    assert d[:, 2, 0] == pytest.approx(4.0 / bg_std) and d[:, 2, 1] == pytest.approx(0.0, abs=1e-9)
    assert d[:, 0, 0] == pytest.approx(236 / 256 / bg_std, rel=1e-6)
    assert np.array_equal(d[:, 1], d[:, 0])  # no TIE: the background's values stand in
    assert np.isfinite(d).all()


def test_shuffled_masks_is_a_derangement(wells):
    out = shuffled_masks(wells["masks"], wells["widths"], np.random.default_rng(0))
    assert not any(np.array_equal(out[i], wells["masks"][i]) for i in range(len(out)))
    pad = np.arange(272)[None, None, :] >= wells["widths"][:, None, None]
    assert (out[np.broadcast_to(pad, out.shape)] == -1).all()
    assert set(np.unique(out[~np.broadcast_to(pad, out.shape)]).tolist()) <= {0, 1, 2}


def test_amplitude_descriptors_ignore_the_well_gain(wells, norm_spec):
    x = np.asarray(wells["images"][:4], np.float32) / norm_spec["scale"]
    a = amplitude_descriptors(x, wells["masks"][:4], wells["widths"][:4], 32)
    b = amplitude_descriptors(1.7 * x, wells["masks"][:4], wells["widths"][:4], 32)
    assert np.allclose(a, b)


def test_class_noise_matches_class_spread(wells, norm_spec):
    std = class_std(wells["images"], wells["masks"], wells["widths"], norm_spec)
    assert std[2] > std[1] > 0 and std[0] > 0
    noise = class_noise(wells["masks"], wells["widths"], std, norm_spec, np.random.default_rng(0))
    again = class_std(noise, wells["masks"], wells["widths"], norm_spec)
    assert again[0] == pytest.approx(std[0], rel=0.05) and again[2] == pytest.approx(std[2], rel=0.1)


def test_distances_rank_real_above_naive(wells, norm_spec):
    # same wells' patches split in two are closer to each other than to noise or shuffled masks
    a = {k: wells[k][::2] for k in ("images", "masks", "widths")}
    b = {k: wells[k][1::2] for k in ("images", "masks", "widths")}
    rng = np.random.default_rng(0)
    noise = {**a, "images": class_noise(a["masks"], a["widths"], class_std(
        wells["images"], wells["masks"], wells["widths"], norm_spec), norm_spec, rng)}
    d = lambda s: describe(s["images"], s["masks"], s["widths"], norm_spec, 32, None)  # noqa: E731
    dist = distances(d(b), {"real": d(a), "noise": d(noise)}, [d(a), d(b)], blur=0.05)
    assert dist["real"]["combined"] < dist["noise"]["combined"]
    assert set(dist["real"]) == {"amplitude", "combined"}


def test_assess_checks(wells, norm_spec):
    sets = {i: {k: wells[k][i::4] for k in ("images", "masks", "widths")} for i in range(4)}
    d = lambda images, masks, widths: describe(images, masks, widths, norm_spec, 32, None)  # noqa: E731
    predict = lambda images, widths: np.where(  # noqa: E731  (a U-Net that sees nothing)
        np.broadcast_to(np.arange(272)[None, None, :] < widths[:, None, None], images.shape), 0, -1).astype(np.int8)
    shuffled = {**sets[1], "masks": shuffled_masks(sets[1]["masks"], sets[1]["widths"], np.random.default_rng(1))}
    out = assess(sets[0], [sets[1], sets[2]], {"generated": sets[3]}, {"naive": shuffled}, d, predict, 0.05)
    assert set(out["sinkhorn"]) == {"real (training wells)", "generated", "naive"}
    assert out["floor_draws"]["combined"]["n"] == 2
    assert out["faithfulness"]["generated"]["iou"] < 0.5  # a judge that finds nothing scores low
    assert "generated: faithfulness >= 0.9 x real IoU" in out["checks"]
    ci = out["faithfulness_ratio_interval"]["generated"]
    if out["unet_real_heldout"]["iou"] > 0:
        assert ci["low"] <= out["faithfulness_ratio"]["generated"] <= ci["high"] and ci["n"] == len(sets[3]["masks"])
    else:  # no ratio to give an interval for
        assert ci is None and out["faithfulness_ratio"]["generated"] is None
    assert out["predictions"]["generated"].shape == sets[3]["masks"].shape
