"""benchmarks/budget_quality.py: two runs' validation predictions compared patch by patch."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.budget_quality import compare
from echocem.io import EchoCemError
from tests.seg.synthetic import make_patches


def _truth_and_runs(n: int = 24):
    truth = make_patches(n, seed=3)
    masks = np.where(truth["masks"] < 0, 0, truth["masks"]).astype(np.int8)
    wrong = np.zeros_like(masks)  # all background: IoU well below the truth's
    order = np.random.default_rng(0).permutation(n)  # the old file lists the patches in another order
    old = {"ids": truth["ids"][order], "well": truth["well"][order], "rung_tta": wrong[order],
           "rung_unet": masks[order], "only_old": masks[order]}
    new = {"ids": truth["ids"], "well": truth["well"], "rung_tta": masks, "rung_unet": masks}
    return truth, old, new


def test_a_perfect_new_run_gains_and_an_unchanged_entry_is_no_difference():
    truth, old, new = _truth_and_runs()
    table = compare(old, new, truth, n_boot=300, level=0.95, seed=0).set_index("entry")
    assert sorted(table.index) == ["rung_tta", "rung_unet"]  # entries of both files only
    tta, unet = table.loc["rung_tta"], table.loc["rung_unet"]
    assert tta["new"] == pytest.approx(1.0) and tta["old"] < 0.5
    assert tta["gain"] == pytest.approx(tta["new"] - tta["old"])
    assert tta["gain_low"] > 0 and tta["verdict"] == "gain"
    # the same predictions, reordered in the old file: paired by id, so exactly no difference
    assert unet["gain"] == 0 and unet["gain_low"] == 0 and unet["gain_high"] == 0
    assert unet["verdict"] == "no difference"


def test_files_of_different_patches_are_refused():
    truth, old, new = _truth_and_runs()
    old = {**old, "ids": np.array([f"other_{i}" for i in range(len(old["ids"]))])}
    with pytest.raises(EchoCemError, match="different validation patches"):
        compare(old, new, truth, n_boot=100, level=0.95, seed=0)
