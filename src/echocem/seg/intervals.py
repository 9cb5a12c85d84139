"""Ladder rungs with 95 % intervals, gains as paired differences, and their figure.

Input: per-patch challenge scores (`echocem.seg.metric.patch_scores`) of every
rung on the same patches in the same order, and the well of each patch. A rung
trained over several seeds gives a (seeds, patches) array: its per-patch score
is the mean over seeds (the ensemble of runs a reader would reproduce), and the
spread of its per-seed means is reported beside the interval.

Overall intervals resample patches within their well (`echocem.stats`), so each
well keeps its weight; per-well rows resample that well's patches. Given the
section of every patch, whole sections are resampled instead: the patches of a
section are depth strips of one image and err together, so drawing them one by
one makes every interval too narrow. Gains are paired differences on the same
resamples, which is what makes a small gain distinguishable from zero when the
two rungs err on the same patches.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from echocem.io import EchoCemError
from echocem.stats import Interval, bootstrap_mean, paired_difference, seed_spread

RUNG_COLUMNS = ["rung", "scope", "well", "estimate", "low", "high", "level", "n", "n_groups", "n_clusters",
                "n_seeds", "seed_mean", "seed_std", "method"]
DIFF_COLUMNS = ["a", "b", "name", "scope", "well", "estimate", "low", "high", "level", "n", "n_groups",
                "n_clusters", "excludes_zero", "method"]


def _per_seed(scores: Mapping[str, Any], wells: np.ndarray) -> dict[str, np.ndarray]:
    """Every rung as a (seeds, N) float array; EchoCemError on a mismatch or a non-finite score."""
    if not scores:
        raise EchoCemError("intervals: no rung given")
    n = wells.shape[0]
    out = {}
    for rung, vals in scores.items():
        arr = np.asarray(vals, dtype=np.float64)
        arr = arr[None, :] if arr.ndim == 1 else arr
        if arr.ndim != 2 or arr.shape[1] != n or arr.shape[0] < 1:
            raise EchoCemError(f"intervals: rung {rung!r} has scores of shape {np.shape(vals)}; expected ({n},) "
                               f"or (seeds, {n}) for the {n} patches")
        if not np.isfinite(arr).all():
            raise EchoCemError(f"intervals: rung {rung!r} has non-finite per-patch scores")
        out[str(rung)] = arr
    return out


def _order(scores: Mapping[str, Any], order: Sequence[str] | None) -> list[str]:
    if order is None:
        return [str(r) for r in scores]
    unknown = [r for r in order if r not in scores]
    if unknown:
        raise EchoCemError(f"intervals: rungs {unknown} in the order have no scores (known: {list(scores)})")
    return list(order)


def _row(iv: Interval) -> dict[str, Any]:
    return {"estimate": iv.estimate, "low": iv.low, "high": iv.high, "level": iv.level, "n": iv.n,
            "n_groups": iv.n_groups, "n_clusters": pd.NA if iv.n_clusters is None else iv.n_clusters,
            "method": iv.method}


def section_codes(wells: Sequence[int] | np.ndarray, sections: Sequence[int] | np.ndarray) -> np.ndarray:
    """One integer per (well, section): the cluster label of every patch (section numbers repeat
    across wells, so the section alone would merge sections of different wells)."""
    pairs = np.stack([np.asarray(wells).reshape(-1), np.asarray(sections).reshape(-1)], axis=1)
    return np.unique(pairs, axis=0, return_inverse=True)[1].reshape(-1)


def _scopes(wells: np.ndarray, clusters: np.ndarray | None) -> list[tuple[str, Any, np.ndarray, Any, Any]]:
    """(scope, well, selection, groups, clusters) overall and per well."""
    every = np.ones(wells.shape[0], dtype=bool)
    out = [("all", pd.NA, every, wells, clusters)]
    for w in np.unique(wells):
        sel = wells == w
        out.append(("well", int(w), sel, None, None if clusters is None else clusters[sel]))
    return out


def _clusters(clusters: Any, n: int) -> np.ndarray | None:
    if clusters is None:
        return None
    arr = np.asarray(clusters).reshape(-1)
    if arr.shape[0] != n:
        raise EchoCemError(f"intervals: {arr.shape[0]} section labels for {n} patches")
    return arr


def rung_table(
    scores: Mapping[str, Any],
    wells: Sequence[int] | np.ndarray,
    order: Sequence[str] | None = None,
    *,
    clusters: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per rung overall (scope "all", well NA) and per rung and well (scope "well").

    estimate/low/high: mean patch score and its interval (whole `clusters`, e.g.
    `section_codes`, resampled where given); n_seeds, seed_mean, seed_std: the
    spread over seeds (seed_std NA with one seed).
    """
    wells = np.asarray(wells).reshape(-1)
    per_seed = _per_seed(scores, wells)
    clusters = _clusters(clusters, wells.shape[0])
    rows = []
    for rung in _order(per_seed, order):
        arr = per_seed[rung]
        for scope, well, sel, groups, cl in _scopes(wells, clusters):
            iv = bootstrap_mean(arr[:, sel].mean(axis=0), groups, clusters=cl, n_boot=n_boot, level=level,
                                seed=seed)
            spread = seed_spread(arr[:, sel].mean(axis=1))
            rows.append({"rung": rung, "scope": scope, "well": well, **_row(iv), "n_seeds": spread["n"],
                         "seed_mean": spread["mean"],
                         "seed_std": pd.NA if spread["std"] is None else spread["std"]})
    return pd.DataFrame(rows, columns=RUNG_COLUMNS).astype({"well": "Int64", "n_clusters": "Int64",
                                                            "seed_std": "Float64"})


