"""Figures of the generator and of the augmentation study (matplotlib, returned unsaved)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

MASK_COLOURS = ["#f0f0f0", "#2b8cbe", "#e34a33"]
VMAX = 6.0  # normalised amplitude shown, in robust standard deviations


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _mask_cmap():
    from matplotlib.colors import ListedColormap

    return ListedColormap(MASK_COLOURS)


def _show_image(ax, raw: np.ndarray, width: int, norm_spec: Mapping[str, Any], title: str) -> None:
    from echocem.data.preprocess import normalize

    x = normalize(raw[None], np.array([width]), norm_spec)[0, :, :width]
    ax.imshow(x, cmap="gray", vmin=-VMAX, vmax=VMAX, aspect="auto", interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _show_mask(ax, mask: np.ndarray, width: int, title: str) -> None:
    ax.imshow(np.clip(mask[:, :width], 0, 2), cmap=_mask_cmap(), vmin=0, vmax=2, aspect="auto",
              interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def pairs_grid(masks: np.ndarray, real: np.ndarray, generated: np.ndarray, pred: np.ndarray | None,
               widths: np.ndarray, ids: Sequence[str], norm_spec: Mapping[str, Any], n: int = 6,
               title: str = "Real beside generated, same masks"):
    """Columns: patches; rows: mask, real patch, generated patch (same mask), U-Net on the generated one."""
    plt = _plt()
    n = min(n, len(masks))
    rows = 4 if pred is not None else 3
    fig, axes = plt.subplots(rows, n, figsize=(2.3 * n, 2.2 * rows), squeeze=False)
    for j in range(n):
        w = int(widths[j])
        _show_mask(axes[0, j], masks[j], w, f"mask of {ids[j]}")
        _show_image(axes[1, j], real[j], w, norm_spec, "real")
        _show_image(axes[2, j], generated[j], w, norm_spec, "generated (same mask)")
        if pred is not None:
            _show_mask(axes[3, j], pred[j], w, "U-Net on generated")
    fig.suptitle(f"{title} (images clipped at +-{VMAX:g} robust std)", fontsize=10)
    fig.tight_layout()
    return fig


def proposals_grid(source_masks: np.ndarray, proposals: Mapping[str, np.ndarray], pred: np.ndarray | None,
                   norm_spec: Mapping[str, Any], n: int = 6):
    """Columns: proposals; rows: source training mask, proposed mask, generated patch, U-Net on it."""
    plt = _plt()
    n = min(n, len(proposals["masks"]))
    rows = 4 if pred is not None else 3
    fig, axes = plt.subplots(rows, n, figsize=(2.3 * n, 2.2 * rows), squeeze=False)
    for j in range(n):
        w = int(proposals["widths"][j])
        _show_mask(axes[0, j], source_masks[j], w, f"source {proposals['source_id'][j]}")
        how = (f"shift {int(proposals['tie_shift'][j])}, x{float(proposals['tie_stretch'][j]):.2f}"
               + (", absent" if proposals["absent_from"][j] >= 0 else "")
               + (", doubled" if proposals["double_from"][j] >= 0 else ""))
        _show_mask(axes[1, j], proposals["masks"][j], w, f"proposal: {how}")
        _show_image(axes[2, j], proposals["images"][j], w, norm_spec, "generated")
        if pred is not None:
            _show_mask(axes[3, j], pred[j], w, "U-Net on generated")
    fig.suptitle("Mask proposals and the patches generated for them", fontsize=10)
    fig.tight_layout()
    return fig


def distances_figure(sinkhorn: Mapping[str, Mapping[str, float]], floor_draws: Mapping[str, Mapping[str, Any]]):
    """Bars: Sinkhorn divergence to the held-out wells per candidate set, one panel per descriptor block."""
    plt = _plt()
    blocks = list(next(iter(sinkhorn.values())))
    names = list(sinkhorn)
    fig, axes = plt.subplots(1, len(blocks), figsize=(4.2 * len(blocks), 3.6), squeeze=False)
    for ax, b in zip(axes[0], blocks):
        values = [sinkhorn[k][b] for k in names]
        colours = ["#7f7f7f" if k.startswith("real") else "#2b8cbe" if k.startswith("generated") else "#e34a33"
                   for k in names]
        ax.barh(range(len(names)), values, color=colours)
        spread = floor_draws.get(b, {})
        if spread.get("std") is not None:
            ax.axvspan(spread["mean"] - spread["std"], spread["mean"] + spread["std"], color="#7f7f7f", alpha=0.2,
                       label=f"floor mean +- std ({spread['n']} draws)")
            ax.legend(fontsize=7, loc="lower right")
        ax.set_yticks(range(len(names)))
        ax.set_yticklabels(names if ax is axes[0, 0] else [""] * len(names), fontsize=8)
        ax.set_xscale("log")
        ax.set_title(f"{b} descriptors", fontsize=9)
        ax.set_xlabel("debiased Sinkhorn divergence to held-out wells")
    fig.suptitle("Distance of each patch set to the real held-out patches (lower is closer)", fontsize=10)
    fig.tight_layout()
    return fig


def loss_figure(history: Sequence[Mapping[str, Any]], title: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([r["epoch"] for r in history], [r["loss"] for r in history])
    ax.set(xlabel="epoch", ylabel="flow-matching loss (velocity MSE)", title=title)
    fig.tight_layout()
    return fig


def study_figure(table, pooled=None):
    """Left: held-out IoU per k and draw of labelled wells with and without generated pairs (mean +- std
    over seeds; pooled rows: over draws); right: paired gain with its 95 % interval (pooled rows: the
    nested bootstrap and, beside it, the t interval over the draws' gains)."""
    import pandas as pd

    plt = _plt()
    rows = table.assign(label=[f"k={k}\nwells {w}" for k, w in zip(table["k"], table["wells"])], pooled=False)
    if pooled is not None and len(pooled):
        rows = pd.concat([rows, pooled.assign(label=[f"k={k}\n{n} draws" for k, n in
                                                     zip(pooled["k"], pooled["n_draws"])], pooled=True)],
                         ignore_index=True)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(max(10, 1.1 * len(rows) + 6), 3.8))
    x = np.arange(len(rows))
    ax.errorbar(x - 0.05, rows["without_mean"], yerr=rows["without_std"].astype(float).fillna(0), fmt="o",
                capsize=4, label="real pairs only")
    ax.errorbar(x + 0.05, rows["with_mean"], yerr=rows["with_std"].astype(float).fillna(0), fmt="s", capsize=4,
                label="real + generated pairs")
    ax.set(ylabel="held-out challenge IoU", title="IoU (mean +- std over seeds; pooled: over draws)")
    ax.legend(fontsize=8)
    est = rows["gain"].to_numpy()
    lo, hi = rows["gain_low"].to_numpy(), rows["gain_high"].to_numpy()
    for mask, colour, name in ((~rows["pooled"], "#2b8cbe", "one draw of wells"),
                               (rows["pooled"], "#d95f0e", "pooled over draws")):
        m = mask.to_numpy(bool)
        if m.any():
            bx.errorbar(x[m], est[m], yerr=[est[m] - lo[m], hi[m] - est[m]], fmt="o", capsize=4, color=colour,
                        label=name)
    m = rows["pooled"].to_numpy(bool)
    if m.any():  # the pooled verdict needs this one too (a bootstrap of a few draws is too narrow)
        t_lo, t_hi = rows["draws_t_low"].to_numpy(float), rows["draws_t_high"].to_numpy(float)
        bx.errorbar(x[m] + 0.15, est[m], yerr=[est[m] - t_lo[m], t_hi[m] - est[m]], fmt="none", capsize=3,
                    color="#8c510a", elinewidth=1, label="pooled: t interval over the draws' gains")
    bx.axhline(0.0, color="grey", linestyle="--")
    bx.set(ylabel="IoU gain (with - without)", title="paired gain, 95 % intervals")
    bx.legend(fontsize=8)
    for axis in (ax, bx):
        axis.set_xticks(x)
        axis.set_xticklabels(rows["label"], fontsize=7)
        axis.set_xlim(-0.5, len(rows) - 0.5)
    fig.tight_layout()
    return fig
