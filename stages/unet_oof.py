"""Stage unet_oof: out-of-fold U-Net probabilities of every training patch.

For each fold of splits.json `oof_folds` (a partition of the training wells),
a U-Net is trained on the other training wells, selected on the validation
wells, and predicts the fold's wells. The post-processing U-Net trains on these
predictions, which no model made for its own training patches.
Writes the predictions (.npz: ids, pred, probs, covering all training wells)
and the metrics (out-of-fold IoU per fold and overall; no wall times).
Checkpoints: checkpoints/unet_oof/<fingerprint>/fold_<k>/ (resumable, removed at the end).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path


from echocem.data.preprocess import load_labelled, load_normalization, load_splits, split_indices
from echocem.io import EchoCemError, save_json, save_npz
from echocem.runtime import resolve_device, stage_main, start_stage
from echocem.seg.metric import challenge_iou
from echocem.seg.train import active_profile, fingerprint, normalised_images, oof_plan, out_of_fold
from echocem.seg.unet import labels_from_proba, model_config

STAGE = "unet_oof"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding train.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json and splits.json")
    p.add_argument("--pred", required=True, help="output: out-of-fold predictions (.npz: ids, pred, probs)")
    p.add_argument("--metrics", required=True, help="output: out-of-fold IoU per fold (.json)")
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
    epochs = int(params["unet_oof"]["epochs"][params["unet"]["profile"]])

    train_path = Path(args.ingested) / "train.npz"
    norm_path, splits_path = Path(args.prepared) / "normalization.json", Path(args.prepared) / "splits.json"
    data = load_labelled(train_path)
    spec = load_normalization(norm_path)
    splits = load_splits(splits_path)
    plan = oof_plan(data["well"], splits["train_wells"], splits["oof_folds"])
    va = split_indices(data["well"], splits["val_wells"])
    if len(va) == 0:
        raise EchoCemError(f"{train_path}: no patches of the validation wells {splits['val_wells']}")

    fp = fingerprint({"stage": STAGE, "seed": seed, "profile": profile, "device": device},
                     [train_path, norm_path, splits_path])
    ck_root = Path(args.checkpoints) / STAGE / fp
    x = normalised_images(data["images"], data["widths"], spec, device)
    result = out_of_fold(x, data["masks"], data["widths"], data["well"], plan, va, cfg, profile, epochs, seed,
                         device, ck_root, fp)
    del x

    idx = result.idx
    probs = result.probs  # float16, as stored: labels from the stored values
    pred = labels_from_proba(probs, data["widths"][idx])
    overall = challenge_iou(data["masks"][idx], pred, data["widths"][idx], data["well"][idx])
    metrics = {
        **overall,
        "epochs": epochs,
        "profile": params["unet"]["profile"],
        "encoder": cfg["encoder"],
        "device": device,
        "folds": [{k: v for k, v in f.items() if k != "history"} for f in result.folds],
    }
    save_npz(args.pred, ids=data["ids"][idx], pred=pred, probs=probs)
    save_json(args.metrics, metrics)
    shutil.rmtree(ck_root, ignore_errors=True)
    per_fold = ", ".join(f"fold {f['fold']} {f['oof']['iou']:.3f}" for f in result.folds)
    print(f"unet_oof: out-of-fold IoU {overall['iou']:.4f} on {overall['n_patches']} patches ({per_fold})")


if __name__ == "__main__":
    main()
