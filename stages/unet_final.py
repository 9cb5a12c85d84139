"""Stage unet_final: the first U-Net refit on every labelled well, for the submission.

The validation wells choose the U-Net's epoch count (stage unet, its selected
epoch) and are then lost to training; this stage trains the same network, with
the same seed and settings, on every labelled well (training and validation;
a validation well larger than the largest training well gives as many patches as
that one, whole sections: echocem.data.preprocess.refit_indices) for as many
optimizer steps as the selected run took (its epochs scaled by the
ratio of training samples: echocem.seg.segmenter.refit_epochs), and keeps the
last epoch: nothing is left to select on.
Its gain cannot be scored on wells it trained on; the ladder (stage evaluate)
measures the gain of one more training well instead (the main U-Net against the
out-of-fold ones, each trained without one well). params submission.refit
decides whether the submission uses it. Writes the model, the metrics and the
training curves (dvclive).
"""
from __future__ import annotations

import argparse
import shutil

import numpy as np

from echocem.data.preprocess import refit_indices
from echocem.io import save_json
from echocem.runtime import stage_main
from echocem.seg.curves import save_curves
from echocem.seg.network_stage import start_network_stage
from echocem.seg.segmenter import refit_epochs, train_segmenter
from echocem.seg.unet import load_model, save_model

STAGE = "unet_final"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding train.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json and splits.json")
    p.add_argument("--selected", required=True, help="the U-Net selected on the validation wells (its epoch count)")
    p.add_argument("--model", required=True, help="output: the refit U-Net (.pt)")
    p.add_argument("--metrics", required=True, help="output: what it was trained on and for how long (.json)")
    p.add_argument("--plots", required=True, help="output folder: training curves (dvclive)")
    p.add_argument("--checkpoints", default="checkpoints", help="scratch folder for resumable checkpoints")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    net = start_network_stage(args, STAGE)
    _, selected = load_model(args.selected)
    selected_epochs = max(1, int(selected["best_epoch"]))
    inputs = net.inputs
    every = refit_indices(inputs.data["well"], inputs.data["section"], inputs.train_idx, inputs.val_idx)
    train = net.training_patches(every)
    n_selected = len(net.training_patches(inputs.train_idx)["images"])
    epochs = refit_epochs(selected_epochs, n_selected, len(train["images"]))
    fp, ck_dir = net.checkpoint(args.checkpoints, STAGE, epochs=epochs)
    trained = train_segmenter(net.on_device(train), None, net.model_cfg, net.profile, epochs, net.seed, net.device,
                              ck_dir, fp, desc="unet_final")
    well_ids, counts = np.unique(inputs.data["well"][every], return_counts=True)
    wells = [int(w) for w in well_ids]
    per_well = {str(w): int(c) for w, c in zip(wells, counts)}
    metrics = {"epochs": epochs, "selected_epochs": selected_epochs, "selected_samples": n_selected,
               "epochs_from": "the steps of the epoch the validation wells selected for stage unet",
               "wells": wells, "n_patches": int(len(every)), "patches_per_well": per_well,
               "n_labelled_patches": int(len(inputs.train_idx) + len(inputs.val_idx)),
               "n_border_windows": int(len(train["images"]) - len(every)),
               "profile": net.params["unet"]["profile"], "encoder": net.model_cfg["encoder"], "device": net.device,
               "precision": trained.accel.precision}
    save_model(args.model, trained.model, net.model_cfg, {"stage": STAGE, "best_epoch": epochs, "wells": wells,
                                                          "seed": net.seed})
    save_json(args.metrics, metrics)
    save_curves(args.plots, trained.fit.history, {"epochs": epochs})
    shutil.rmtree(ck_dir, ignore_errors=True)
    print(f"unet_final: refit on wells {wells} ({len(every)} patches) for {epochs} epochs "
          f"(the selected {selected_epochs} epochs' steps on {n_selected} training samples)")


if __name__ == "__main__":
    main()
