"""Stage unet: train the first U-Net on the training wells, select it on the validation wells.

Writes the model file (weights + config), the validation predictions (.npz:
ids, pred int8 with -1 padding, probs float16), the metrics (challenge IoU per
class and per well at the selected epoch; no wall times) and the training
curves (TSV files and a PNG, DVC plots). Checkpoints go to the scratch folder
checkpoints/unet/<fingerprint>/ (not an output): an interrupted run resumes
from its last finished epoch; the folder is removed once the outputs are written.
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from echocem.data.preprocess import load_labelled, load_normalization, load_splits, split_indices
from echocem.io import EchoCemError, atomic_path, save_figure, save_json, save_npz
from echocem.runtime import resolve_device, stage_main, start_stage
from echocem.seg.metric import challenge_iou
from echocem.seg.train import (active_profile, curves_figure, curves_tables, fingerprint, normalised_images,
                               train_segmenter)
from echocem.seg.unet import labels_from_proba, model_config, predict_proba, save_model

STAGE = "unet"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding train.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json and splits.json")
    p.add_argument("--model", required=True, help="output: trained U-Net (.pt)")
    p.add_argument("--pred", required=True, help="output: validation predictions (.npz: ids, pred, probs)")
    p.add_argument("--metrics", required=True, help="output: challenge IoU on the validation wells (.json)")
    p.add_argument("--plots", required=True, help="output folder: training curves (TSV + PNG)")
    p.add_argument("--checkpoints", default="checkpoints", help="scratch folder for resumable checkpoints")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    # progress lines with wall times go to the log (stderr), never to an output
    params = start_stage(args.params, STAGE)
    seed = int(params["seed"])
    device = resolve_device(params["execution"]["device"])
    profile = active_profile(params["unet"], "unet")
    cfg = model_config(profile["model"], in_channels=1)
    epochs = int(profile["train"]["epochs"])

    train_path = Path(args.ingested) / "train.npz"
    norm_path, splits_path = Path(args.prepared) / "normalization.json", Path(args.prepared) / "splits.json"
    data = load_labelled(train_path)
    spec = load_normalization(norm_path)
    splits = load_splits(splits_path)
    tr = split_indices(data["well"], splits["train_wells"])
    va = split_indices(data["well"], splits["val_wells"])
    if len(tr) == 0 or len(va) == 0:
        raise EchoCemError(f"{train_path}: no patches of the training wells {splits['train_wells']} "
                           f"or of the validation wells {splits['val_wells']}")

    fp = fingerprint({"stage": STAGE, "seed": seed, "profile": profile, "device": device},
                     [train_path, norm_path, splits_path])
    ck_dir = Path(args.checkpoints) / STAGE / fp
    x = normalised_images(data["images"], data["widths"], spec, device)
    trained = train_segmenter(x, data["masks"], data["widths"], data["well"], tr, va, cfg, profile, epochs,
                              seed, device, ck_dir, fp, desc="unet")
    del x

    probs = predict_proba(trained.model, data["images"][va], data["widths"][va], spec, device,
                          int(profile["train"]["eval_batch_size"]))
    # stored as float16: labels from the stored values, so pred == argmax(probs) in the file
    probs = probs.astype(np.float16)
    pred = labels_from_proba(probs, data["widths"][va])
    scores = challenge_iou(data["masks"][va], pred, data["widths"][va], data["well"][va])
    run = trained.fit
    metrics = {
        **scores,
        "best_epoch": run.best_epoch,
        "epochs": epochs,
        "profile": params["unet"]["profile"],
        "encoder": cfg["encoder"],
        "parameters": int(sum(p.numel() for p in trained.model.parameters())),
        "device": device,
        "train_wells": [int(w) for w in splits["train_wells"]],
        "val_wells": [int(w) for w in splits["val_wells"]],
        "n_train_patches": int(len(tr)),
    }
    meta = {"stage": STAGE, "best_epoch": run.best_epoch, "val_iou": scores["iou"], "seed": seed,
            "train_wells": metrics["train_wells"], "val_wells": metrics["val_wells"]}

    save_model(args.model, trained.model, cfg, meta)
    save_npz(args.pred, ids=data["ids"][va], pred=pred, probs=probs)
    save_json(args.metrics, metrics)
    with atomic_path(args.plots, is_dir=True) as tmp:
        tmp.chmod(0o755)  # a temporary folder is private; the plots are not
        for name, text in curves_tables(run.history).items():
            (tmp / name).write_text(text)
        save_figure(tmp / "curves.png", curves_figure(
            run.history, f"U-Net ({cfg['encoder']}), validation wells {metrics['val_wells']}", run.best_epoch))
    shutil.rmtree(ck_dir, ignore_errors=True)
    print(f"unet: validation IoU {scores['iou']:.4f} (class 1 {scores['iou_class1']:.4f}, class 2 "
          f"{scores['iou_class2']:.4f}) at epoch {run.best_epoch}/{epochs} on {scores['n_patches']} patches")


if __name__ == "__main__":
    main()
