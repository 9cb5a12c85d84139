"""Bootstrap intervals against cases whose answer is known."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from echocem.io import EchoCemError
from echocem.stats import (Interval, bootstrap_mean, normal_interval, paired_difference,
                           paired_difference_clustered, paired_difference_nested, ratio_of_means,
                           seed_spread)


def test_constant_sample_gives_zero_width_interval():
    iv = bootstrap_mean(np.full(50, 0.7), n_boot=500)
    assert iv.width == 0.0
    assert iv.estimate == pytest.approx(0.7)
    assert iv.low == pytest.approx(0.7)
    assert (iv.n, iv.n_groups, iv.level) == (50, 1, 0.95)


def test_large_normal_sample_matches_normal_theory():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=5000)
    iv = bootstrap_mean(x, n_boot=4000, seed=2)
    low, high = normal_interval(x)
    half = (high - low) / 2
    # Monte-Carlo error of the 2.5 % / 97.5 % quantiles with 4000 resamples is ~2 % of
    # the half-width; 10 % leaves room without letting a wrong scale through.
    assert iv.low == pytest.approx(low, abs=0.1 * half)
    assert iv.high == pytest.approx(high, abs=0.1 * half)
    assert iv.estimate == pytest.approx(x.mean())
    # the normal half-width for sigma 2, n 5000 is 1.96 * 2 / sqrt(5000) = 0.0554
    assert half == pytest.approx(1.96 * 2 / math.sqrt(5000), rel=0.05)


def test_coverage_of_true_mean_is_near_nominal():
    rng = np.random.default_rng(3)
    draws, hits = 200, 0
    for i in range(draws):
        x = rng.exponential(1.0, size=100)  # skewed on purpose; true mean 1
        hits += bootstrap_mean(x, n_boot=500, seed=i).contains(1.0)
    # nominal 0.95; 200 draws have a binomial sd of 0.015, and the percentile
    # bootstrap undercovers a little on skewed data at n = 100
    assert 0.88 <= hits / draws <= 0.99


def test_stratification_keeps_items_in_their_group():
    values = np.r_[np.ones(30), np.zeros(70)]
    groups = np.r_[np.full(30, "well_1"), np.full(70, "well_2")]
    iv = bootstrap_mean(values, groups, n_boot=1000)
    # every resample holds exactly 30 ones and 70 zeros: the mean never moves
    assert iv.width == 0.0
    assert iv.low == pytest.approx(0.3)
    assert iv.n_groups == 2
    # without the groups the mix varies from resample to resample
    assert bootstrap_mean(values, n_boot=1000).width > 0.1


def test_grouped_interval_is_narrower_when_groups_differ_in_level():
    rng = np.random.default_rng(4)
    values = np.r_[rng.normal(0.2, 0.05, 200), rng.normal(0.8, 0.05, 200)]
    groups = np.repeat([1, 2], 200)
    assert bootstrap_mean(values, groups).width < 0.5 * bootstrap_mean(values).width


def test_paired_difference_of_identical_arrays_is_exactly_zero():
    a = np.random.default_rng(5).random(300)
    iv = paired_difference(a, a.copy(), np.repeat([1, 2, 3], 100))
    assert (iv.estimate, iv.low, iv.high) == (0.0, 0.0, 0.0)


def test_known_shift_gives_its_value_and_a_narrow_interval():
    rng = np.random.default_rng(6)
    b = rng.random(400)
    a = b + 0.05 + rng.normal(0, 0.01, 400)
    iv = paired_difference(a, b, np.repeat([1, 2], 200))
    assert iv.estimate == pytest.approx(0.05, abs=0.002)
    assert iv.contains(0.05)
    # pairing removes the spread of b (sd 0.29): the interval reflects only the noise (sd 0.01)
    assert iv.width < 0.005
    assert paired_difference(b + 0.05, b).estimate == pytest.approx(0.05)


def test_paired_uses_the_same_indices_for_a_and_b():
    b = np.random.default_rng(7).random(100)
    a = b + 0.1
    # an exact shift survives every resample only if a and b are drawn together
    iv = paired_difference(a, b, n_boot=500)
    assert iv.width == pytest.approx(0.0, abs=1e-12)


def test_same_seed_same_interval_other_seed_other_interval():
    x = np.random.default_rng(8).random(200)
    g = np.repeat([3, 4, 5, 6], 50)
    assert bootstrap_mean(x, g, seed=11) == bootstrap_mean(x, g, seed=11)
    assert bootstrap_mean(x, g, seed=11) != bootstrap_mean(x, g, seed=12)


def test_wider_level_gives_wider_interval():
    x = np.random.default_rng(9).random(200)
    assert bootstrap_mean(x, level=0.99).width > bootstrap_mean(x, level=0.8).width


def test_interval_as_dict_is_json_and_str_is_short():
    iv = Interval(0.8123, 0.8011, 0.8234, 0.95, 10, 2, "m")
    assert json.loads(json.dumps(iv.as_dict())) == {
        "estimate": 0.8123, "low": 0.8011, "high": 0.8234, "level": 0.95, "n": 10, "n_groups": 2, "method": "m",
        "n_clusters": None,
    }
    assert str(iv) == "0.812 [0.801, 0.823]"
    d = bootstrap_mean(np.arange(5.0), n_boot=50).as_dict()
    assert all(type(d[k]) is float for k in ("estimate", "low", "high", "level"))
    assert type(d["n"]) is int


def test_seed_spread():
    assert seed_spread([0.6, 0.7, 0.8]) == {"mean": pytest.approx(0.7), "std": pytest.approx(0.1), "n": 3}
    assert seed_spread([0.6]) == {"mean": 0.6, "std": None, "n": 1}


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: bootstrap_mean([]), "empty"),
        (lambda: bootstrap_mean([0.1, float("nan")]), "non-finite"),
        (lambda: bootstrap_mean([0.1, 0.2], [1]), "groups"),
        (lambda: bootstrap_mean([[0.1, 0.2]]), "1-D"),
        (lambda: bootstrap_mean([0.1, 0.2], n_boot=1), "n_boot"),
        (lambda: bootstrap_mean([0.1, 0.2], level=1.0), "level"),
        (lambda: bootstrap_mean([0.1, 0.2], [1.0, float("nan")]), "NaN"),
        (lambda: paired_difference([0.1, 0.2], [0.1]), "a has 2 values and b has 1"),
        (lambda: paired_difference([0.1], [float("inf")]), "non-finite"),
        (lambda: seed_spread([]), "empty"),
    ],
)
def test_bad_input_raises_a_clear_error(call, message):
    with pytest.raises(EchoCemError, match=message):
        call()


def test_clustered_two_constant_clusters_span_both_levels():
    """Two clusters of equal size, constant within: a resample's mean is c1, the midpoint or c2
    (probabilities 1/4, 1/2, 1/4), so the 95 % interval is exactly [c1, c2]."""
    diff = np.r_[np.full(50, 0.1), np.full(50, -0.3)]
    iv = paired_difference_clustered(diff, np.zeros(100), np.r_[np.zeros(50), np.ones(50)], n_boot=4000, seed=3)
    assert iv.estimate == pytest.approx(-0.1)
    assert iv.low == pytest.approx(-0.3) and iv.high == pytest.approx(0.1)
    assert iv.n_groups == 2 and "two-level" in iv.method
    # the stratified interval keeps both clusters every time: it sees no spread at all
    flat = paired_difference(diff, np.zeros(100), np.r_[np.zeros(50), np.ones(50)], n_boot=4000, seed=3)
    assert flat.low == pytest.approx(-0.1) and flat.high == pytest.approx(-0.1)


def test_clustered_equal_clusters_match_the_item_bootstrap():
    """Clusters that agree add no spread: the two-level interval is about the items' one."""
    rng = np.random.default_rng(0)
    base = rng.normal(0.05, 0.1, 300)
    clusters = np.repeat([0, 1, 2], 100)
    a = np.tile(base[:100], 3)  # three seeds with identical scores
    two = paired_difference_clustered(a, np.zeros(300), clusters, n_boot=3000, seed=1)
    one = paired_difference(a, np.zeros(300), clusters, n_boot=3000, seed=1)
    assert two.width == pytest.approx(one.width, rel=0.25)
    assert paired_difference_clustered(a, np.zeros(300), clusters, n_boot=3000, seed=1) == two  # seeded


