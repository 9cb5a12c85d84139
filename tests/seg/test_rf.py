"""Features and the Random Forest baseline on small synthetic patches."""
from __future__ import annotations

import joblib
import numpy as np
import pytest

from echocem.seg.features import FEATURE_NAMES, envelope, pixel_features
from echocem.seg.metric import challenge_iou
from echocem.seg.rf import class_quotas, feature_importances, predict_masks, train_rf, training_set
from tests.seg.synthetic import make_patches, normalise

CFG = dict(n_estimators=8, max_depth=10, min_samples_leaf=5, max_features="sqrt",
           pixels_per_class=3000, smooth_rows=9, window=5, feature_chunk=4)


def test_envelope_of_a_cosine_is_its_amplitude():
    cols = np.arange(272)
    rows = np.broadcast_to(3.0 * np.cos(0.7 * cols), (160, 272))
    env = envelope(rows[None].astype(np.float32), np.array([272]))[0]
    np.testing.assert_allclose(env[:, 40:230], 3.0, rtol=0.05)
    narrow = envelope(rows[None].astype(np.float32), np.array([160]))[0]
    assert (narrow[:, 160:] == 0).all()


def test_features_shape_padding_and_positions():
    data = make_patches(4, seed=1)
    x = normalise(data["images"], data["widths"])
    f = pixel_features(x, data["widths"])
    assert f.shape == (4, 160, 272, len(FEATURE_NAMES)) and f.dtype == np.float32
    assert np.isfinite(f).all()
    narrow = int(np.flatnonzero(data["widths"] == 160)[0])
    assert (f[narrow, :, 160:, :] == 0).all()
    col = FEATURE_NAMES.index("column_from_casing")
    # the casing is the strongest straight echo: its column sits near 0 in this feature
    casing_cols = np.flatnonzero((data["masks"][0] == 2).all(axis=0))
    assert np.abs(f[0, 80, casing_cols, col]).min() <= 2


def test_class_quotas_are_balanced_and_within_counts():
    data = make_patches(6, seed=2)
    q = class_quotas(data["masks"], data["widths"].astype(np.int64), 500, np.random.default_rng(0))
    assert q.sum(axis=0).tolist() == [500, 500, 500]
    counts = np.stack([(data["masks"] == c).sum(axis=(1, 2)) for c in range(3)], axis=1)
    assert (q <= counts).all()


def test_rf_learns_above_chance_and_is_deterministic():
    train, val = make_patches(10, seed=3), make_patches(6, seed=4)
    X, y = training_set(train["images"], train["masks"], train["widths"], CFG, np.random.default_rng(0), normalise)
    assert X.shape == (9000, len(FEATURE_NAMES)) and np.bincount(y).tolist() == [3000, 3000, 3000]
    model = train_rf(X, y, CFG, seed=0)
    pred = predict_masks(model, val["images"], val["widths"], CFG, normalise)
    padding = np.broadcast_to(np.arange(272)[None, None, :] >= val["widths"][:, None, None], pred.shape)
    assert (pred[padding] == -1).all() and set(np.unique(pred[~padding]).tolist()) <= {0, 1, 2}
    score = challenge_iou(val["masks"], pred, val["widths"])
    floor = challenge_iou(val["masks"], np.where(val["masks"] >= 0, 0, -1), val["widths"])
    assert floor["iou"] == 0.0
    assert score["iou_class2"] > 0.8 and score["iou_class1"] > 0.5
    importances = feature_importances(model)
    assert list(importances) == list(FEATURE_NAMES) and sum(importances.values()) == pytest.approx(1.0)
    again = train_rf(*training_set(train["images"], train["masks"], train["widths"], CFG,
                                   np.random.default_rng(0), normalise), CFG, seed=0)
    np.testing.assert_array_equal(predict_masks(again, val["images"], val["widths"], CFG, normalise), pred)


def test_saved_forest_does_not_depend_on_the_thread_count(tmp_path):
    train = make_patches(4, seed=6)
    cfg = {**CFG, "n_estimators": 3, "pixels_per_class": 300}
    blobs = []
    for n_jobs in (1, 2):
        X, y = training_set(train["images"], train["masks"], train["widths"], cfg, np.random.default_rng(1), normalise)
        joblib.dump(train_rf(X, y, cfg, seed=1, n_jobs=n_jobs), tmp_path / f"rf{n_jobs}.joblib", compress=3)
        blobs.append((tmp_path / f"rf{n_jobs}.joblib").read_bytes())
    assert blobs[0] == blobs[1]
