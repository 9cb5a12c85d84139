"""Stage evaluate: the ladder of every model on the validation wells, with figures.

Rungs: all background, Random Forest, U-Net, U-Net + rules, U-Net + post-processing
U-Net, and the latter + rules. Writes one metrics file (ladder.json) and a figure
folder: the ladder per class, the ladder per well, the confusion matrix of the
best rung, and overlays of its best and worst validation patches.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from echocem.data.preprocess import load_splits, split_indices
from echocem.io import EchoCemError, atomic_path, load_npz, save_figure, save_json
from echocem.params import load_params
from echocem.runtime import configure_threads, stage_main, thread_count
from echocem.seg.ladder import (
    RUNG_LABELS,
    align_predictions,
    best_and_worst,
    best_rung,
    build_ladder,
    confusion_figure,
    ladder_figure,
    overlay_figure,
    per_well_figure,
)
from echocem.seg.metric import confusion_matrix
from echocem.seg.rules import apply_rules

STAGE = "evaluate"
N_OVERLAY = 3  # best and worst patches shown


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding train.npz (truth of the validation wells)")
    p.add_argument("--prepared", required=True, help="folder holding splits.json")
    p.add_argument("--rf", required=True, help="Random Forest validation predictions (.npz)")
    p.add_argument("--unet", required=True, help="U-Net validation predictions (.npz)")
    p.add_argument("--postproc", required=True, help="post-processing U-Net validation predictions (.npz)")
    p.add_argument("--metrics", required=True, help="output: ladder.json")
    p.add_argument("--figures", required=True, help="output folder of the ladder figures")
    return p.parse_args()


def load_pred(path: str, ref_ids: np.ndarray) -> np.ndarray:
    arrays = load_npz(path)
    for key in ("ids", "pred"):
        if key not in arrays:
            raise EchoCemError(f"{path}: array {key!r} missing")
    return align_predictions(ref_ids, arrays["ids"], arrays["pred"], path)


@stage_main
def main() -> None:
    args = parse_args()
    params = load_params(args.params)
    threads = params["execution"]["threads"]
    configure_threads(thread_count(threads.get(STAGE, threads["default"])))

    train_path = Path(args.ingested) / "train.npz"
    data = load_npz(train_path)
    for key in ("images", "masks", "widths", "ids", "well"):
        if key not in data:
            raise EchoCemError(f"{train_path}: array {key!r} missing")
    splits = load_splits(Path(args.prepared) / "splits.json")
    va = split_indices(data["well"], splits["val_wells"])
    if len(va) == 0:
        raise EchoCemError(f"{train_path}: no patches of the validation wells {splits['val_wells']}")
    ids, truth, widths, wells = data["ids"][va], data["masks"][va], data["widths"][va], data["well"][va]

    unet = load_pred(args.unet, ids)
    postproc = load_pred(args.postproc, ids)
    rules = params["rules"]
    preds = {
        "all_background": np.where(truth >= 0, 0, -1).astype(np.int8),
        "rf": load_pred(args.rf, ids),
        "unet": unet,
        "unet_rules": apply_rules(unet, widths, rules),
        "unet_postproc": postproc,
        "unet_postproc_rules": apply_rules(postproc, widths, rules),
    }
    ladder = build_ladder(truth, widths, wells, preds, splits["val_wells"])

    best = best_rung(ladder)
    scores, best_idx, worst_idx = best_and_worst(truth, preds[best], widths, N_OVERLAY)
    with atomic_path(args.figures, is_dir=True) as folder:
        save_figure(folder / "ladder.png", ladder_figure(ladder))
        save_figure(folder / "ladder_per_well.png", per_well_figure(ladder))
        save_figure(folder / "confusion_best.png", confusion_figure(confusion_matrix(truth, preds[best], widths), best))
        for name, idx in (("best", best_idx), ("worst", worst_idx)):
            fig = overlay_figure(data["images"][va][idx], truth[idx], preds[best][idx], widths[idx], ids[idx],
                                 scores[idx], f"{name.capitalize()} validation patches, {RUNG_LABELS[best]}")
            save_figure(folder / f"{name}_patches.png", fig)
    save_json(args.metrics, ladder)
    for rung in ladder["order"]:
        r = ladder["rungs"][rung]
        print(f"{rung:<22} IoU {r['iou']:.4f}  class 1 {r['iou_class1']:.4f}  class 2 {r['iou_class2']:.4f}")


if __name__ == "__main__":
    main()