def test_nested_outer_level_spans_constant_units():
    """Two draws, constant within (0.1 and -0.3), each with 3 seeds of 20 items: a resample holds
    draw 1 twice, once each or draw 2 twice, so the 95 % interval is exactly [-0.3, 0.1]; without
    the outer level (seeds as the clusters) the 6 seeds' mixtures make it narrower."""
    diff = np.r_[np.full(60, 0.1), np.full(60, -0.3)]
    draws = np.repeat([0, 1], 60)
    seeds = np.tile(np.repeat([0, 1, 2], 20), 2)  # seed labels repeat across draws: read within each draw
    items = np.tile(np.arange(20), 6)
    iv = paired_difference_nested(diff, np.zeros(120), [draws, seeds, items], n_boot=4000, seed=2)
    assert iv.estimate == pytest.approx(-0.1)
    assert iv.low == pytest.approx(-0.3) and iv.high == pytest.approx(0.1)
    assert iv.n_groups == 2 and "3-level nested" in iv.method
    two = paired_difference_clustered(diff, np.zeros(120), draws * 3 + seeds, n_boot=4000, seed=2)
    assert -0.3 < two.low and two.high < 0.1
    assert paired_difference_nested(diff, np.zeros(120), [draws, seeds, items], n_boot=4000, seed=2) == iv
    with pytest.raises(EchoCemError, match="at least one level"):
        paired_difference_nested(diff, np.zeros(120), [])


