"""Stage unet_oof: the out-of-fold predictions of every training patch, gathered.

Each unet_fold@<k> job predicted its fold's wells with a model that never saw
them; this stage puts the folds together (every training patch exactly once,
in the ingested order) for the post-processing U-Net, and scores them. Writes
the predictions (.npz: ids, pred, probs) and the metrics (overall and per fold).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from echocem.io import EchoCemError, load_json, load_npz, save_json, save_npz
from echocem.runtime import stage_main, start_stage
from echocem.seg.inputs import load_labelled_inputs
from echocem.seg.metric import challenge_iou
from echocem.seg.postproc import align_ids

STAGE = "unet_oof"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding train.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json and splits.json")
    p.add_argument("--folds", required=True, help="folder of the fold predictions (fold_<k>.npz)")
    p.add_argument("--fold-metrics", required=True, help="folder of the fold metrics (fold_<k>.json)")
    p.add_argument("--pred", required=True, help="output: out-of-fold predictions (.npz: ids, pred, probs)")
    p.add_argument("--metrics", required=True, help="output: out-of-fold IoU, overall and per fold (.json)")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    start_stage(args.params, STAGE)
    inputs = load_labelled_inputs(args.ingested, args.prepared)
    data = inputs.data
    n_folds = len(inputs.splits["oof_folds"])
    files = [Path(args.folds) / f"fold_{k}.npz" for k in range(n_folds)]
    parts = [load_npz(f) for f in files]
    idx = np.concatenate([align_ids(data["ids"], part["ids"], str(f)) for part, f in zip(parts, files)])
    if sorted(idx.tolist()) != inputs.train_idx.tolist():
        raise EchoCemError(f"{args.folds}: the folds do not cover the training wells "
                           f"{inputs.splits['train_wells']} exactly once")
    order = np.argsort(idx, kind="stable")
    idx = idx[order]
    probs = np.concatenate([p["probs"] for p in parts])[order]
    pred = np.concatenate([p["pred"] for p in parts])[order]
    overall = challenge_iou(data["masks"][idx], pred, data["widths"][idx], data["well"][idx])
    folds = [load_json(Path(args.fold_metrics) / f"fold_{k}.json") for k in range(n_folds)]
    save_npz(args.pred, ids=data["ids"][idx], pred=pred, probs=probs)
    save_json(args.metrics, {**overall, "folds": folds})
    per_fold = ", ".join(f"fold {f['fold']} {f['oof']['iou']:.3f}" for f in folds)
    print(f"unet_oof: out-of-fold IoU {overall['iou']:.4f} on {overall['n_patches']} patches ({per_fold})")


if __name__ == "__main__":
    main()
