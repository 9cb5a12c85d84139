"""Normalisation (NumPy == torch, fitted on training wells) and well-grouped splits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from echocem.data.preprocess import (fit_normalization, load_normalization, load_splits, make_splits,
                                     normalize, refit_indices, selection_indices, selection_sections,
                                     split_indices)
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


def _layout(per_well: dict[int, tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(well, section) of every patch: {well: (sections, patches per section)}, shuffled order."""
    rows = [(w, s) for w, (n_sec, n_pat) in per_well.items() for s in range(n_sec) for _ in range(n_pat)]
    rows = [rows[k] for k in np.random.default_rng(0).permutation(len(rows))]
    return np.array([w for w, _ in rows], dtype=np.int32), np.array([s for _, s in rows], dtype=np.int32)


def test_selection_takes_whole_sections_spread_evenly_within_the_cap(tmp_path):
    wells, sections = _layout({1: (2, 10), 5: (32, 20)})
    chosen = selection_sections(wells, sections, [5], 160)
    assert chosen == [[5, s] for s in (0, 4, 9, 13, 18, 22, 27, 31)]  # 8 sections of 20: exactly 160
    splits = {**make_splits(wells, [5], 1), "selection_sections": chosen}
    save_json(tmp_path / "splits.json", splits)
    loaded = load_splits(tmp_path / "splits.json")
    sel = selection_indices(wells, sections, loaded)
    assert len(sel) == 160 and (wells[sel] == 5).all() and np.all(np.diff(sel) > 0)
    assert sorted(set(sections[sel].tolist())) == [s for _, s in chosen]
    # no cap, or a cap above the total: every section; a cap below one section: still one
    assert selection_sections(wells, sections, [5], None) == [[5, s] for s in range(32)]
    assert selection_sections(wells, sections, [5], 10_000) == [[5, s] for s in range(32)]
    assert selection_sections(wells, sections, [5], 7) == [[5, 0]]
    # a splits.json written before selection_sections existed: every validation patch selects
    assert np.array_equal(selection_indices(wells, sections, make_splits(wells, [5], 1)), split_indices(wells, [5]))


def test_selection_of_a_training_well_is_refused(tmp_path):
    save_json(tmp_path / "s.json", {"val_wells": [5], "train_wells": [1, 2], "oof_folds": [[1], [2]],
                                    "selection_sections": [[5, 0], [2, 1]]})
    with pytest.raises(EchoCemError, match=r"s\.json: selection_sections name wells \[2\] that are not validation"):
        load_splits(tmp_path / "s.json")
    save_json(tmp_path / "s.json", {"val_wells": [5], "train_wells": [1, 2], "oof_folds": [[1], [2]],
                                    "selection_sections": [5, 0]})
    with pytest.raises(EchoCemError, match=r"selection_sections must be a non-empty list of \[well, section\] pairs"):
        load_splits(tmp_path / "s.json")


def test_refit_caps_a_large_validation_well_at_the_largest_training_well():
    wells, sections = _layout({1: (2, 10), 2: (3, 10), 5: (32, 20)})
    tr, va = split_indices(wells, [1, 2]), split_indices(wells, [5])
    every = refit_indices(wells, sections, tr, va)
    assert np.isin(tr, every).all() and np.all(np.diff(every) > 0)
    kept = every[wells[every] == 5]
    assert len(kept) == 20  # the largest training well has 30 patches: one whole section of 20 fits
    assert len(set(sections[kept].tolist())) == 1
    # a validation well no larger than the largest training well: every labelled patch
    wells, sections = _layout({1: (2, 10), 2: (3, 10), 5: (2, 12)})
    tr, va = split_indices(wells, [1, 2]), split_indices(wells, [5])
    assert np.array_equal(refit_indices(wells, sections, tr, va), np.arange(len(wells)))