def test_nested_two_levels_is_the_clustered_bootstrap():
    rng = np.random.default_rng(4)
    a = rng.normal(0.05, 0.1, 90) + np.repeat(rng.normal(0, 0.05, 3), 30)
    clusters, sections = np.repeat([0, 1, 2], 30), np.tile(np.repeat(np.arange(6), 5), 3)
    nested = paired_difference_nested(a, np.zeros(90), [clusters, sections], n_boot=2000, seed=5)
    two = paired_difference_clustered(a, np.zeros(90), clusters, inner=sections, n_boot=2000, seed=5)
    assert (nested.low, nested.high, nested.estimate) == (two.low, two.high, two.estimate)


def _sections(rng: np.random.Generator, n_sections: int, per_section: int, sd_between: float, sd_within: float):
    """Scores of patches in sections: a section level plus patch noise; (values, section labels)."""
    levels = rng.normal(0.0, sd_between, n_sections)
    values = np.repeat(levels, per_section) + rng.normal(0.0, sd_within, n_sections * per_section)
    return values, np.repeat(np.arange(n_sections), per_section)


def test_section_clusters_cover_the_true_mean_where_patches_one_by_one_do_not():
    """30 sections of 10 patches, section sd = patch sd = 1: the sd of the mean is
    sqrt(1/30 + 1/300) = 0.19, yet drawing patches one by one sees sqrt(2/300) = 0.08:
    a 95 % interval that holds the truth about 60 % of the time. Whole sections: about 95 %."""
    rng = np.random.default_rng(7)
    draws, by_patch, by_section = 200, 0, 0
    for i in range(draws):
        values, sections = _sections(rng, 30, 10, 1.0, 1.0)
        by_patch += bootstrap_mean(values, n_boot=500, seed=i).contains(0.0)
        by_section += bootstrap_mean(values, clusters=sections, n_boot=500, seed=i).contains(0.0)
    assert 0.88 <= by_section / draws <= 0.99
    assert by_patch / draws <= 0.75


def test_constant_sections_give_the_interval_of_their_means():
    """Patches equal to their section's level: whole-section resampling is the bootstrap of the
    section means (normal theory on them), and the number of sections, not patches, sets the width."""
    rng = np.random.default_rng(2)
    levels = rng.normal(0.7, 0.1, 400)
    values, sections = np.repeat(levels, 5), np.repeat(np.arange(400), 5)
    iv = bootstrap_mean(values, np.full(2000, 5), clusters=sections, n_boot=4000, seed=1)
    low, high = normal_interval(levels)
    assert iv.estimate == pytest.approx(levels.mean())
    assert iv.low == pytest.approx(low, abs=0.1 * (high - low) / 2)
    assert iv.high == pytest.approx(high, abs=0.1 * (high - low) / 2)
    assert (iv.n, iv.n_groups, iv.n_clusters) == (2000, 1, 400) and "whole clusters (400)" in iv.method
    # patches one by one: sqrt(5) times narrower, which the data do not support
    assert bootstrap_mean(values, n_boot=4000, seed=1).width == pytest.approx(iv.width / math.sqrt(5), rel=0.15)
    assert iv.as_dict()["n_clusters"] == 400


