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

from echocem.io import load_npz, save_json, save_npz
from echocem.patchgen.mixing import matched_epochs, mix_pairs
from echocem.runtime import derived_seed, stage_main
from echocem.seg.curves import save_curves
from echocem.seg.network_stage import start_network_stage
from echocem.seg.metric import challenge_iou
from echocem.seg.segmenter import train_segmenter
from echocem.seg.unet import labels_from_proba, predict_proba, save_model

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


def with_generated(real: dict, generated_path: str, mixing: dict, epochs: int, batch: int, seed: int
                   ) -> tuple[dict, int, int]:
    """(training arrays, epochs, number of generated pairs) once generated pairs are mixed in."""
    if float(mixing["ratio"]) <= 0:
        return real, epochs, 0
    mixed = mix_pairs(real, load_npz(generated_path), float(mixing["ratio"]),
                      np.random.default_rng(derived_seed(seed, "generated")))
    n = int(mixed["is_generated"].sum())
    if mixing["match_steps"]:  # as many optimiser steps as without them: a gain is not more training
        epochs = matched_epochs(epochs, len(real["images"]), len(mixed["images"]), batch)
    arrays = {**{k: mixed[k] for k in ("images", "masks", "widths")},
              "well": np.concatenate([real["well"], np.full(n, -1, dtype=real["well"].dtype)]),
              "ids": np.concatenate([real["ids"], np.asarray([f"generated_{k}" for k in range(n)])])}
    return arrays, epochs, n


@stage_main
def main() -> None:
    args = parse_args()
    net = start_network_stage(args, STAGE)
    inputs, profile, cfg = net.inputs, net.profile, net.model_cfg
    data, tr, va = inputs.data, inputs.train_idx, inputs.val_idx
    real = net.training_patches(tr)
    train_arrays, epochs, n_generated = with_generated(
        real, args.generated, net.params["generated_pairs"], int(profile["train"]["epochs"]),
        int(profile["train"]["batch_size"]), net.seed)
    fp, ck_dir = net.checkpoint(args.checkpoints, STAGE, epochs=epochs, generated=n_generated)
    # the epoch is chosen on the selection patches; every validation patch is predicted and scored below
    trained = train_segmenter(net.on_device(train_arrays), net.on_device(net.patches(inputs.select_idx)), cfg,
                              profile, epochs, net.seed, net.device, ck_dir, fp, desc="unet")

    probs = predict_proba(trained.model, data["images"][va], data["widths"][va], inputs.spec, net.device,
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
        "profile": net.params["unet"]["profile"],
        "encoder": cfg["encoder"],
        "parameters": int(sum(p.numel() for p in trained.model.parameters())),
        "device": net.device,
        "precision": trained.accel.precision,
        "train_wells": [int(w) for w in inputs.splits["train_wells"]],
        "val_wells": [int(w) for w in inputs.splits["val_wells"]],
        "n_train_patches": int(len(tr)),
        "n_selection_patches": int(len(inputs.select_idx)),
        "n_border_windows": int(len(real["images"]) - len(tr)),
        "n_generated_pairs": n_generated,
    }
    meta = {"stage": STAGE, "best_epoch": run.best_epoch, "val_iou": scores["iou"], "seed": net.seed,
            "train_wells": metrics["train_wells"], "val_wells": metrics["val_wells"]}

    save_model(args.model, trained.model, cfg, meta)
    save_npz(args.pred, ids=data["ids"][va], pred=pred, probs=probs)
    save_json(args.metrics, metrics)
    save_curves(args.plots, run.history, {"best_epoch": run.best_epoch},
                title=f"U-Net ({cfg['encoder']}), validation wells {metrics['val_wells']}")
    shutil.rmtree(ck_dir, ignore_errors=True)
    print(f"unet: validation IoU {scores['iou']:.4f} (class 1 {scores['iou_class1']:.4f}, class 2 "
          f"{scores['iou_class2']:.4f}) at epoch {run.best_epoch}/{epochs} on {scores['n_patches']} patches")


if __name__ == "__main__":
    main()
