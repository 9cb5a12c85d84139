"""Stage unet_fold@<k>: one out-of-fold U-Net (a dvc.yaml matrix over the folds: one job each).

Trains the first U-Net's architecture on the training wells outside fold k
(splits.json `oof_folds[k]`), selects its epoch on the validation wells (never
on the wells it predicts), and predicts fold k's wells: out-of-fold
probabilities, on which the post-processing U-Net trains (gathered by stage
unet_oof), and a model that joins the test-time ensemble. Writes the model, the
predictions (.npz: ids, pred, probs), the metrics and the training curves
(dvclive). Checkpoints: checkpoints/unet_fold/<fingerprint>/ (resumable).
"""
from __future__ import annotations

import argparse
import shutil

import numpy as np

from echocem.io import EchoCemError, save_json, save_npz
from echocem.runtime import derived_seed, stage_main
from echocem.seg.curves import save_curves
from echocem.seg.folds import oof_plan
from echocem.seg.network_stage import start_network_stage
from echocem.seg.loop import predict_dataset, score_probs
from echocem.seg.segmenter import train_segmenter
from echocem.seg.unet import labels_from_proba, save_model

STAGE = "unet_fold"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--fold", type=int, required=True, help="fold number k (splits.json oof_folds[k])")
    p.add_argument("--ingested", required=True, help="folder holding train.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json and splits.json")
    p.add_argument("--model", required=True, help="output: the fold's U-Net (.pt)")
    p.add_argument("--pred", required=True, help="output: its predictions of the fold's wells (.npz)")
    p.add_argument("--metrics", required=True, help="output: its out-of-fold IoU (.json)")
    p.add_argument("--plots", required=True, help="output folder: training curves (dvclive)")
    p.add_argument("--checkpoints", default="checkpoints", help="scratch folder for resumable checkpoints")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    net = start_network_stage(args, STAGE)
    net.seed = derived_seed(net.seed, "oof", args.fold)
    inputs, profile = net.inputs, net.profile
    data = inputs.data
    epochs = int(net.params["unet_oof"]["epochs"][net.params["unet"]["profile"]])
    plan = oof_plan(data["well"], inputs.splits["train_wells"], inputs.splits["oof_folds"])
    if not 0 <= args.fold < len(plan):
        raise EchoCemError(f"--fold {args.fold}: splits.json has {len(plan)} folds (0..{len(plan) - 1}); "
                           "params preprocess.oof_folds and the matrix of stage unet_fold must agree")
    fold = plan[args.fold]
    fp, ck_dir = net.checkpoint(args.checkpoints, STAGE, fold=fold.number, epochs=epochs)
    train = net.training_patches(fold.train_idx)
    trained = train_segmenter(net.on_device(train), net.on_device(net.patches(inputs.select_idx)), net.model_cfg,
                              profile, epochs, net.seed, net.device, ck_dir, fp,
                              desc=f"fold {fold.number} (wells {list(fold.wells)})")
    target = net.on_device(net.patches(fold.pred_idx))
    # float16, as stored: the scores are those of the file's labels
    probs = predict_dataset(trained.model, target, trained.accel, int(profile["train"]["eval_batch_size"]))
    probs = probs.astype(np.float16)
    scores = score_probs(probs, target)
    run = trained.fit
    metrics = {"fold": fold.number, "wells": list(fold.wells),
               "train_wells": sorted({int(w) for w in data["well"][fold.train_idx]}),
               "n_train_patches": int(len(fold.train_idx)),
               "n_border_windows": int(len(train["images"]) - len(fold.train_idx)),
               "n_predicted": int(len(fold.pred_idx)), "best_epoch": run.best_epoch, "epochs": epochs,
               "val_iou_at_best": run.best_scores["iou"], "precision": trained.accel.precision, "oof": scores}
    save_model(args.model, trained.model, net.model_cfg, {"stage": f"{STAGE}@{fold.number}",
                                                          "best_epoch": run.best_epoch,
                                                          "fold_wells": list(fold.wells), "seed": net.seed})
    save_npz(args.pred, ids=data["ids"][fold.pred_idx], pred=labels_from_proba(probs, data["widths"][fold.pred_idx]),
             probs=probs)
    save_json(args.metrics, metrics)
    save_curves(args.plots, run.history, {"best_epoch": run.best_epoch})
    shutil.rmtree(ck_dir, ignore_errors=True)
    print(f"unet_fold@{fold.number}: out-of-fold IoU {scores['iou']:.4f} on wells {list(fold.wells)} "
          f"({scores['n_patches']} patches), selected epoch {run.best_epoch}/{epochs}")


if __name__ == "__main__":
    main()