def test_section_resampling_keeps_wells_and_pairs_the_rungs():
    """Two wells, sections inside them: every well keeps its share; a paired difference that is
    constant on every patch has a point interval; sections of unequal size are weighted by size."""
    wells = np.r_[np.full(30, 1), np.full(70, 2)]
    sections = np.r_[np.repeat([0, 1, 2], 10), np.repeat([3, 4], 35)]
    values = np.r_[np.ones(30), np.zeros(70)]
    assert bootstrap_mean(values, wells, clusters=sections, n_boot=1000).width == 0.0
    a = np.random.default_rng(0).random(100)
    d = paired_difference(a + 0.02, a, wells, clusters=sections, n_boot=1000)
    assert d.low == pytest.approx(0.02) and d.high == pytest.approx(0.02) and d.n_clusters == 5
    uneven = np.r_[np.zeros(1), np.ones(9)]  # section 0: one patch of 0; section 1: nine patches of 1
    iv = bootstrap_mean(uneven, clusters=np.r_[0, np.ones(9, dtype=int)], n_boot=4000, seed=0)
    assert iv.low == pytest.approx(0.0) and iv.high == pytest.approx(1.0)  # resamples {0}, {1}, {0, 1} -> 0.9
    assert iv.estimate == pytest.approx(0.9)


def test_a_section_in_two_wells_is_refused():
    with pytest.raises(EchoCemError, match=r"cluster 's1' spans two groups"):
        bootstrap_mean([0.1, 0.2, 0.3], [1, 2, 2], clusters=["s1", "s1", "s2"])
    with pytest.raises(EchoCemError, match=r"clusters: expected 3 labels"):
        bootstrap_mean([0.1, 0.2, 0.3], clusters=["s1", "s2"])


def test_ratio_of_means_matches_the_delta_method_and_widens_with_clusters():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.8, 0.1, 400), rng.normal(1.0, 0.1, 400)
    iv = ratio_of_means(a, b, n_boot=4000, seed=1)
    assert iv.estimate == pytest.approx(a.mean() / b.mean())
    ra = a.mean() / b.mean()
    # delta method: var(ratio) ~ var(a)/n/mb^2 + ra^2 var(b)/n/mb^2
    se = np.sqrt(a.var(ddof=1) / a.size + ra ** 2 * b.var(ddof=1) / b.size) / b.mean()
    assert iv.width == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert iv.low < ra < iv.high and iv.n == 400 and iv.n_clusters is None
    # the denominator in 40 sections of 10 equal patches: as variable as 40 items, so wider
    sections = np.repeat(np.arange(40), 10)
    b_sections = np.repeat(rng.normal(1.0, 0.1, 40), 10)
    clustered = ratio_of_means(a, b_sections, denominator_clusters=sections, n_boot=4000, seed=1)
    by_items = ratio_of_means(a, b_sections, n_boot=4000, seed=1)
    assert clustered.n_clusters == 40 and clustered.width > 1.5 * by_items.width
    # exact when nothing varies; deterministic for a seed
    same = ratio_of_means(np.full(5, 0.9), np.ones(7))
    assert (same.estimate, same.low, same.high) == pytest.approx((0.9, 0.9, 0.9))
    assert ratio_of_means(a, b, seed=4) == ratio_of_means(a, b, seed=4)


def test_ratio_of_means_refuses_a_denominator_without_a_positive_mean():
    with pytest.raises(EchoCemError, match="denominator's mean is 0"):
        ratio_of_means([0.5, 0.6], [0.0, 0.0])
    with pytest.raises(EchoCemError, match="clusters: expected 2 labels"):
        ratio_of_means([0.5], [1.0, 1.0], denominator_clusters=[1, 2, 3])
