"""The study's plan and statistics on synthetic run records with a known answer, and the mixing."""
from __future__ import annotations

import numpy as np
import pytest

from echocem.io import EchoCemError
from echocem.patchgen.mixing import matched_epochs, mix_pairs, n_generated
from echocem.patchgen.study import plan_runs, plan_subsets, summarise, table_markdown, verdict


def records_with_gain(k: str, gain: float, n_seeds: int = 3, n_patches: int = 40, noise: float = 0.01,
                      seed: int = 0, draw: int = 0, wells: tuple = (1,)) -> list[dict]:
    """Per-patch scores of both arms: `with` = `without` + gain + small paired noise."""
    rng = np.random.default_rng(seed)
    out = []
    for s in range(n_seeds):
        base = rng.uniform(0.3, 0.8, n_patches)  # patches differ a lot; the pairing removes that
        for arm, shift in (("without", 0.0), ("with", gain)):
            scores = base + shift + rng.normal(0, noise, n_patches)
            out.append({"k": k, "draw": draw, "wells": list(wells), "seed_index": s, "arm": arm, "steps": 64, "n_real": 20,
                        "n_generated": 20 if arm == "with" else 0, "scores": scores.tolist()})
    return out


def test_known_gain_no_difference_and_loss():
    records = (records_with_gain("1", 0.05, seed=1) + records_with_gain("2", 0.0, seed=2)
               + records_with_gain("all", -0.04, seed=3))
    table, pooled, intervals = summarise(records, level=0.95, n_boot=2000, seed=0)
    assert pooled.empty, "one draw per k: nothing to pool"
    rows = {r["k"]: r for r in table.to_dict("records")}
    assert list(rows) == ["1", "2", "all"]
    one = rows["1"]
    assert one["gain"] == pytest.approx(0.05, abs=0.005)
    assert 0 < one["gain_low"] < 0.05 < one["gain_high"]
    assert one["verdict"] == "gain" and one["seeds_with_gain"] == 3
    assert rows["2"]["gain_low"] < 0 < rows["2"]["gain_high"] and rows["2"]["verdict"] == "no difference"
    assert rows["all"]["verdict"] == "loss" and rows["all"]["gain_high"] < 0
    # spreads and counts are those of the per-seed means
    without = [np.mean(r["scores"]) for r in records if r["k"] == "1" and r["arm"] == "without"]
    assert one["without_mean"] == pytest.approx(np.mean(without))
    assert one["without_std"] == pytest.approx(np.std(without, ddof=1))
    assert one["n_seeds"] == 3 and one["n_heldout"] == 40 and one["n_generated"] == 20
    one_iv = intervals["k=1 draw 0"]
    assert one_iv["n"] == 120 and one_iv["n_groups"] == 3 and one_iv["level"] == 0.95
    assert len(one_iv["per_seed_gain"]) == 3
    assert "| 1 | 0 | 1 | 20 / 20 |" in table_markdown(table, pooled)


def test_interval_widens_with_noise():
    quiet, _, _ = summarise(records_with_gain("1", 0.02, noise=0.005, seed=4), n_boot=1000)
    noisy, _, _ = summarise(records_with_gain("1", 0.02, noise=0.2, seed=4), n_boot=1000)
    width = lambda t: float(t["gain_high"][0] - t["gain_low"][0])  # noqa: E731
    assert width(noisy) > 5 * width(quiet)
    assert noisy["verdict"][0] == "no difference" and quiet["verdict"][0] == "gain"


def test_sections_that_gain_together_widen_the_interval():
    """8 sections of 5 held-out patches; the gain is a per-section effect shared by the section's
    patches in every seed. Drawing patches one by one counts 40 independent gains; drawing whole
    sections counts 8, and the interval widens accordingly."""
    rng = np.random.default_rng(5)
    sections = np.repeat(np.arange(8), 5)
    effect = rng.normal(0.02, 0.04, 8)[sections]
    records = []
    for s in range(3):
        base = rng.uniform(0.3, 0.8, 40)
        for arm, shift in (("without", 0.0), ("with", effect)):
            records.append({"k": "1", "draw": 0, "wells": [1], "seed_index": s, "arm": arm, "steps": 64, "n_real": 20,
                            "n_generated": 20 if arm == "with" else 0,
                            "scores": (base + shift + rng.normal(0, 0.005, 40)).tolist()})
    flat, _, _ = summarise(records, n_boot=2000)
    whole, _, intervals = summarise(records, n_boot=2000, sections=sections)
    width = lambda t: float(t["gain_high"][0] - t["gain_low"][0])  # noqa: E731
    assert whole["gain"][0] == pytest.approx(flat["gain"][0])
    assert width(whole) > 1.8 * width(flat)
    assert "whole inner groups" in intervals["k=1 draw 0"]["method"]
    with pytest.raises(EchoCemError, match="7 section labels for 40 held-out patches"):
        summarise(records, sections=sections[:7])


