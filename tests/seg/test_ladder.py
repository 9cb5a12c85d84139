"""The evaluation ladder: structure of ladder.json, gains, best/worst, figures."""
from __future__ import annotations

import numpy as np
import pytest

from echocem.io import EchoCemError, save_figure
from echocem.seg.ladder import (
    RUNG_ORDER,
    align_predictions,
    best_and_worst,
    best_rung,
    build_ladder,
    confusion_figure,
    overlay_figure,
    per_well_figure,
)
from echocem.seg.metric import confusion_matrix
from tests.seg.synthetic import make_patches


@pytest.fixture(scope="module")
def val():
    return make_patches(6, seed=5)


def degrade(masks: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = masks.copy()
    flip = (rng.random(masks.shape) < fraction) & (masks >= 0)
    out[flip] = 0
    return out


def test_ladder_structure_and_gains(val):
    truth, widths, wells = val["masks"], val["widths"], val["well"]
    fractions = dict(zip(RUNG_ORDER[1:], (0.5, 0.4, 0.35, 0.3, 0.25, 0.2, 0.15, 0.1)))
    preds = {"all_background": np.where(truth >= 0, 0, -1),
             **{rung: degrade(truth, f, k) for k, (rung, f) in enumerate(fractions.items())}}
    ladder = build_ladder(truth, widths, wells, preds, [1, 2, 3])
    assert set(ladder) == {"val_wells", "order", "rungs", "gains"}
    assert ladder["order"] == list(RUNG_ORDER) and ladder["val_wells"] == [1, 2, 3]
    for rung in RUNG_ORDER:
        r = ladder["rungs"][rung]
        assert set(r) == {"iou", "iou_class1", "iou_class2", "n_patches", "per_well"}
        assert set(r["per_well"]) == {"1", "2", "3"} and r["n_patches"] == 6
    ious = [ladder["rungs"][r]["iou"] for r in RUNG_ORDER]
    assert ious == sorted(ious) and ious[0] == 0.0
    # each part's gain: its rung against the one below it
    rungs = ladder["rungs"]
    assert set(ladder["gains"]) == {"sections", "tta", "ensemble", "pseudo", "postproc", "rules"}
    assert ladder["gains"]["postproc"] == pytest.approx(rungs["postproc"]["iou"] - rungs["pseudo"]["iou"])
    assert ladder["gains"]["sections"] == pytest.approx(rungs["sections"]["iou"] - rungs["unet"]["iou"])
    assert best_rung(ladder) == "rules"
    with pytest.raises(EchoCemError, match="unknown rungs"):
        build_ladder(truth, widths, wells, {"magic": truth}, [1])


def test_align_predictions_reorders_and_names_missing(val):
    ids, masks = val["ids"], val["masks"]
    order = np.arange(len(ids))[::-1]
    np.testing.assert_array_equal(align_predictions(ids, ids[order], masks[order], "x.npz"), masks)
    with pytest.raises(EchoCemError, match="x.npz: predictions missing for 1"):
        align_predictions(ids, ids[1:], masks[1:], "x.npz")


def test_best_worst_and_figures(tmp_path, val):
    truth, widths = val["masks"], val["widths"]
    pred = truth.copy()
    pred[2] = np.where(truth[2] >= 0, 0, -1)  # one patch all wrong
    scores, best, worst = best_and_worst(truth, pred, widths, 2)
    assert worst[0] == 2 and scores[2] == 0.0 and 2 not in best
    ladder = build_ladder(truth, widths, val["well"], {"all_background": pred * 0, "rf": pred}, [1, 2, 3])
    figures = {
        "per_well.png": per_well_figure(ladder),
        "confusion.png": confusion_figure(confusion_matrix(truth, pred, widths), "rf"),
        "worst.png": overlay_figure(val["images"][worst], truth[worst], pred[worst], widths[worst],
                                    val["ids"][worst], scores[worst], "worst"),
    }
    for name, fig in figures.items():
        save_figure(tmp_path / name, fig)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
