"""Mask proposals stay physically plausible, stay within what the training masks show,
record where they came from, and are reproducible."""
from __future__ import annotations

import numpy as np
import pytest

from echocem.io import EchoCemError
from echocem.patchgen.masks import (MODIFICATION_FIELDS, observed_ranges, plausibility_problems, propose_masks)


@pytest.fixture(scope="module")
def proposals(wells, proposals_cfg):
    # strong settings: every modification is drawn often, so every branch is exercised
    cfg = {**proposals_cfg, "absent_prob": 0.5, "double_prob": 0.5, "tie_warp": 20.0, "tie_shift": 60}
    return propose_masks(wells["masks"], wells["widths"], wells["ids"], 300, cfg, np.random.default_rng(1))


def test_training_masks_are_plausible(wells):
    # the checker itself accepts what the simulator (like the real data) produces
    assert all(not plausibility_problems(m, int(w)) for m, w in zip(wells["masks"], wells["widths"]))


def test_proposals_are_plausible(proposals):
    for m, w in zip(proposals["masks"], proposals["widths"]):
        assert plausibility_problems(m, int(w)) == []
    valid = np.arange(272)[None, None, :] < proposals["widths"][:, None, None]
    labels = np.broadcast_to(valid, proposals["masks"].shape)
    assert set(np.unique(proposals["masks"][labels]).tolist()) <= {0, 1, 2}
    assert (proposals["masks"][~labels] == -1).all()
    assert proposals["masks"].dtype == np.int8


def test_one_casing_band_per_row_left_of_every_tie_pixel(proposals):
    for m, w in zip(proposals["masks"], proposals["widths"]):
        m = m[:, :int(w)]
        cas = m == 2
        assert cas.any(axis=1).all(), "every row keeps its casing band"
        bands = (cas[:, 1:] & ~cas[:, :-1]).sum(axis=1) + cas[:, 0]
        assert (bands == 1).all()
        right = (m.shape[1] - 1 - np.argmax(cas[:, ::-1], axis=1))[:, None]
        cols = np.arange(m.shape[1])[None, :]
        assert not ((m == 1) & (cols <= right)).any()


def test_proposals_stay_within_the_training_ranges(wells, proposals):
    r = observed_ranges(wells["masks"])
    for m, w in zip(proposals["masks"], proposals["widths"]):
        m = m[:, :int(w)]
        cas = m == 2
        left = np.argmax(cas, axis=1)
        right = m.shape[1] - 1 - np.argmax(cas[:, ::-1], axis=1)
        assert r.casing_width[0] <= (right - left + 1).min() and (right - left + 1).max() <= r.casing_width[1]
        assert r.casing_center[0] - 0.5 <= ((left + right) / 2).mean() <= r.casing_center[1] + 0.5
        tie_cols = np.flatnonzero((m == 1).any(axis=0))
        if tie_cols.size:
            assert tie_cols[0] >= r.tie_columns[0] and tie_cols[-1] <= r.tie_columns[1]


def test_proposals_add_variety_and_record_their_source(wells, proposals):
    src = proposals["source_index"]
    assert (proposals["source_id"] == wells["ids"][src]).all()
    assert (proposals["widths"] == wells["widths"][src]).all()
    assert set(src.tolist()) == set(range(len(wells["masks"])))  # round-robin over every source
    changed = (proposals["masks"] != wells["masks"][src]).any(axis=(1, 2))
    assert changed.mean() > 0.9
    for name, dtype in MODIFICATION_FIELDS:
        assert proposals[name].shape == (300,) and proposals[name].dtype == dtype
    absent = proposals["absent_from"] >= 0
    doubled = proposals["double_from"] >= 0
    assert 0.3 < absent.mean() < 0.7 and doubled.mean() > 0.2
    for i in np.flatnonzero(absent & ~doubled):
        a, b = proposals["absent_from"][i], proposals["absent_to"][i]
        assert not (proposals["masks"][i, a:b] == 1).any(), "the TIE is absent over its recorded interval"
    # a doubled interval has rows with two TIE intervals, something a single shifted track never has
    two = 0
    for i in np.flatnonzero(doubled):
        tie = proposals["masks"][i] == 1
        starts = (tie[:, 1:] & ~tie[:, :-1]).sum(axis=1) + tie[:, 0]
        two += int((starts >= 2).any())
    assert two > 0.5 * doubled.sum()
    assert (np.abs(proposals["tie_shift"]) <= 60).all()
    assert ((proposals["tie_stretch"] >= 0.75 - 1e-6) & (proposals["tie_stretch"] <= 1.33 + 1e-6)).all()


def test_same_seed_same_proposals(wells, proposals_cfg):
    a = propose_masks(wells["masks"], wells["widths"], wells["ids"], 20, proposals_cfg, np.random.default_rng(5))
    b = propose_masks(wells["masks"], wells["widths"], wells["ids"], 20, proposals_cfg, np.random.default_rng(5))
    c = propose_masks(wells["masks"], wells["widths"], wells["ids"], 20, proposals_cfg, np.random.default_rng(6))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["masks"], c["masks"])


def test_checker_names_implausible_masks():
    m = np.zeros((160, 272), np.int8)
    m[:, 20:35] = 2
    assert plausibility_problems(m, 272) == []
    two_bands = m.copy()
    two_bands[:, 50:55] = 2
    assert any("more than one casing band" in p for p in plausibility_problems(two_bands, 272))
    tie_left = m.copy()
    tie_left[:, 5:10] = 1
    assert any("not right of the casing" in p for p in plausibility_problems(tie_left, 272))
    bad_label = m.copy()
    bad_label[0, 100] = 3
    assert any("labels [3]" in p for p in plausibility_problems(bad_label, 272))
    assert any("padding" in p for p in plausibility_problems(m, 160))


def test_bad_input_is_named():
    with pytest.raises(EchoCemError, match="no casing"):
        observed_ranges(np.zeros((2, 160, 272), np.int8))
