"""Uncertainty of scores: bootstrap intervals of means and of paired differences.

A ladder of models scored on the same patches only means something with an
interval on every rung and on every gain. Patches of one well are not
independent draws (same tool, same cement, same contrast), so the resampling
is stratified by well: each well keeps its number of patches in every
resample, items are drawn with replacement inside their own well, and the
statistic is the mean over all items (the challenge score is a mean over
patches, not over wells). The interval is the percentile interval of the
resampled means.

Patches of one section are consecutive depth strips of one image: they share
its cement, its TIE track and its contrast, so they are not independent either.
Given `clusters` (e.g. the section of each patch), the resampling draws whole
clusters with replacement inside their stratum, as many as the stratum holds,
and the statistic is the resampled items' mean (their sum over their count).
The interval then covers the variation between sections, which drawing patches
one by one hides: on a simulated validation well of 32 sections of 20 patches,
the U-Net's patch-by-patch interval was +-0.013, the section one +-0.039.

A gain is a paired difference: model A and model B scored on the same patches
are resampled with the same indices, so the patch-to-patch variation they
share cancels (the interval of a difference is far narrower than the two
intervals side by side suggest).

Everything is vectorised: one matrix of random indices per group (chunked to
bound memory) and one gather-and-sum per chunk. The same `seed` gives the same
interval.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from echocem.io import EchoCemError

# Upper bound on the number of random indices held at once (int64: 32 MiB).
_MAX_DRAWN = 1 << 22


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence interval.

    `n` is the number of items (patches), `n_groups` the number of strata
    (wells) they were resampled within, `n_clusters` the number of clusters
    (sections) drawn whole (None: items drawn one by one); `method` says how the
    interval was made.
    """

    estimate: float
    low: float
    high: float
    level: float
    n: int
    n_groups: int
    method: str
    n_clusters: int | None = None

    @property
    def width(self) -> float:
        return self.high - self.low

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def as_dict(self) -> dict[str, Any]:
        """Plain Python types only, ready for `json.dump`."""
        out = asdict(self)
        for key in ("estimate", "low", "high", "level"):
            out[key] = float(out[key])
        out["n"], out["n_groups"] = int(self.n), int(self.n_groups)
        out["n_clusters"] = None if self.n_clusters is None else int(self.n_clusters)
        return out

    def __str__(self) -> str:
        return f"{self.estimate:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _as_values(values: Any, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise EchoCemError(f"{name}: expected a 1-D array of scores, got shape {arr.shape}")
    if arr.size == 0:
        raise EchoCemError(f"{name}: empty; an interval needs at least one value")
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise EchoCemError(
            f"{name}: {int(bad.sum())} non-finite value(s), first at position {first} ({arr[first]}); "
            "drop or fix them before computing an interval"
        )
    return arr


