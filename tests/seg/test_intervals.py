"""Ladder intervals on synthetic per-patch scores whose answers are known."""
from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest

from echocem.io import EchoCemError
from echocem.seg.intervals import (
    consecutive_pairs,
    difference_table,
    intervals_figure,
    ladder_intervals,
    records,
    rung_table,
    section_codes,
)

WELLS = np.repeat([2, 5, 6], [40, 30, 50])


def scores(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = np.clip(rng.normal(0.6, 0.15, WELLS.size), 0, 1)
    return {
        "floor": np.full(WELLS.size, 0.5),
        "base": base,
        "shifted": base + 0.05,  # an exact gain of 0.05 on every patch
        "noisy": base + rng.normal(0, 0.1, WELLS.size),
    }


def test_rung_rows_hold_means_and_intervals_overall_and_per_well():
    s = scores()
    table = rung_table(s, WELLS, n_boot=500)
    assert len(table) == 4 * (1 + 3)
    assert list(table[table["scope"] == "all"]["rung"]) == ["floor", "base", "shifted", "noisy"]
    for rung, arr in s.items():
        row = table[(table["rung"] == rung) & (table["scope"] == "all")].iloc[0]
        assert row["estimate"] == pytest.approx(arr.mean())
        assert row["low"] <= row["estimate"] <= row["high"]
        assert (row["n"], row["n_groups"], row["n_seeds"]) == (120, 3, 1)
        assert pd.isna(row["seed_std"])  # one seed: no spread to estimate
        for w in (2, 5, 6):
            wrow = table[(table["rung"] == rung) & (table["well"] == w)].iloc[0]
            assert wrow["estimate"] == pytest.approx(arr[WELLS == w].mean())
            assert (wrow["n"], wrow["n_groups"]) == ((WELLS == w).sum(), 1)
    floor = table[table["rung"] == "floor"]
    assert (floor["high"] - floor["low"] == 0).all()  # a constant rung has no spread


def test_an_exact_gain_is_found_with_a_zero_width_interval():
    s = scores()
    diff = difference_table(s, WELLS, [("shifted", "base"), ("noisy", "base")], n_boot=500)
    exact = diff[diff["name"] == "shifted - base"]
    assert len(exact) == 4  # overall and three wells
    np.testing.assert_allclose(exact[["estimate", "low", "high"]].to_numpy(float), 0.05, atol=1e-12)
    assert exact["excludes_zero"].all()
    noisy = diff[(diff["name"] == "noisy - base") & (diff["scope"] == "all")].iloc[0]
    # zero-mean noise of sd 0.1 over 120 patches: the gain is indistinguishable from 0
    assert noisy["low"] < 0 < noisy["high"] and not noisy["excludes_zero"]
    assert noisy["high"] - noisy["low"] == pytest.approx(2 * 1.96 * 0.1 / np.sqrt(120), rel=0.3)


def test_paired_gain_is_sharper_than_the_two_rung_intervals_suggest():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 1.0, WELLS.size)
    better = base + rng.normal(0.02, 0.01, WELLS.size)
    out = ladder_intervals({"base": base, "better": better}, WELLS, n_boot=1000)
    rungs = out["rungs"][out["rungs"]["scope"] == "all"].set_index("rung")
    gain = out["differences"].query("scope == 'all'").iloc[0]
    assert (gain["a"], gain["b"]) == ("better", "base")
    # the two rung intervals overlap, the paired difference still excludes 0
    assert rungs.loc["better", "low"] < rungs.loc["base", "high"]
    assert gain["excludes_zero"] and gain["low"] > 0


def test_seeds_are_averaged_per_patch_and_their_spread_reported():
    base = np.random.default_rng(2).uniform(0.4, 0.8, WELLS.size)
    runs = np.stack([base - 0.01, base, base + 0.01])  # three seeds, per-seed means 0.01 apart
    table = rung_table({"unet": runs}, WELLS, n_boot=200)
    row = table[table["scope"] == "all"].iloc[0]
    assert row["n_seeds"] == 3
    assert row["estimate"] == pytest.approx(base.mean())
    assert row["seed_mean"] == pytest.approx(base.mean())
    assert row["seed_std"] == pytest.approx(0.01)