def test_unpaired_seed_is_an_error():
    records = records_with_gain("1", 0.05)[:-1]  # seed 2 lost its "with" run
    with pytest.raises(EchoCemError, match="lack one of the two arms"):
        summarise(records)
    records = records_with_gain("1", 0.05) + records_with_gain("1", 0.05, n_patches=30, draw=1)
    with pytest.raises(EchoCemError, match=r"scored \[40, 30\] held-out patches"):
        summarise(records)


def test_verdict():
    assert verdict(0.001, 0.1) == "gain" and verdict(-0.1, -0.01) == "loss" and verdict(-0.01, 0.02) == "no difference"


def test_plan():
    subsets = plan_subsets([1, 2, 3, 4, 6], [1, 2, "all"], seed=2025)
    assert subsets["all"] == [(1, 2, 3, 4, 6)]
    assert len(subsets["1"]) == 1 and len(subsets["1"][0]) == 1 and len(subsets["2"][0]) == 2
    assert set(subsets["2"][0]) <= {1, 2, 3, 4, 6}
    assert subsets == plan_subsets([1, 2, 3, 4, 6], [1, 2, "all"], seed=2025)
    runs = plan_runs(subsets, 3)
    assert len(runs) == 3 * 3 and {r["draw"] for r in runs} == {0}
    assert [(r["k"], r["seed_index"]) for r in runs[:3]] == [("1", 0), ("1", 1), ("1", 2)]
    with pytest.raises(EchoCemError, match="k=9"):
        plan_subsets([1, 2], [9], seed=0)
    with pytest.raises(EchoCemError, match="twice"):
        plan_subsets([1, 2], [1, 1], seed=0)
    with pytest.raises(EchoCemError, match="draws: need at least 1"):
        plan_subsets([1, 2], [1], seed=0, draws=0)


def test_pooled_verdict_needs_both_intervals():
    """Five draws that all gain, one of them little: the nested bootstrap (which never leaves the
    draws' range) lies above 0, the t interval over the five gains does not, so no gain is claimed;
    with gains that agree, both lie above 0."""
    def pooled_row(gains):
        records = []
        for d, g in enumerate(gains):
            records += records_with_gain("1", g, noise=0.002, seed=40 + d, draw=d, wells=(d + 1,))
        return summarise(records, n_boot=2000, seed=2)[1].iloc[0]

    spread = pooled_row([0.005, 0.09, 0.01, 0.08, 0.02])
    assert spread["gain_low"] > 0 and spread["draws_t_low"] < 0 and spread["verdict"] == "no difference"
    steady = pooled_row([0.04, 0.05, 0.045, 0.035, 0.05])
    assert steady["gain_low"] > 0 and steady["draws_t_low"] > 0 and steady["verdict"] == "gain"


def test_plan_draws_distinct_well_sets():
    wells = [1, 2, 3, 4, 6]
    one = plan_subsets(wells, [1, 2, "all"], seed=2025)
    many = plan_subsets(wells, [1, 2, "all"], seed=2025, draws=4)
    for k in ("1", "2"):
        assert many[k][0] == one[k][0], "draw 0 is the one-draw study's choice"
        assert len(many[k]) == 4 and len(set(many[k])) == 4
    assert many["all"] == [(1, 2, 3, 4, 6)], "k = all has one choice"
    # more draws than sets: every set once (5 single wells, 10 pairs)
    every = plan_subsets(wells, [1, 2], seed=7, draws=50)
    assert sorted(every["1"]) == [(w,) for w in wells]
    assert len(every["2"]) == 10 == len(set(every["2"]))
    runs = plan_runs(every, 2)
    assert len(runs) == (5 + 10) * 2
    assert {(r["draw"], tuple(r["wells"])) for r in runs if r["k"] == "1"} == set(enumerate(every["1"]))


