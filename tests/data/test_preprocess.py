"""Normalisation (NumPy == torch, fitted on training wells) and well-grouped splits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from echocem.data.preprocess import (fit_normalization, load_normalization, load_splits, make_splits,
                                     normalize, split_indices)
from echocem.io import EchoCemError, save_json

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(1)
    images = rng.normal(0, 25, (6, 160, 272)).round().astype(np.int16)
    images[:, :, 20:36] *= 10  # a strong casing-like band
    widths = np.array([272, 160, 272, 160, 272, 272], dtype=np.int16)
    for i, w in enumerate(widths):
        images[i, :, w:] = 0
    return images, widths


def test_fit_is_robust_and_uses_valid_pixels_only(batch):
    images, widths = batch
    spec = fit_normalization(images, widths, clip=5.0)
    assert abs(spec["center"]) <= 1 and 24 <= spec["scale"] <= 34  # MAD: the noise level, not the band
    valid = np.concatenate([images[i, :, :w].ravel() for i, w in enumerate(widths)]).astype(float)
    assert spec["center"] == np.median(valid)
    assert spec["scale"] == pytest.approx(1.4826 * np.median(np.abs(valid - np.median(valid))), abs=1e-5)
    assert spec["n_pixels"] == valid.size


def test_normalize_numpy_equals_torch(batch, tmp_path):
    images, widths = batch
    save_json(tmp_path / "n.json", fit_normalization(images, widths, clip=5.0))
    spec = load_normalization(tmp_path / "n.json")
    a = normalize(images, widths, spec)
    b = normalize(torch.from_numpy(images), torch.from_numpy(widths.astype(np.int64)), spec)
    c = normalize(images.astype(np.float32), widths, spec)
    assert a.dtype == np.float32 and isinstance(b, torch.Tensor) and b.dtype == torch.float32
    np.testing.assert_array_equal(a, b.numpy())
    np.testing.assert_array_equal(a, c)
    assert np.abs(a).max() <= 5.0
    assert not a[1, :, 160:].any() and not a[3, :, 160:].any() and a[1, :, :160].any()


def test_bad_normalization_file(tmp_path):
    save_json(tmp_path / "n.json", {"method": "global_robust_zscore", "center": 0, "scale": 0, "clip": 5})
    with pytest.raises(EchoCemError, match=r"n\.json: scale and clip must be > 0"):
        load_normalization(tmp_path / "n.json")


def test_splits_keep_validation_wells_out_of_training(tmp_path):
    wells = np.repeat(np.array([1, 2, 3, 4, 5, 6], dtype=np.int32), [20, 24, 16, 8, 16, 30])
    splits = make_splits(wells, [5], 3)
    assert splits["val_wells"] == [5] and splits["train_wells"] == [1, 2, 3, 4, 6]
    assert sorted(w for f in splits["oof_folds"] for w in f) == [1, 2, 3, 4, 6] and len(splits["oof_folds"]) == 3
    save_json(tmp_path / "splits.json", splits)
    loaded = load_splits(tmp_path / "splits.json")
    tr, va = split_indices(wells, loaded["train_wells"]), split_indices(wells, loaded["val_wells"])
    assert not np.isin(wells[tr], loaded["val_wells"]).any()
    assert (wells[va] == 5).all() and len(va) == 16 and len(tr) + len(va) == len(wells)


def test_missing_validation_well_is_named():
    with pytest.raises(EchoCemError, match=r"preprocess\.val_wells: well\(s\) \[9\] not in the training data"):
        make_splits(np.array([1, 2, 3], dtype=np.int32), [9], 2)


def test_too_few_wells_for_folds():
    with pytest.raises(EchoCemError, match=r"preprocess\.oof_folds: 3 folds need at least 3"):
        make_splits(np.array([1, 2, 3], dtype=np.int32), [1], 3)


def test_leaking_splits_file_is_refused(tmp_path):
    save_json(tmp_path / "s.json", {"val_wells": [2], "train_wells": [1, 2], "oof_folds": [[1], [2]]})
    with pytest.raises(EchoCemError, match=r"wells \[2\] are both validation and training wells"):
        load_splits(tmp_path / "s.json")
