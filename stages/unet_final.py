"""Stage unet_final: the first U-Net refit on every labelled well, for the submission.

The validation wells choose the U-Net's epoch count (stage unet, its selected
epoch) and are then lost to training; this stage trains the same network, with
the same seed and settings, on every labelled well (training and validation)
for that many epochs, and keeps the last epoch: nothing is left to select on.
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

from echocem.io import atomic_path, save_json
from echocem.runtime import derived_seed, resolve_device, stage_main, start_stage
from echocem.seg.context import take, with_border_windows
from echocem.seg.curves import write_curves
from echocem.seg.dataset import labelled_set
from echocem.seg.inputs import checkpoint_folder, load_labelled_inputs
from echocem.params import active_profile
from echocem.seg.segmenter import train_segmenter
from echocem.seg.unet import load_model, model_config, save_model

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
    params = start_stage(args.params, STAGE)
    seed = int(params["seed"])
    device = resolve_device(params["execution"]["device"])
    profile = active_profile(params["unet"], "unet")
    cfg = model_config(profile["model"], in_channels=1)
    _, selected = load_model(args.selected)
    epochs = max(1, int(selected["best_epoch"]))

    inputs = load_labelled_inputs(args.ingested, args.prepared)
    every = np.sort(np.concatenate([inputs.train_idx, inputs.val_idx]))
    fp, ck_dir = checkpoint_folder(args.checkpoints, STAGE, {"seed": seed, "profile": profile, "device": device,
                                                             "epochs": epochs}, inputs.files)
    rng = np.random.default_rng(derived_seed(seed, "windows"))
    train = labelled_set(with_border_windows(take(inputs.data, every), profile["context"]["border_windows"], rng),
                         inputs.spec, device)
    trained = train_segmenter(train, None, cfg, profile, epochs, seed, device, ck_dir, fp, desc="unet_final")
    wells = sorted(int(w) for w in np.unique(inputs.data["well"][every]))
    metrics = {"epochs": epochs, "epochs_from": "the epoch the validation wells selected for stage unet",
               "wells": wells, "n_patches": int(len(every)), "n_border_windows": int(len(train) - len(every)),
               "profile": params["unet"]["profile"], "encoder": cfg["encoder"], "device": device}
    save_model(args.model, trained.model, cfg, {"stage": STAGE, "best_epoch": epochs, "wells": wells, "seed": seed})
    save_json(args.metrics, metrics)
    with atomic_path(args.plots, is_dir=True) as tmp:
        write_curves(tmp, trained.fit.history, {"epochs": epochs})
    shutil.rmtree(ck_dir, ignore_errors=True)
    print(f"unet_final: refit on wells {wells} ({len(every)} patches) for {epochs} epochs")


if __name__ == "__main__":
    main()
