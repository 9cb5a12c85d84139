"""Stage rf_baseline: Random Forest on per-pixel physical features.

Trains on a class-balanced pixel subsample of the training wells, predicts the
full masks of the validation wells, scores them with the challenge IoU.
Writes the model (joblib), the predictions (.npz: ids, pred) and metrics.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import numpy as np

from echocem.data.preprocess import load_labelled, load_normalization, load_splits, normalize, split_indices
from echocem.io import EchoCemError, atomic_path, save_json, save_npz
from echocem.runtime import stage_main, stage_threads, start_stage
from echocem.seg.metric import challenge_iou
from echocem.seg.rf import feature_importances, predict_masks, train_rf, training_set

STAGE = "rf_baseline"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding train.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json and splits.json")
    p.add_argument("--model", required=True, help="output: fitted forest (.joblib)")
    p.add_argument("--pred", required=True, help="output: validation predictions (.npz: ids, pred)")
    p.add_argument("--metrics", required=True, help="output: challenge IoU on the validation wells (.json)")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    params = start_stage(args.params, STAGE)
    cfg = params["rf"]
    rng = np.random.default_rng(int(params["seed"]))
    n_jobs = stage_threads(params, STAGE)

    train_path = Path(args.ingested) / "train.npz"
    data = load_labelled(train_path)
    spec = load_normalization(Path(args.prepared) / "normalization.json")
    splits = load_splits(Path(args.prepared) / "splits.json")
    tr = split_indices(data["well"], splits["train_wells"])
    va = split_indices(data["well"], splits["val_wells"])
    if len(tr) == 0 or len(va) == 0:
        raise EchoCemError(f"{train_path}: no patches of the training wells {splits['train_wells']} "
                           f"or of the validation wells {splits['val_wells']}")

    def prepare(images: np.ndarray, widths: np.ndarray) -> np.ndarray:
        return normalize(images, widths, spec)

    X, y = training_set(data["images"][tr], data["masks"][tr], data["widths"][tr], cfg, rng, prepare)
    model = train_rf(X, y, cfg, seed=params["seed"], n_jobs=n_jobs)
    pred = predict_masks(model, data["images"][va], data["widths"][va], cfg, prepare, n_jobs=n_jobs)

    metrics = challenge_iou(data["masks"][va], pred, data["widths"][va], data["well"][va])
    metrics.update(
        val_wells=[int(w) for w in splits["val_wells"]],
        train_wells=[int(w) for w in splits["train_wells"]],
        n_train_pixels=int(len(y)),
        train_pixels_per_class=np.bincount(y, minlength=3).tolist(),
        feature_importances=feature_importances(model),
    )
    with atomic_path(args.model) as tmp:
        joblib.dump(model, tmp, compress=3)
    save_npz(args.pred, ids=data["ids"][va], pred=pred)
    save_json(args.metrics, metrics)
    print(f"rf: validation IoU {metrics['iou']:.4f} (class 1 {metrics['iou_class1']:.4f}, "
          f"class 2 {metrics['iou_class2']:.4f}) on {metrics['n_patches']} patches")


if __name__ == "__main__":
    main()