def _label_codes(labels: Any, n: int, name: str, example: str) -> np.ndarray:
    """Integer code 0..L-1 per item from one label per item (EchoCemError naming `name`)."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise EchoCemError(f"{name}: expected {n} labels (one per value), got shape {arr.shape}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise EchoCemError(f"{name}: contains NaN; every item needs a {name[:-1]} label (e.g. its {example})")
    _, codes = np.unique(arr, return_inverse=True)
    return codes.reshape(-1)


def _group_codes(groups: Any, n: int) -> np.ndarray:
    """Integer code 0..G-1 per item (one group when `groups` is None)."""
    if groups is None:
        return np.zeros(n, dtype=np.int64)
    return _label_codes(groups, n, "groups", "well")


def _check_options(n_boot: int, level: float) -> None:
    if int(n_boot) != n_boot or n_boot < 2:
        raise EchoCemError(f"n_boot must be an integer >= 2, got {n_boot}")
    if not (0.0 < level < 1.0):
        raise EchoCemError(f"level must lie strictly between 0 and 1, got {level}")


def bootstrap_means(values: np.ndarray, codes: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot,) means of stratified resamples of `values` (already validated).

    Within each group the items are drawn with replacement, as many as the
    group holds; the resampled mean is the sum over all groups divided by the
    total count. Groups are visited in code order and chunks in row order, so
    the result depends only on the inputs and `seed`.
    """
    rng = np.random.default_rng(seed)
    totals = np.zeros(n_boot, dtype=np.float64)
    for g in range(int(codes.max()) + 1):
        members = values[codes == g]
        size = members.size
        rows = max(1, _MAX_DRAWN // size)
        for lo in range(0, n_boot, rows):
            hi = min(n_boot, lo + rows)
            idx = rng.integers(0, size, size=(hi - lo, size))
            totals[lo:hi] += members[idx].sum(axis=1)
    return totals / values.size


def cluster_bootstrap_means(values: np.ndarray, codes: np.ndarray, clusters: np.ndarray, n_boot: int,
                            seed: int) -> np.ndarray:
    """(n_boot,) means of stratified cluster resamples of `values` (already validated).

    `clusters` (codes 0..C-1) nest in the strata `codes`: within each stratum
    whole clusters are drawn with replacement, as many as it holds; a resample's
    mean is the sum of the drawn clusters' items over their count (clusters may
    differ in size). Strata and chunks are visited in order: the result depends
    only on the inputs and `seed`.
    """
    rng = np.random.default_rng(seed)
    sums = np.bincount(clusters, weights=values)
    sizes = np.bincount(clusters).astype(np.float64)
    totals, counts = np.zeros(n_boot), np.zeros(n_boot)
    for g in range(int(codes.max()) + 1):
        members = np.unique(clusters[codes == g])
        rows = max(1, _MAX_DRAWN // members.size)
        for lo in range(0, n_boot, rows):
            hi = min(n_boot, lo + rows)
            drawn = members[rng.integers(0, members.size, size=(hi - lo, members.size))]
            totals[lo:hi] += sums[drawn].sum(axis=1)
            counts[lo:hi] += sizes[drawn].sum(axis=1)
    return totals / counts


def _cluster_codes(clusters: Any, codes: np.ndarray) -> np.ndarray:
    """Integer code 0..C-1 per item; EchoCemError unless every cluster lies in one stratum."""
    cl = _label_codes(clusters, codes.size, "clusters", "section")
    pairs = np.unique(np.stack([cl, codes], axis=1), axis=0)
    spans = np.flatnonzero(np.bincount(pairs[:, 0]) > 1)
    if spans.size:
        label = np.asarray(clusters)[np.flatnonzero(cl == spans[0])[0]].tolist()
        raise EchoCemError(f"clusters: cluster {label!r} spans two groups; "
                           "a cluster (e.g. a section) must lie inside one group (its well)")
    return cl


def _percentile_bounds(boots: np.ndarray, level: float) -> tuple[float, float]:
    """The central `level` percentile interval of the resampled statistics `boots`."""
    alpha = 1.0 - level
    low, high = np.quantile(boots, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def _percentile_interval(values: np.ndarray, boots: np.ndarray, level: float, n_groups: int, method: str,
                         n_clusters: int | None = None) -> Interval:
    """The mean of `values` with the percentile interval of its resampled means `boots`."""
    low, high = _percentile_bounds(boots, level)
    return Interval(
        estimate=float(values.mean()),
        low=float(low),
        high=float(high),
        level=float(level),
        n=int(values.size),
        n_groups=n_groups,
        method=method,
        n_clusters=n_clusters,
    )


def _interval(values: np.ndarray, groups: Any, n_boot: int, level: float, seed: int, what: str,
              clusters: Any = None) -> Interval:
    _check_options(n_boot, level)
    codes = _group_codes(groups, values.size)
    n_groups = int(codes.max()) + 1
    strat = "stratified by group, " if n_groups > 1 else ""
    if clusters is None:
        boots = bootstrap_means(values, codes, int(n_boot), seed)
        return _percentile_interval(values, boots, level, n_groups,
                                    f"{what}: percentile bootstrap, {strat}{int(n_boot)} resamples")
    cl = _cluster_codes(clusters, codes)
    boots = cluster_bootstrap_means(values, codes, cl, int(n_boot), seed)
    n_clusters = int(cl.max()) + 1
    return _percentile_interval(values, boots, level, n_groups,
                                f"{what}: percentile bootstrap of whole clusters ({n_clusters}), {strat}"
                                f"{int(n_boot)} resamples", n_clusters)


def _paired(a: Any, b: Any, what: str) -> np.ndarray:
    """a - b, item by item, once both are checked to score the same items."""
    arr_a = _as_values(a, "a")
    arr_b = _as_values(b, "b")
    if arr_a.shape != arr_b.shape:
        raise EchoCemError(
            f"{what}: a has {arr_a.size} values and b has {arr_b.size}; "
            "they must be scores of the same items in the same order"
        )
    return arr_a - arr_b


def bootstrap_mean(
    values: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    *,
    clusters: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of `values` with a percentile-bootstrap interval, resampled within `groups`.

    `groups` (one label per value, e.g. the well of each patch) keeps every
    group's size fixed across resamples; None treats all values as one group.
    A group of one item contributes no variation (it is always redrawn).
    `clusters` (one label per value, e.g. the section of each patch; each inside
    one group): whole clusters are drawn instead of single items.
    """
    arr = _as_values(values, "values")
    return _interval(arr, groups, n_boot, level, seed, "mean", clusters)


def paired_difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    groups: Sequence[Any] | np.ndarray | None = None,
    *,
    clusters: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of a - b (items paired by position) with a stratified bootstrap interval.

    Resampling the per-item differences is resampling a and b with the same
    indices: both models are judged on the same resampled patches (or, with
    `clusters`, on the same resampled sections).
    """
    return _interval(_paired(a, b, "paired_difference"), groups, n_boot, level, seed, "paired difference",
                     clusters)


def paired_difference_clustered(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    clusters: Sequence[Any] | np.ndarray,
    *,
    inner: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of a - b with a two-level bootstrap interval: clusters, then items within them.

    For scores of several training runs (clusters: the seeds) on the same items:
    each resample draws as many clusters as there are, with replacement, then
    the items of each drawn cluster with replacement, so the interval covers the
    spread between runs as well as between items. (The stratified interval of
    `paired_difference` keeps every cluster once and covers the items only.)
    With few clusters the interval is coarse: with 3 seeds it cannot be narrower
    than the spread of their means allows. `inner` (one label per item, e.g. the
    section of each patch): within a drawn cluster, whole inner groups are drawn
    instead of single items (a section's patches err together).
    """
    values = _paired(a, b, "paired_difference_clustered")
    levels = [clusters, np.arange(values.size) if inner is None else inner]
    then = "items" if inner is None else "whole inner groups"
    return _nested_interval(values, levels, n_boot, level, seed,
                            f"paired difference: two-level percentile bootstrap (clusters, then {then} "
                            f"within them), {int(n_boot)} resamples")


def paired_difference_nested(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    levels: Sequence[Sequence[Any] | np.ndarray],
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Mean of a - b with a nested bootstrap interval over any number of levels.

    `levels`: one label per item for each level, outermost first, e.g. [the
    draw of labelled wells, the seed, the held-out section]. Each resample
    draws as many outermost units as there are, with replacement; within each
    drawn unit, as many of its units of the next level, and so on; the
    innermost level's units are drawn whole. Labels of an inner level are read
    within their outer unit (seed 0 of draw 0 and seed 0 of draw 1 are two
    units). With one level this is the cluster bootstrap; with [clusters,
    items] it is `paired_difference_clustered`.
    """
    values = _paired(a, b, "paired_difference_nested")
    if not levels:
        raise EchoCemError("paired_difference_nested: give at least one level of labels")
    return _nested_interval(values, levels, n_boot, level, seed,
                            f"paired difference: {len(levels)}-level nested percentile bootstrap (each level's "
                            f"units drawn with replacement within the drawn unit above), {int(n_boot)} resamples")


def _nested_interval(values: np.ndarray, levels: Sequence[Any], n_boot: int, level: float, seed: int,
                     method: str) -> Interval:
    _check_options(n_boot, level)
    codes = [_group_codes(labels, values.size) for labels in levels]
    rng = np.random.default_rng(seed)
    totals, counts = np.zeros(int(n_boot)), np.zeros(int(n_boot))

    # Written by hand: no well-kept library draws a nested (multi-stage) bootstrap of a mean.
    def descend(items: np.ndarray, depth: int, rows: np.ndarray) -> None:
        """Add to each resample in `rows` (one entry per drawn copy of this unit) a resample of the unit."""
        units, local = np.unique(codes[depth][items], return_inverse=True)
        pick = rng.integers(0, units.size, size=(rows.size, units.size))
        if depth == len(codes) - 1:  # innermost: whole units, by their sums and sizes
            sums = np.bincount(local, weights=values[items])
            sizes = np.bincount(local).astype(np.float64)
            np.add.at(totals, rows, sums[pick].sum(axis=1))
            np.add.at(counts, rows, sizes[pick].sum(axis=1))
            return
        for u in range(units.size):
            copies = (pick == u).sum(axis=1)
            if copies.any():
                descend(items[local == u], depth + 1, np.repeat(rows, copies))

    descend(np.arange(values.size), 0, np.arange(int(n_boot)))
    return _percentile_interval(values, totals / counts, level, int(np.unique(codes[0]).size), method)


def ratio_of_means(
    numerator: Sequence[float] | np.ndarray,
    denominator: Sequence[float] | np.ndarray,
    *,
    denominator_clusters: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """mean(numerator) / mean(denominator) of two independent samples, with the percentile
    interval of the ratio over independent resamples of each.

    For a score on one set of items relative to the score on another (e.g. a network's IoU
    on generated patches over its IoU on real ones): both sets vary, so both are resampled.
    `denominator_clusters` (one label per denominator item, e.g. its section): its whole
    clusters are drawn. `n` is the numerator's count, `n_clusters` the denominator's.
    """
    a = _as_values(numerator, "numerator")
    b = _as_values(denominator, "denominator")
    _check_options(n_boot, level)
    if b.mean() <= 0:
        raise EchoCemError(f"ratio_of_means: the denominator's mean is {b.mean():g}; it must be positive")
    rng = np.random.default_rng(seed)
    seed_a, seed_b = (int(x) for x in rng.integers(0, 2**31 - 1, size=2))
    boot_a = bootstrap_means(a, np.zeros(a.size, dtype=np.int64), int(n_boot), seed_a)
    codes_b = np.zeros(b.size, dtype=np.int64)
    if denominator_clusters is None:
        boot_b, n_clusters, how = bootstrap_means(b, codes_b, int(n_boot), seed_b), None, "items"
    else:
        cl = _cluster_codes(denominator_clusters, codes_b)
        boot_b = cluster_bootstrap_means(b, codes_b, cl, int(n_boot), seed_b)
        n_clusters = int(cl.max()) + 1
        how = f"whole clusters ({n_clusters})"
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(boot_b > 0, boot_a / boot_b, np.inf)
    low, high = _percentile_bounds(ratios, level)
    return Interval(estimate=float(a.mean() / b.mean()), low=low, high=high, level=float(level),
                    n=int(a.size), n_groups=1,
                    method=f"ratio of means: percentile bootstrap, numerator items and denominator {how} "
                           f"resampled independently, {int(n_boot)} resamples",
                    n_clusters=n_clusters)


def seed_spread(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Mean and spread of one score over several seeds: {"mean", "std", "n"}.

    `std` is the sample standard deviation (ddof=1). With a single seed there is
    no spread to estimate: `std` is None (JSON-friendly), not 0.
    """
    arr = _as_values(values, "seed scores")
    std = float(arr.std(ddof=1)) if arr.size > 1 else None
    return {"mean": float(arr.mean()), "std": std, "n": int(arr.size)}


def normal_interval(values: Sequence[float] | np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Normal-theory interval of the mean (mean +- z * s / sqrt(n)), for comparison."""
    from scipy.stats import norm

    arr = _as_values(values, "values")
    if arr.size < 2:
        raise EchoCemError("normal_interval: needs at least two values to estimate a spread")
    _check_options(2, level)
    half = float(norm.ppf(0.5 + level / 2.0)) * float(arr.std(ddof=1)) / math.sqrt(arr.size)
    mean = float(arr.mean())
    return mean - half, mean + half