def consecutive_pairs(order: Sequence[str]) -> list[tuple[str, str]]:
    """(later, earlier) for each step up the ladder: the gain of every rung over the one below."""
    return [(order[k + 1], order[k]) for k in range(len(order) - 1)]


def difference_table(
    scores: Mapping[str, Any],
    wells: Sequence[int] | np.ndarray,
    pairs: Sequence[tuple[str, str]],
    *,
    clusters: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per pair (a, b) overall and per well: mean of a - b with its paired interval
    (whole `clusters` resampled where given).

    excludes_zero: the interval lies wholly above or below 0.
    """
    wells = np.asarray(wells).reshape(-1)
    per_seed = _per_seed(scores, wells)
    clusters = _clusters(clusters, wells.shape[0])
    rows = []
    for a, b in pairs:
        missing = [r for r in (a, b) if r not in per_seed]
        if missing:
            raise EchoCemError(f"intervals: pair ({a!r}, {b!r}) names rungs without scores: {missing}")
        sa, sb = per_seed[a].mean(axis=0), per_seed[b].mean(axis=0)
        for scope, well, sel, groups, cl in _scopes(wells, clusters):
            iv = paired_difference(sa[sel], sb[sel], groups, clusters=cl, n_boot=n_boot, level=level, seed=seed)
            rows.append({"a": a, "b": b, "name": f"{a} - {b}", "scope": scope, "well": well, **_row(iv),
                         "excludes_zero": bool(iv.low > 0 or iv.high < 0)})
    return pd.DataFrame(rows, columns=DIFF_COLUMNS).astype({"well": "Int64", "n_clusters": "Int64"})


def ladder_intervals(
    scores: Mapping[str, Any],
    wells: Sequence[int] | np.ndarray,
    order: Sequence[str] | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    *,
    clusters: Sequence[Any] | np.ndarray | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """{"rungs": rung_table, "differences": difference_table}; pairs default to consecutive rungs."""
    rung_order = _order(scores, order)
    chosen = consecutive_pairs(rung_order) if pairs is None else list(pairs)
    opts = {"clusters": clusters, "n_boot": n_boot, "level": level, "seed": seed}
    return {"rungs": rung_table(scores, wells, rung_order, **opts),
            "differences": difference_table(scores, wells, chosen, **opts)}


def records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-able rows (plain Python numbers, None for missing) for a metrics file."""
    out = []
    for row in table.to_dict(orient="records"):
        clean = {}
        for k, v in row.items():
            if v is pd.NA or (isinstance(v, float) and np.isnan(v)):
                clean[k] = None
            elif isinstance(v, (np.integer,)):
                clean[k] = int(v)
            elif isinstance(v, (np.floating,)):
                clean[k] = float(v)
            elif isinstance(v, np.bool_):
                clean[k] = bool(v)
            else:
                clean[k] = v
        out.append(clean)
    return out


# --------------------------------------------------------------------------- figure


def intervals_figure(rungs: pd.DataFrame, differences: pd.DataFrame | None = None,
                     labels: Mapping[str, str] | None = None, title: str = "Segmentation ladder"):
    """Error-bar figure: rungs overall, rungs per well, and (if given) the paired gains.

    Points are estimates, bars their intervals; gains are drawn against a zero
    line, so a gain whose bar crosses it is not distinguishable from none.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = dict(labels or {})
    name = lambda r: labels.get(r, r)  # noqa: E731
    overall = rungs[rungs["scope"] == "all"]
    per_well = rungs[rungs["scope"] == "well"]
    order = list(overall["rung"])
    wells = sorted(per_well["well"].dropna().unique().tolist())
    n_panels = 3 if differences is not None and len(differences) else 2
    fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 4.4))
    level = float(overall["level"].iloc[0]) if len(overall) else 0.95

    ax = axes[0]
    y = np.arange(len(order))[::-1]
    est = overall["estimate"].to_numpy(float)
    ax.errorbar(est, y, xerr=[est - overall["low"].to_numpy(float), overall["high"].to_numpy(float) - est],
                fmt="o", capsize=4)
    for yy, e in zip(y, est):
        ax.annotate(f"{e:.3f}", (e, yy), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    ax.set_yticks(y, [name(r) for r in order])
    ax.set_xlabel(f"challenge IoU, {level:.0%} interval")
    ax.set_title("all validation patches")
    ax.grid(axis="x", alpha=0.3)

    ax = axes[1]
    width = 0.8 / max(1, len(order))
    for k, rung in enumerate(order):
        part = per_well[per_well["rung"] == rung].set_index("well").reindex(wells)
        x = np.arange(len(wells)) + (k - (len(order) - 1) / 2) * width
        e = part["estimate"].to_numpy(float)
        ax.errorbar(x, e, yerr=[e - part["low"].to_numpy(float), part["high"].to_numpy(float) - e],
                    fmt="o", capsize=3, label=name(rung))
    ax.set_xticks(np.arange(len(wells)), [f"well {w}" for w in wells])
    ax.set_ylabel("challenge IoU")
    ax.set_title("per validation well")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="best")

    if n_panels == 3:
        ax = axes[2]
        d = differences[differences["scope"] == "all"]
        y = np.arange(len(d))[::-1]
        e = d["estimate"].to_numpy(float)
        colours = ["tab:green" if z else "tab:grey" for z in d["excludes_zero"]]
        for yy, ee, lo, hi, c in zip(y, e, d["low"].to_numpy(float), d["high"].to_numpy(float), colours):
            ax.errorbar([ee], [yy], xerr=[[ee - lo], [hi - ee]], fmt="o", capsize=4, color=c)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, [f"{name(a)} vs {name(b)}" for a, b in zip(d["a"], d["b"])], fontsize=7)
        ax.set_xlabel("paired difference of IoU")
        ax.set_title("gains (green: interval excludes 0)")
        ax.grid(axis="x", alpha=0.3)

    fig.suptitle(title)
    fig.tight_layout()
    return fig
