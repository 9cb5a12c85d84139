"""Figures of the W2 benchmark (matplotlib, Agg); each function returns a Figure.

Inputs are the metrics dicts written by the transport_d{D} stages
(echocem.transport.experiment.build_metrics), so the report can redraw them from the JSONs.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from echocem.transport.metrics import diverged_seeds  # noqa: E402

LABELS = {"linear": "linear (Bures)", "entropic": "entropic (Sinkhorn)", "icnn": "ICNN",
          "cmgn": "C-MGN", "mmgn": "M-MGN"}
COLORS = {"linear": "tab:grey", "entropic": "tab:green", "icnn": "tab:purple", "cmgn": "tab:red", "mmgn": "tab:blue"}


def _methods(metrics: Mapping) -> list[str]:
    return [m for m in LABELS if m in metrics["methods"]]


def _uvp(metrics: Mapping, method: str) -> tuple[float, float]:
    """(mean, std) of a method's L2-UVP; NaN where it diverged on a seed (drawn as a gap, not a point)."""
    uvp = metrics["methods"][method]["uvp"]
    if diverged_seeds(uvp) or uvp["mean"] is None:
        return float("nan"), float("nan")
    return float(uvp["mean"]), float(uvp["std"])


def uvp_vs_dim_figure(all_metrics: Sequence[Mapping]):
    """L2-UVP (%) against D, log-log, every method (mean +- std over seeds) and the paper's
    best and linear figures: the report's summary of the benchmark."""
    runs = sorted(all_metrics, key=lambda m: m["dim"])
    dims = [m["dim"] for m in runs]
    fig, ax = plt.subplots(figsize=(7, 4.6))
    for method in _methods(runs[0]):
        mean, std = np.array([_uvp(m, method) for m in runs]).T
        gone = [d for d, v in zip(dims, mean) if np.isnan(v)]
        label = LABELS[method] + (f" (diverged at D = {', '.join(map(str, gone))})" if gone else "")
        ax.errorbar(dims, mean, yerr=std, marker="o", capsize=3, color=COLORS[method], label=label)
    best = [(m["dim"], m["paper"]["best_uvp"]) for m in runs if m["paper"]["best_uvp"] is not None]
    if best:
        ax.plot(*zip(*best), "k*", ms=11, ls=":", label="paper: best solver")
    ax.plot(dims, [m["paper"]["linear_uvp"] for m in runs], "kx", ms=8, ls="none", label="paper: linear")
    seeds = sorted({m["n_seeds"] for m in runs})
    ax.set(xscale="log", yscale="log", xlabel="dimension D", ylabel="L2-UVP (%)",
           title=f"W2 benchmark Mix3 -> Mix10: L2-UVP vs T* (mean ± std, {'/'.join(map(str, seeds))} seeds)")
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.minorticks_off()
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig


def uvp_bars_figure(metrics: Mapping):
    """One dimension: each method's L2-UVP (mean +- std, log scale) beside the paper's figures."""
    methods = _methods(metrics)
    mean, std = np.array([_uvp(metrics, m) for m in methods]).T
    fig, ax = plt.subplots(figsize=(6.4, 4))
    ax.bar(range(len(methods)), mean, yerr=std, capsize=4, color=[COLORS[m] for m in methods])
    for i in np.flatnonzero(np.isnan(mean)):
        ax.annotate("diverged", (i, 0.02), xycoords=("data", "axes fraction"), ha="center", rotation=90)
    if metrics["paper"]["best_uvp"] is not None:
        ax.axhline(metrics["paper"]["best_uvp"], color="k", ls="--", lw=1, label="paper: best solver")
    ax.axhline(metrics["paper"]["linear_uvp"], color="k", ls=":", lw=1, label="paper: linear")
    ax.set_xticks(range(len(methods)), [LABELS[m] for m in methods], rotation=20)
    ax.set(yscale="log", ylabel="L2-UVP (%)",
           title=f"D = {metrics['dim']}: L2-UVP vs T* (mean ± std, {metrics['n_seeds']} seeds)")
    ax.legend(fontsize=8)
    return fig


def transported_figure(shown: Mapping[str, np.ndarray], dim: int):
    """First seed, first two coordinates: T*(x) (black) and each method's T(x) for the same x,
    with the displacement of a few points, so errors show where they are."""
    methods = [m for m in LABELS if m in shown]
    fig, axes = plt.subplots(1, len(methods), figsize=(3.3 * len(methods), 3.4), sharex=True, sharey=True)
    truth, x = shown["truth"], shown["x"]
    for ax, method in zip(np.atleast_1d(axes), methods):
        y = shown[method]
        ax.scatter(truth[:, 0], truth[:, 1], s=3, c="k", alpha=0.35, label="T*(x)")
        ax.scatter(y[:, 0], y[:, 1], s=3, c=COLORS[method], alpha=0.35, label="T(x)")
        for i in range(0, min(len(x), 60)):
            ax.plot([truth[i, 0], y[i, 0]], [truth[i, 1], y[i, 1]], color=COLORS[method], lw=0.6)
        ax.set_title(LABELS[method], fontsize=9)
    np.atleast_1d(axes)[0].legend(fontsize=7, markerscale=3)
    fig.suptitle(f"D = {dim}: mapped samples, coordinates 1-2 (error segments T*(x) -> T(x))", fontsize=10)
    return fig
