"""Rule-based clean-up on hand-made masks."""
from __future__ import annotations

import numpy as np
import pytest

from echocem.io import EchoCemError
from echocem.seg.rules import apply_rules

H, W = 160, 272
OFF = dict(open=False, close=False, morph_size=3, casing_largest_component=False,
           tie_single_interval=False, tie_support_rows=4)


def cfg(**on) -> dict:
    return {**OFF, **on}


def band_patch(width: int = W) -> np.ndarray:
    """Casing at columns 20-35 over all rows, TIE at columns 100-119."""
    m = np.zeros((H, W), dtype=np.int8)
    m[:, 20:36] = 2
    m[:, 100:120] = 1
    m[:, width:] = -1
    return m


def test_all_rules_off_changes_nothing():
    pred = np.stack([band_patch(), band_patch(160)])
    pred[0, 50, 200] = 1
    pred[1, 10:13, 60:63] = 2
    out = apply_rules(pred, [W, 160], OFF)
    np.testing.assert_array_equal(out, pred)
    assert out.dtype == np.int8


def test_largest_casing_component_per_patch():
    a = band_patch()
    a[60:70, 200:210] = 2  # a stray casing blob: removed
    b = np.zeros((H, W), dtype=np.int8)
    b[5:8, 5:8] = 2  # the only casing of this patch: the largest there, kept
    pred = np.stack([a, b])
    before = pred.copy()
    out = apply_rules(pred, [W, W], cfg(casing_largest_component=True))
    np.testing.assert_array_equal(pred, before)  # the input is not modified
    assert (out[0, 60:70, 200:210] == 0).all()
    np.testing.assert_array_equal(out[0][:, :150], a[:, :150])
    np.testing.assert_array_equal(out[1], b)


def test_one_tie_interval_per_row_keeps_the_supported_one():
    m = band_patch()
    m[50:53, 200:206] = 1  # a short second interval on three rows: dropped
    m[80, 180:210] = 1  # one row with a longer stray interval: the band continues, the stray goes
    m[81, 100:120] = 0  # ... and the next row lost its TIE: nothing is invented there
    out = apply_rules(m[None], [W], cfg(tie_single_interval=True))[0]
    assert (out[50:53, 200:206] == 0).all()
    assert (out[80, 180:210] == 0).all()
    assert (out[80, 100:120] == 1).all()
    assert (out[81] == 1).sum() == 0
    runs_per_row = ((out == 1)[:, 1:] & ~(out == 1)[:, :-1]).sum(axis=1) + (out[:, 0] == 1)
    assert runs_per_row.max() == 1
    assert (out == 2).sum() == (m == 2).sum()  # the casing is untouched


def test_open_removes_specks_and_close_fills_holes_only_in_background():
    m = band_patch()
    m[40, 180] = 1  # a one-pixel TIE speck
    m[90, 27] = 0  # a one-pixel hole in the casing band
    m[120, 27] = 1  # a TIE pixel inside the casing: closing must not overwrite it
    out = apply_rules(m[None], [W], cfg(open=True, close=True, morph_size=3))[0]
    assert out[40, 180] == 0
    assert out[90, 27] == 2
    assert out[120, 27] != 2
    # the bands touch the first and last rows; edge handling must not erode them
    assert (out[0, 21:35] == 2).all() and (out[H - 1, 21:35] == 2).all()
    assert (out[:, 101:119] == 1).sum() >= (H - 2) * 18


def test_scattered_holes_are_filled_before_specks_are_removed():
    m = band_patch()
    rng = np.random.default_rng(1)
    holes = (rng.random(m.shape) < 0.2) & (m > 0)
    m[holes] = 0  # a fifth of each band missing, pixel by pixel
    out = apply_rules(m[None], [W], cfg(open=True, close=True, morph_size=3))[0]
    truth = band_patch()
    for c in (1, 2):
        recovered = ((out == c) & (truth == c)).sum() / (truth == c).sum()
        assert recovered > 0.97, (c, recovered)
        assert ((out == c) & (truth != c)).sum() == 0


def test_narrow_patches_keep_their_padding():
    m = band_patch(160)
    m[:, 150:160] = 1  # TIE touching the right edge of a narrow patch
    m[:, 160:] = 1  # garbage in the padding is ignored and reset to -1
    out = apply_rules(m[None], [160], cfg(open=True, close=True, casing_largest_component=True,
                                          tie_single_interval=True))[0]
    assert (out[:, 160:] == -1).all()
    assert (out[:, 100:120] == 1).all() and (out[:, 150:160] == 0).all()  # the wider interval wins
    assert set(np.unique(out[:, :160]).tolist()) <= {0, 1, 2}


def test_many_patches_in_chunks_match_one_by_one():
    rng = np.random.default_rng(0)
    pred = rng.choice([0, 0, 0, 1, 2], size=(140, H, W)).astype(np.int8)
    widths = np.where(np.arange(140) % 3 == 0, 160, W)
    rules = cfg(open=True, close=True, casing_largest_component=True, tie_single_interval=True)
    out = apply_rules(pred, widths, rules)
    for i in (0, 1, 129, 139):
        np.testing.assert_array_equal(out[i], apply_rules(pred[i : i + 1], widths[i : i + 1], rules)[0])


def test_missing_rule_keys_are_named():
    with pytest.raises(EchoCemError, match="tie_support_rows"):
        apply_rules(band_patch()[None], [W], {k: v for k, v in OFF.items() if k != "tie_support_rows"})
