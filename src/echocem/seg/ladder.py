"""The evaluation ladder: every part of the segmentation added one at a time, on the validation wells.

Rungs, in order: all_background (the floor: class 0 everywhere), rf, then the
U-Net patch by patch and one part added per rung: section context (whole
sections, overlapping windows), depth-flip TTA, the out-of-fold U-Nets averaged
in, the pseudo-label students averaged in, the post-processing U-Net, the rules.
Each rung holds the challenge IoU with per-class and per-well breakdowns
(echocem.seg.metric); its 95 % interval and every gain (a rung against the one
below, paired on the same patches) come from echocem.seg.intervals.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from echocem.io import EchoCemError
from echocem.seg.metric import challenge_iou, patch_scores

RUNG_ORDER = ("all_background", "rf", "unet", "sections", "tta", "ensemble", "pseudo", "postproc", "rules")
RUNG_LABELS = {
    "all_background": "all background",
    "rf": "Random Forest",
    "unet": "U-Net, patch by patch",
    "sections": "+ section context",
    "tta": "+ depth-flip TTA",
    "ensemble": "+ out-of-fold U-Nets",
    "pseudo": "+ pseudo-label students",
    "postproc": "+ post-processing U-Net",
    "rules": "+ rules",
}
# The part each rung adds (the gain of a rung over the one below is that part's)
PARTS = {"sections": "section context", "tta": "depth-flip TTA", "ensemble": "ensemble of the out-of-fold U-Nets",
         "pseudo": "pseudo-label students", "postproc": "post-processing U-Net", "rules": "rules"}
CLASS_NAMES = ("background", "TIE", "casing")


def align_predictions(ref_ids: Sequence[str], ids: Sequence[str], pred: np.ndarray, source: str) -> np.ndarray:
    """Predictions reordered to `ref_ids`; EchoCemError naming `source` if a patch is missing."""
    ids = [str(i) for i in ids]
    if len(ids) != len(pred):
        raise EchoCemError(f"{source}: {len(ids)} ids for {len(pred)} predictions")
    position = {i: k for k, i in enumerate(ids)}
    missing = [i for i in ref_ids if i not in position]
    if missing:
        raise EchoCemError(f"{source}: predictions missing for {len(missing)} validation patches, e.g. {missing[:3]}")
    return np.asarray(pred)[[position[str(i)] for i in ref_ids]]


def build_ladder(
    truth: np.ndarray,
    widths: np.ndarray,
    wells: np.ndarray,
    rung_preds: Mapping[str, np.ndarray],
    val_wells: Sequence[int],
) -> dict:
    """The ladder.json structure: val_wells, order, rungs (challenge_iou with per_well), gains
    (each rung's overall IoU minus the one below it)."""
    unknown = set(rung_preds) - set(RUNG_ORDER)
    if unknown:
        raise EchoCemError(f"ladder: unknown rungs {sorted(unknown)}")
    order = [r for r in RUNG_ORDER if r in rung_preds]
    rungs = {r: challenge_iou(truth, rung_preds[r], widths, wells) for r in order}
    gains = {r: rungs[r]["iou"] - rungs[prev]["iou"] for prev, r in zip(order, order[1:]) if r in PARTS}
    return {"val_wells": [int(w) for w in val_wells], "order": order, "rungs": rungs, "gains": gains}


def best_rung(ladder: Mapping) -> str:
    """The rung with the highest overall IoU (first in ladder order on a tie)."""
    return max(ladder["order"], key=lambda r: (ladder["rungs"][r]["iou"], -ladder["order"].index(r)))


def best_and_worst(truth: np.ndarray, pred: np.ndarray, widths: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, indices of the k best patches, of the k worst), ties broken by index."""
    scores = patch_scores(truth, pred, widths)
    index = np.arange(len(scores))
    k = min(k, len(scores))
    best = np.lexsort((index, -scores))[:k]
    worst = np.lexsort((index, scores))[:k]
    return scores, best, worst


# ---------------------------------------------------------------- figures

def per_well_figure(ladder: Mapping):
    """Overall IoU of every rung, one group of bars per validation well."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = ladder["order"]
    wells = sorted(ladder["rungs"][order[0]].get("per_well", {}), key=lambda w: (len(w), w))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(wells) + 3), 4.2))
    x = np.arange(len(wells))
    width = 0.8 / max(1, len(order))
    for k, rung in enumerate(order):
        vals = [ladder["rungs"][rung]["per_well"][w]["iou"] for w in wells]
        ax.bar(x + (k - (len(order) - 1) / 2) * width, vals, width, label=RUNG_LABELS[rung])
    ax.set_xticks(x, [f"well {w}" for w in wells])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("challenge IoU")
    ax.set_title("Ladder per validation well")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return fig


def confusion_figure(cm: np.ndarray, rung: str):
    """Row-normalised confusion matrix (truth rows, predicted columns) with pixel counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(3):
        for j in range(3):
            ax.text(j, i, f"{rates[i, j]:.2f}\n({cm[i, j]:,} px)", ha="center", va="center",
                    color="white" if rates[i, j] > 0.6 else "black", fontsize=8)
    ax.set_xticks(range(3), CLASS_NAMES)
    ax.set_yticks(range(3), CLASS_NAMES)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Confusion matrix, {RUNG_LABELS.get(rung, rung)}\n(validation pixels, rows sum to 1)")
    fig.colorbar(im, ax=ax, label="fraction of the true class")
    return fig


def overlay_figure(
    images: np.ndarray,
    truth: np.ndarray,
    pred: np.ndarray,
    widths: np.ndarray,
    ids: Sequence[str],
    scores: np.ndarray,
    title: str,
):
    """One row per patch: image, truth, prediction (classes coloured over the image)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    colours = ListedColormap([(0, 0, 0, 0), (1.0, 0.55, 0.0, 0.55), (0.1, 0.8, 0.2, 0.55)])
    n = len(images)
    fig, axes = plt.subplots(n, 3, figsize=(11, 2.3 * n + 0.8), squeeze=False)
    for r in range(n):
        w = int(widths[r])
        img = images[r][:, :w].astype(np.float32)
        lim = float(np.percentile(np.abs(img), 99)) or 1.0
        for c, (mask, name) in enumerate(((None, "image"), (truth[r], "truth"), (pred[r], "prediction"))):
            ax = axes[r, c]
            ax.imshow(img, cmap="gray", vmin=-lim, vmax=lim, aspect="auto")
            if mask is not None:
                ax.imshow(np.clip(mask[:, :w], 0, 2), cmap=colours, vmin=0, vmax=2, aspect="auto", interpolation="nearest")
            ax.set_title(f"{ids[r]}  (IoU {scores[r]:.3f})" if c == 0 else name, fontsize=8)
            ax.set_xlabel("time sample (column)", fontsize=7)
            ax.set_ylabel("depth (row)", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.legend(handles=[Patch(color=colours(1), label="class 1 TIE"), Patch(color=colours(2), label="class 2 casing")],
               loc="upper right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