def test_pooled_draws_cover_the_spread_between_labelled_wells():
    """Five draws of one labelled well with gains +0.10, -0.02, +0.06, -0.01, +0.03, each measured
    tightly: every draw's own interval is narrow, the pooled one spans the draws' spread, and its
    estimate is the mean of the draws' gains."""
    gains = [0.10, -0.02, 0.06, -0.01, 0.03]
    records = []
    for d, g in enumerate(gains):
        records += records_with_gain("1", g, noise=0.002, seed=20 + d, draw=d, wells=(d + 1,))
    table, pooled, intervals = summarise(records, n_boot=2000, seed=1)
    assert list(table["draw"]) == [0, 1, 2, 3, 4] and list(table["wells"]) == ["1", "2", "3", "4", "5"]
    assert list(table["verdict"]) == ["gain", "loss", "gain", "loss", "gain"]
    (row,) = pooled.to_dict("records")
    assert row["n_draws"] == 5 and row["n_runs"] == 15 and row["draws_with_gain"] == 3
    assert row["gain"] == pytest.approx(np.mean(gains), abs=0.002)
    assert row["draw_gain_std"] == pytest.approx(np.std(gains, ddof=1), abs=0.002)
    # the draws' spread is in the interval: wider than any one draw's, inside their range
    assert row["gain_high"] - row["gain_low"] > 5 * max(table["gain_high"] - table["gain_low"])
    assert -0.02 < row["gain_low"] < 0.03 < row["gain_high"] < 0.10
    assert row["verdict"] == "no difference"
    # the t interval over the five draws' gains: mean +- t(4) * s / sqrt(5)
    half = 2.776 * np.std(gains, ddof=1) / np.sqrt(5)
    assert row["draws_t_low"] == pytest.approx(np.mean(gains) - half, abs=0.003)
    assert row["draws_t_high"] == pytest.approx(np.mean(gains) + half, abs=0.003)
    assert intervals["k=1 pooled"]["per_draw_gain"] == pytest.approx(gains, abs=0.002)
    assert "3-level nested" in intervals["k=1 pooled"]["method"]
    assert "Pooled over draws" in table_markdown(table, pooled)


def test_mix_pairs(wells):
    real = {k: wells[k][:10] for k in ("images", "masks", "widths")}
    pool = {k: wells[k][10:14] for k in ("images", "masks", "widths")}
    mixed = mix_pairs(real, pool, 0.5, np.random.default_rng(0))
    assert len(mixed["images"]) == 15 and mixed["is_generated"].sum() == 5 == n_generated(10, 0.5)
    assert np.array_equal(mixed["images"][:10], real["images"])
    # a pool of 4 for 5 draws: every pool pair is used before any is used twice
    picked = {bytes(m.tobytes()) for m in mixed["masks"][10:]}
    assert len(picked) == 4
    none = mix_pairs(real, pool, 0.0, np.random.default_rng(0))
    assert len(none["images"]) == 10 and not none["is_generated"].any()
    with pytest.raises(EchoCemError, match="lack arrays"):
        mix_pairs(real, {"images": pool["images"]}, 1.0, np.random.default_rng(0))


def test_matched_epochs():
    # 16 epochs over 98 real pairs (12 steps each) = 192 steps; over 196 pairs an epoch is 24 steps
    assert matched_epochs(16, 98, 196, 8) == 8
    assert matched_epochs(16, 98, 98, 8) == 16


def test_train_unet_runs_exactly_the_steps(wells, norm_spec, repo_params, monkeypatch):
    from echocem.params import deep_merge
    from echocem.patchgen import unet_adapter
    from echocem.seg.loop import StepRunner

    profile = deep_merge(repo_params["unet"]["profiles"]["small"], {
        "model": {"encoder_depth": 3, "decoder_channels": [16, 8, 8]}, "train": {"batch_size": 4}})
    counted = []
    original = StepRunner.step
    monkeypatch.setattr(StepRunner, "step", lambda self, x, y: counted.append(len(x)) or original(self, x, y))
    x = unet_adapter.normalised_images(wells["images"][:10], wells["widths"][:10], norm_spec, "cpu")
    # 10 patches, batch 4: epochs of 2 steps; 5 steps = 2 epochs and 1 step over a random subset
    model, steps = unet_adapter.train_unet(x, wells["masks"][:10], wells["widths"][:10], profile, 5, 0, "cpu")
    assert steps == 5 and counted == [4] * 5
    assert not model.training


def test_seeds_that_disagree_give_no_difference():
    """Per-seed gains -0.18, +0.01, -0.02 (as the default study measured): the patches alone
    would call it a loss; with the seeds resampled it is inside the noise."""
    records = []
    for seed, shift in enumerate((-0.18, 0.01, -0.02)):
        recs = records_with_gain("1", shift, n_seeds=1, seed=10 + seed)
        for r in recs:
            r["seed_index"] = seed
        records += recs
    table, _, intervals = summarise(records, n_boot=2000)
    row = table.iloc[0]
    assert row["gain"] == pytest.approx(-0.0633, abs=0.01)
    assert row["gain_low"] < -0.1 and row["gain_high"] > 0 and row["verdict"] == "no difference"
    assert intervals["k=1 draw 0"]["per_seed_gain"] == pytest.approx([-0.18, 0.01, -0.02], abs=0.01)
