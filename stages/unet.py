"""Stage unet: train the first U-Net on the training wells, select it on the validation wells.

Trains on the training wells' patches and on windows across the borders between
depth-adjacent patches (section context, params unet context.border_windows), and
on generated pairs (stage gen_patches) when params generated_pairs.ratio > 0.
Writes the model file (weights + config), the validation predictions (.npz:
ids, pred int8 with -1 padding, probs float16), the metrics (challenge IoU per
class and per well at the selected epoch; no wall times) and the training
curves (dvclive files and a PNG, DVC plots). Checkpoints go to the scratch folder
checkpoints/unet/<fingerprint>/ (not an output): an interrupted run resumes
from its last finished epoch; the folder is removed once the outputs are written.
"""
from __future__ import annotations

import argparse
import shutil

import numpy as np

from echocem.io import atomic_path, load_npz, save_figure, save_json, save_npz
from echocem.runtime import derived_seed, resolve_device, stage_main, start_stage
from echocem.seg.context import take, with_border_windows
from echocem.seg.curves import curves_figure, write_curves
from echocem.seg.dataset import labelled_set
from echocem.seg.inputs import checkpoint_folder, load_labelled_inputs
from echocem.seg.metric import challenge_iou
from echocem.params import active_profile
from echocem.patchgen.mixing import matched_epochs, mix_pairs
from echocem.seg.segmenter import train_segmenter
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
    p.add_argument("--plots", required=True, help="output folder: training curves (dvclive + PNG)")
    p.add_argument("--generated", required=True, help="generated pairs (.npz, stage gen_patches), mixed in at "
                                                      "params generated_pairs.ratio (0: not read)")
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

    inputs = load_labelled_inputs(args.ingested, args.prepared)
    data, tr, va = inputs.data, inputs.train_idx, inputs.val_idx
    fp, ck_dir = checkpoint_folder(args.checkpoints, STAGE, {"seed": seed, "profile": profile, "device": device},
                                   inputs.files)
    rng = np.random.default_rng(derived_seed(seed, "windows"))
    real = with_border_windows(take(data, tr), profile["context"]["border_windows"], rng)
    mixing = params["generated_pairs"]
    n_generated = 0
    if float(mixing["ratio"]) > 0:
        mixed = mix_pairs(real, load_npz(args.generated), float(mixing["ratio"]), np.random.default_rng(
            derived_seed(seed, "generated")))
        n_generated = int(mixed["is_generated"].sum())
        if mixing["match_steps"]:  # as many optimiser steps as without them: a gain is not more training
            epochs = matched_epochs(epochs, len(real["images"]), len(mixed["images"]),
                                    int(profile["train"]["batch_size"]))
        real = {**{k: mixed[k] for k in ("images", "masks", "widths")},
                "well": np.concatenate([real["well"], np.full(n_generated, -1, dtype=real["well"].dtype)]),
                "ids": np.concatenate([real["ids"], np.asarray([f"generated_{k}" for k in range(n_generated)])])}
    train = labelled_set(real, inputs.spec, device)
    trained = train_segmenter(train, labelled_set(take(data, va), inputs.spec, device), cfg, profile, epochs, seed,
                              device, ck_dir, fp, desc="unet")
    n_windows = len(train) - len(tr)
    del train

    probs = predict_proba(trained.model, data["images"][va], data["widths"][va], inputs.spec, device,
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
        "train_wells": [int(w) for w in inputs.splits["train_wells"]],
        "val_wells": [int(w) for w in inputs.splits["val_wells"]],
        "n_train_patches": int(len(tr)),
        "n_border_windows": int(n_windows - n_generated),
        "n_generated_pairs": n_generated,
    }
    meta = {"stage": STAGE, "best_epoch": run.best_epoch, "val_iou": scores["iou"], "seed": seed,
            "train_wells": metrics["train_wells"], "val_wells": metrics["val_wells"]}

    save_model(args.model, trained.model, cfg, meta)
    save_npz(args.pred, ids=data["ids"][va], pred=pred, probs=probs)
    save_json(args.metrics, metrics)
    with atomic_path(args.plots, is_dir=True) as tmp:
        write_curves(tmp, run.history, {"best_epoch": run.best_epoch})
        save_figure(tmp / "curves.png", curves_figure(
            run.history, f"U-Net ({cfg['encoder']}), validation wells {metrics['val_wells']}", run.best_epoch))
    shutil.rmtree(ck_dir, ignore_errors=True)
    print(f"unet: validation IoU {scores['iou']:.4f} (class 1 {scores['iou_class1']:.4f}, class 2 "
          f"{scores['iou_class2']:.4f}) at epoch {run.best_epoch}/{epochs} on {scores['n_patches']} patches")


if __name__ == "__main__":
    main()