def test_default_pairs_climb_the_ladder():
    assert consecutive_pairs(["a", "b", "c"]) == [("b", "a"), ("c", "b")]
    out = ladder_intervals(scores(), WELLS, order=["floor", "base", "shifted"], n_boot=100)
    assert set(out["rungs"]["rung"]) == {"floor", "base", "shifted"}
    assert out["differences"].query("scope == 'all'")["name"].tolist() == ["base - floor", "shifted - base"]


def test_same_seed_same_table():
    a = ladder_intervals(scores(), WELLS, n_boot=200, seed=4)
    b = ladder_intervals(scores(), WELLS, n_boot=200, seed=4)
    assert a["rungs"].equals(b["rungs"]) and a["differences"].equals(b["differences"])


def test_records_are_json():
    out = ladder_intervals(scores(), WELLS, n_boot=100)
    rows = records(out["rungs"])
    text = json.dumps(rows)
    first = json.loads(text)[0]
    assert first["well"] is None and first["seed_std"] is None and first["scope"] == "all"
    per_well = [r for r in rows if r["scope"] == "well"][0]
    assert type(per_well["well"]) is int and type(per_well["estimate"]) is float
    assert type(records(out["differences"])[0]["excludes_zero"]) is bool


def test_figure_has_error_bars_for_rungs_wells_and_gains():
    out = ladder_intervals(scores(), WELLS, n_boot=100)
    fig = intervals_figure(out["rungs"], out["differences"], labels={"base": "U-Net"})
    assert len(fig.axes) == 3
    assert "U-Net" in [t.get_text() for t in fig.axes[0].get_yticklabels()]
    # one error-bar container per rung in each of the first two panels, one per gain in the third
    assert len(fig.axes[0].containers) == 1 and len(fig.axes[1].containers) == 4
    assert len(fig.axes[2].containers) == 3
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"
    assert len(intervals_figure(out["rungs"]).axes) == 2


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: rung_table({"a": np.ones(5)}, WELLS), r"expected \(120,\)"),
        (lambda: rung_table({"a": np.r_[np.nan, np.ones(119)]}, WELLS), "non-finite"),
        (lambda: rung_table({}, WELLS), "no rung"),
        (lambda: rung_table({"a": np.ones(120)}, WELLS, order=["b"]), "no scores"),
        (lambda: difference_table({"a": np.ones(120)}, WELLS, [("a", "z")]), "without scores"),
    ],
)
def test_bad_input_names_the_problem(call, message):
    with pytest.raises(EchoCemError, match=message):
        call()


def test_sections_are_resampled_whole_overall_and_per_well():
    """Sections numbered 1.. in every well (as in the data): section_codes keeps them apart.
    Patches that share their section's level: resampling sections sees the spread between
    them, which patch-by-patch resampling understates; exact gains stay exact."""
    rng = np.random.default_rng(4)
    sections = np.concatenate([np.repeat(np.arange(1, n // 10 + 1), 10) for n in (40, 30, 50)])
    codes = section_codes(WELLS, sections)
    assert len(np.unique(codes)) == 12 and len(np.unique(sections)) == 5
    level = rng.normal(0.6, 0.15, 12)[codes]
    s = {"base": level + rng.normal(0, 0.02, WELLS.size)}
    s["shifted"] = s["base"] + 0.05
    tables = ladder_intervals(s, WELLS, clusters=codes, n_boot=1000)
    rungs, diffs = tables["rungs"], tables["differences"]
    overall = rungs[(rungs["rung"] == "base") & (rungs["scope"] == "all")].iloc[0]
    assert (overall["n"], overall["n_groups"], overall["n_clusters"]) == (120, 3, 12)
    assert "whole clusters (12)" in overall["method"]
    by_patch = rung_table(s, WELLS, n_boot=1000)
    flat = by_patch[(by_patch["rung"] == "base") & (by_patch["scope"] == "all")].iloc[0]
    assert overall["high"] - overall["low"] > 2 * (flat["high"] - flat["low"])
    w5 = rungs[(rungs["rung"] == "base") & (rungs["well"] == 5)].iloc[0]
    assert (w5["n"], w5["n_clusters"]) == (30, 3)
    np.testing.assert_allclose(diffs[["estimate", "low", "high"]].to_numpy(float), 0.05, atol=1e-12)
    assert json.loads(json.dumps(records(rungs)))[0]["n_clusters"] == 12
    assert records(by_patch)[0]["n_clusters"] is None
    with pytest.raises(EchoCemError, match="intervals: 3 section labels for 120 patches"):
        rung_table(s, WELLS, clusters=[1, 2, 3], n_boot=100)
