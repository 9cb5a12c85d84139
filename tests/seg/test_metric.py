"""The challenge IoU against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from echocem.io import EchoCemError
from echocem.seg.metric import challenge_iou, class_ious, confusion_matrix, patch_iou, patch_scores

H, W = 160, 272


def blank(width: int = W) -> np.ndarray:
    m = np.zeros((H, W), dtype=np.int8)
    m[:, width:] = -1
    return m


def test_patch_iou_small_hand_case_ignores_padding():
    truth = np.array([[1, 1, 0, 0, -1, -1], [0, 2, 2, 0, -1, -1]])
    pred = np.array([[1, 0, 0, 0, 1, 1], [0, 2, 2, 2, 2, 2]])
    # width 4: class 1 -> 1 shared of 2; class 2 -> 2 shared of 3; columns 4-5 do not count
    assert patch_iou(truth, pred, 4) == pytest.approx((1 / 2, 2 / 3))
    # with the padding columns counted, class 1 would be 1/4 and class 2 2/5
    assert patch_iou(truth, pred, 6) == pytest.approx((1 / 4, 2 / 5))


def test_class_absent_from_both_counts_one():
    truth, pred = blank(), blank()
    truth[:, 0:10] = 2
    pred[:, 5:15] = 2  # 800 shared pixels of 2,400
    assert patch_iou(truth, pred, W) == pytest.approx((1.0, 1 / 3))
    assert patch_scores(truth[None], pred[None], [W])[0] == pytest.approx((1 + 1 / 3) / 2)


def test_class_in_one_only_counts_zero():
    truth, pred = blank(), blank()
    truth[:, 100:120] = 1
    pred[:, 20:30] = 2
    assert patch_iou(truth, pred, W) == (0.0, 0.0)
    empty = blank()
    assert patch_iou(empty, empty, W) == (1.0, 1.0)


def test_narrow_patch_padding_is_ignored():
    truth, pred = blank(160), blank(160)
    truth[:, 100:120] = 1
    truth[:, 20:30] = 2
    pred[:, 100:120] = 1
    pred[:, 160:] = 1  # garbage in the padding must not count
    ious = class_ious(truth[None], pred[None], [160])
    assert ious.tolist() == [[1.0, 0.0]]
    # the same garbage inside a 272 width would cost class 1
    assert patch_iou(truth, pred, W)[0] == pytest.approx(20 / (20 + 112))


def test_challenge_iou_means_over_patches_and_wells():
    t1, p1 = blank(), blank()
    t1[:, 0:10] = 2
    p1[:, 5:15] = 2  # class 1 absent: 1; class 2: 1/3
    t2, p2 = blank(160), blank(160)
    t2[:, 50:60] = 1
    t2[:, 10:20] = 2
    p2[:, 50:55] = 1
    p2[:, 10:20] = 2  # class 1: 1/2; class 2: 1
    t3, p3 = blank(), blank()
    t3[:, 60:70] = 1
    p3[:, 20:30] = 2  # both 0
    truth, pred = np.stack([t1, t2, t3]), np.stack([p1, p2, p3])
    res = challenge_iou(truth, pred, [W, 160, W], wells=[4, 4, 7])
    s1, s2, s3 = (1 + 1 / 3) / 2, (1 / 2 + 1) / 2, 0.0
    assert res["iou"] == pytest.approx((s1 + s2 + s3) / 3)
    assert res["iou_class1"] == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert res["iou_class2"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert res["iou"] == pytest.approx((res["iou_class1"] + res["iou_class2"]) / 2)
    assert res["n_patches"] == 3
    assert set(res["per_well"]) == {"4", "7"}
    assert res["per_well"]["4"]["iou"] == pytest.approx((s1 + s2) / 2)
    assert res["per_well"]["4"]["n_patches"] == 2
    assert res["per_well"]["7"] == {"iou": 0.0, "iou_class1": 0.0, "iou_class2": 0.0, "n_patches": 1}
    assert "per_well" not in challenge_iou(truth, pred, [W, 160, W])


def test_confusion_matrix_counts_valid_pixels_only():
    truth = np.array([[[1, 1, 0, 0, -1, -1], [0, 2, 2, 0, -1, -1]]])
    pred = np.array([[[1, 0, 0, 0, 1, 1], [0, 2, 2, 2, 2, 2]]])
    cm = confusion_matrix(truth, pred, [4])
    assert cm.tolist() == [[3, 0, 1], [1, 1, 0], [0, 0, 2]]
    with pytest.raises(EchoCemError, match="outside 0..2"):
        confusion_matrix(truth, pred, [6])


def test_bad_shapes_are_named():
    with pytest.raises(EchoCemError, match="widths"):
        challenge_iou(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)), [4])
    with pytest.raises(EchoCemError, match="must both be"):
        challenge_iou(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)), [4, 4])
    with pytest.raises(EchoCemError, match="widths must lie"):
        challenge_iou(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)), [5])
