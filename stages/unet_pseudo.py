"""Stage unet_pseudo@<k>: a U-Net trained with pseudo-labels (self-training), out of fold.

Student k trains on the training wells (and their border windows, as stage unet)
plus the pseudo-labelled patches (stage pseudo_labels) of the unlabelled wells
and of the test wells outside test fold k; its epoch is selected on the
validation wells, which never receive pseudo-labels. It predicts test fold k in
the submission: no network learns a label of a patch it is scored on, and the
plan is checked before training (echocem.seg.pseudo.check_plan). Writes the
model, its validation predictions (.npz: ids, pred, probs), the metrics and the
training curves (dvclive).
"""
from __future__ import annotations

import argparse
import shutil

import numpy as np

from echocem.io import EchoCemError, load_json, load_npz, save_json, save_npz
from echocem.runtime import derived_seed, stage_main
from echocem.seg.curves import save_curves
from echocem.seg.network_stage import start_network_stage
from echocem.seg.metric import challenge_iou
from echocem.seg.pseudo import PseudoLabels, assign, check_plan, student
from echocem.seg.segmenter import train_segmenter
from echocem.seg.unet import labels_from_proba, predict_proba, save_model

STAGE = "unet_pseudo"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--fold", type=int, required=True, help="test fold k this student predicts")
    p.add_argument("--ingested", required=True, help="folder holding train.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json and splits.json")
    p.add_argument("--pseudo", required=True, help="pseudo-labelled patches (.npz, stage pseudo_labels)")
    p.add_argument("--pseudo-metrics", required=True, help="its record (.json: the test folds)")
    p.add_argument("--model", required=True, help="output: the student (.pt)")
    p.add_argument("--pred", required=True, help="output: its validation predictions (.npz)")
    p.add_argument("--metrics", required=True, help="output: its validation IoU and what it learned (.json)")
    p.add_argument("--plots", required=True, help="output folder: training curves (dvclive)")
    p.add_argument("--checkpoints", default="checkpoints", help="scratch folder for resumable checkpoints")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    net = start_network_stage(args, STAGE)
    net.seed = derived_seed(net.seed, "pseudo", args.fold)
    inputs, profile = net.inputs, net.profile
    data, tr, va = inputs.data, inputs.train_idx, inputs.val_idx
    epochs = int(net.params["pseudo"]["epochs"][net.params["unet"]["profile"]])
    pseudo = load_npz(args.pseudo)
    folds = load_json(args.pseudo_metrics)["test_folds"]
    if not 0 <= args.fold < len(folds):
        raise EchoCemError(f"--fold {args.fold}: {args.pseudo_metrics} has {len(folds)} test folds")
    predicted = (pseudo["source"] == "test") & np.isin(pseudo["well"], folds[args.fold])
    # the plan: the student trains on the training wells' true labels and predicts the
    # validation wells and its test fold; check_plan refuses any pseudo-label it may not learn
    labels = PseudoLabels(ids=pseudo["ids"], labels=pseudo["masks"], producers=tuple(() for _ in pseudo["ids"]),
                          table=None)
    me = student(f"student_{args.fold}", train_ids=data["ids"][tr],
                 scored_ids=np.concatenate([data["ids"][va], pseudo["ids"][predicted]]))
    plan = assign(labels, [me])
    check_plan(plan, labels, [me], {})
    learn = plan["position"].to_numpy()

    fp, ck_dir = net.checkpoint(args.checkpoints, STAGE, (args.pseudo,), fold=args.fold, epochs=epochs)
    real = net.training_patches(tr)
    extra = {"images": pseudo["images"][learn], "masks": pseudo["masks"][learn], "widths": pseudo["widths"][learn],
             "well": pseudo["well"][learn], "ids": pseudo["ids"][learn]}
    train = net.on_device({k: np.concatenate([real[k], extra[k]]) for k in extra})
    trained = train_segmenter(train, net.on_device(net.patches(inputs.select_idx)), net.model_cfg, profile, epochs,
                              net.seed, net.device, ck_dir, fp, desc=f"student {args.fold}")
    probs = predict_proba(trained.model, data["images"][va], data["widths"][va], inputs.spec, net.device,
                          int(profile["train"]["eval_batch_size"])).astype(np.float16)
    pred = labels_from_proba(probs, data["widths"][va])
    scores = challenge_iou(data["masks"][va], pred, data["widths"][va], data["well"][va])
    run = trained.fit
    metrics = {**scores, "fold": args.fold, "predicts_test_wells": folds[args.fold], "best_epoch": run.best_epoch,
               "epochs": epochs, "n_true_patches": int(len(tr)), "n_pseudo_patches": int(len(learn)),
               "pseudo_wells": sorted(int(w) for w in np.unique(extra["well"])), "precision": trained.accel.precision}
    save_model(args.model, trained.model, net.model_cfg, {"stage": f"{STAGE}@{args.fold}",
                                                          "best_epoch": run.best_epoch,
                                                          "predicts_test_wells": folds[args.fold], "seed": net.seed})
    save_npz(args.pred, ids=data["ids"][va], pred=pred, probs=probs)
    save_json(args.metrics, metrics)
    save_curves(args.plots, run.history, {"best_epoch": run.best_epoch})
    shutil.rmtree(ck_dir, ignore_errors=True)
    print(f"unet_pseudo@{args.fold}: validation IoU {scores['iou']:.4f} with {len(learn)} pseudo-labelled patches "
          f"(wells {metrics['pseudo_wells']}), predicts test wells {folds[args.fold]}")


if __name__ == "__main__":
    main()
