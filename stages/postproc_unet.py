"""Stage postproc_unet: a second U-Net refining the first one's class probabilities.

Trained on the out-of-fold probabilities of the training wells (unet_oof), so
it never learns from predictions on the first model's own training patches;
selected and evaluated on the validation wells with the first model's
validation probabilities (unet). The untrained refiner is the identity and is
a selection candidate (epoch 0), so the refined IoU on the validation wells is
never below the U-Net's. Writes the refiner (.pt), the refined validation
predictions (.npz: ids, pred, probs) and the metrics (U-Net alone vs refined).
Checkpoints: checkpoints/postproc_unet/<fingerprint>/ (resumable, removed at the end).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from echocem.io import EchoCemError, atomic_path, load_npz, save_json, save_npz
from echocem.runtime import resolve_device, stage_main, start_stage
from echocem.seg.curves import write_curves
from echocem.seg.dataset import labelled_set
from echocem.seg.inputs import checkpoint_folder, load_labelled_inputs
from echocem.seg.metric import challenge_iou
from echocem.seg.postproc import align_ids, refine_proba, save_refiner
from echocem.seg.refiner_training import train_refiner
from echocem.params import active_profile
from echocem.seg.unet import labels_from_proba

STAGE = "postproc_unet"
PRED_KEYS = ("ids", "pred", "probs")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding train.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json and splits.json")
    p.add_argument("--oof", required=True, help="out-of-fold U-Net predictions of the training wells (.npz)")
    p.add_argument("--val", required=True, help="U-Net predictions of the validation wells (.npz)")
    p.add_argument("--model", required=True, help="output: trained refiner (.pt)")
    p.add_argument("--pred", required=True, help="output: refined validation predictions (.npz)")
    p.add_argument("--metrics", required=True, help="output: U-Net alone vs refined IoU (.json)")
    p.add_argument("--plots", required=True, help="output folder: training curves (dvclive)")
    p.add_argument("--checkpoints", default="checkpoints", help="scratch folder for resumable checkpoints")
    return p.parse_args()


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    pred = load_npz(path)
    missing = [k for k in PRED_KEYS if k not in pred]
    if missing:
        raise EchoCemError(f"{path}: arrays {missing} missing (expected ids, pred, probs)")
    return pred


@stage_main
def main() -> None:
    args = parse_args()
    # progress lines with wall times go to the log (stderr), never to an output
    params = start_stage(args.params, STAGE)
    seed = int(params["seed"])
    device = resolve_device(params["execution"]["device"])
    profile = active_profile(params["postproc"], "postproc")

    inputs = load_labelled_inputs(args.ingested, args.prepared)
    data, spec, splits = inputs.data, inputs.spec, inputs.splits
    oof, val = load_predictions(Path(args.oof)), load_predictions(Path(args.val))
    tr = align_ids(data["ids"], oof["ids"], args.oof)
    va = align_ids(data["ids"], val["ids"], args.val)
    if sorted(tr.tolist()) != inputs.train_idx.tolist():
        raise EchoCemError(f"{args.oof}: does not cover exactly the training wells {splits['train_wells']}")
    if sorted(va.tolist()) != inputs.val_idx.tolist():
        raise EchoCemError(f"{args.val}: does not cover exactly the validation wells {splits['val_wells']}")
    fp, ck_dir = checkpoint_folder(args.checkpoints, STAGE, {"seed": seed, "profile": profile, "device": device},
                                   (*inputs.files, args.oof, args.val))
    patches = labelled_set(data, spec, device)
    # chosen (identity included) on the selection patches; every validation patch is refined and scored below
    chosen = np.flatnonzero(np.isin(va, inputs.select_idx))
    cfg, trained = train_refiner(patches.subset(tr), oof["probs"], patches.subset(va[chosen]), val["probs"][chosen],
                                 profile, seed, device, ck_dir, fp)
    del patches
    val_probs = val["probs"].astype(np.float32)
    refined = refine_proba(trained.model, val_probs, data["images"][va], data["widths"][va], spec, device,
                           int(profile["train"]["eval_batch_size"]))
    pred = labels_from_proba(refined, data["widths"][va])
    truth, widths, wells = data["masks"][va], data["widths"][va], data["well"][va]
    alone = challenge_iou(truth, val["pred"], widths, wells)
    after = challenge_iou(truth, pred, widths, wells)
    run = trained.fit
    metrics = {
        "unet": alone,
        "refined": after,
        "gain": {k: after[k] - alone[k] for k in ("iou", "iou_class1", "iou_class2")},
        "best_epoch": run.best_epoch,
        "identity_selected": run.best_epoch == 0,
        "epochs": int(profile["train"]["epochs"]),
        "profile": params["postproc"]["profile"],
        "encoder": cfg["encoder"],
        "device": device,
        "precision": trained.accel.precision,
        "n_train_patches": int(len(tr)),
    }
    meta = {"stage": STAGE, "best_epoch": run.best_epoch, "val_iou": after["iou"], "seed": seed}
    save_refiner(args.model, trained.model, cfg, meta)
    save_npz(args.pred, ids=data["ids"][va], pred=pred, probs=refined.astype(np.float16))
    save_json(args.metrics, metrics)
    with atomic_path(args.plots, is_dir=True) as tmp:
        write_curves(tmp, run.history, {"best_epoch": run.best_epoch})
    shutil.rmtree(ck_dir, ignore_errors=True)
    print(f"postproc_unet: validation IoU {alone['iou']:.4f} (U-Net) -> {after['iou']:.4f} (refined, "
          f"epoch {run.best_epoch}/{metrics['epochs']})")


if __name__ == "__main__":
    main()
