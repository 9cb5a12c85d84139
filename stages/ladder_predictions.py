"""Stage ladder_predictions: every part of the segmentation, added one at a time, on the
validation wells (the ladder stage evaluate scores, with intervals).

Rungs, each adding one part to the one before: the U-Net patch by patch (its
own stage's predictions); whole sections with overlapping windows; depth-flip
test-time augmentation; the out-of-fold U-Nets averaged in; the pseudo-label
students averaged in; the post-processing U-Net on that average. Every network
is predicted once (sections and TTA) and the rungs are averages of those, so the
parts are measured on the same patches; the main U-Net's TTA is the mean of its
plain view (the sections rung) and its depth-flipped one, so it runs twice, not
three times. Also each out-of-fold U-Net and each student alone, from those
same predictions: the gain of one more training well (the refit) and of
self-training are measured from them against the TTA rung.
Writes one .npz: ids, wells, and int8 labels per rung and per network alone.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from echocem.io import load_json, load_npz, save_npz
from echocem.runtime import resolve_device, stage_main, start_stage
from echocem.seg.context import Inference, predict_probs, take
from echocem.seg.folds import oof_plan
from echocem.seg.inputs import load_labelled_inputs
from echocem.seg.ladder import align_predictions
from echocem.seg.postproc import load_refiner, refine_proba
from echocem.seg.sections import average_probs
from echocem.params import active_profile
from echocem.seg.unet import labels_from_proba, load_model

STAGE = "ladder_predictions"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding train.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json and splits.json")
    p.add_argument("--unet", required=True, help="the U-Net (.pt) selected on the validation wells")
    p.add_argument("--unet-pred", required=True, help="its validation predictions (.npz, patch by patch)")
    p.add_argument("--folds", required=True, help="folder of the out-of-fold U-Nets (fold_<k>.pt)")
    p.add_argument("--students", required=True, help="folder of the pseudo-label students (student_<k>.pt)")
    p.add_argument("--pseudo-metrics", required=True, help="pseudo-labels record (.json: the test folds)")
    p.add_argument("--postproc", required=True, help="the post-processing U-Net (.pt)")
    p.add_argument("--out", required=True, help="output: labels per rung and per network (.npz)")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    params = start_stage(args.params, STAGE)
    device = resolve_device(params["execution"]["device"])
    profile = active_profile(params["unet"], "unet")
    batch = int(profile["train"]["eval_batch_size"])
    inputs = load_labelled_inputs(args.ingested, args.prepared)
    val = take(inputs.data, inputs.val_idx)
    widths = val["widths"]
    plan = oof_plan(inputs.data["well"], inputs.splits["train_wells"], inputs.splits["oof_folds"])
    main_model = load_model(args.unet)[0]
    folds = [load_model(Path(args.folds) / f"fold_{f.number}.pt")[0] for f in plan]
    # exactly the students of the test folds of this run (one per fold), never a leftover file
    n_students = len(load_json(args.pseudo_metrics)["test_folds"])
    students = [load_model(Path(args.students) / f"student_{k}.pt")[0] for k in range(n_students)]

    def probs_of(model, desc: str, tta: bool = True, flipped: bool = False) -> np.ndarray:
        how = Inference.from_params(profile["context"], batch, sections=True, tta=tta, flipped=flipped)
        return predict_probs([model], val, inputs.spec, device, how, desc=desc)

    unet_pred = load_npz(args.unet_pred)
    labels = {"unet": align_predictions(val["ids"], unet_pred["ids"], unet_pred["pred"], args.unet_pred)}
    plain = probs_of(main_model, "main", tta=False)
    labels["sections"] = labels_from_proba(plain, widths)
    full = {"main": average_probs([plain, probs_of(main_model, "main, depth-flipped", tta=False, flipped=True)])}
    del plain
    full.update({f"fold_{k}": probs_of(m, f"fold {k}") for k, m in enumerate(folds)})
    full.update({f"student_{k}": probs_of(m, f"student {k}") for k, m in enumerate(students)})
    labels["tta"] = labels_from_proba(full["main"], widths)
    ensemble = average_probs([full["main"], *(full[f"fold_{k}"] for k in range(len(folds)))])
    labels["ensemble"] = labels_from_proba(ensemble, widths)
    everything = average_probs([full[name] for name in full])
    labels["pseudo"] = labels_from_proba(everything, widths)
    refiner = load_refiner(args.postproc)[0]
    labels["postproc"] = labels_from_proba(refine_proba(refiner, everything, val["images"], widths, inputs.spec,
                                                        device, batch), widths)
    # each out-of-fold U-Net and each student alone, as the submission predicts (sections + TTA):
    # the probabilities the ensemble rungs already average, so no network runs again for them
    alone = {f"alone_{name}": labels_from_proba(probs, widths) for name, probs in full.items() if name != "main"}
    # the refiner on the main U-Net's own probabilities: its gain where the ensemble and the
    # students are switched off (the ladder's postproc rung refines everything above it)
    alone["postproc_on_tta"] = labels_from_proba(refine_proba(refiner, full["main"], val["images"], widths,
                                                              inputs.spec, device, batch), widths)
    save_npz(args.out, ids=val["ids"], well=val["well"], **{f"rung_{k}": v for k, v in labels.items()}, **alone)
    print(f"ladder_predictions: {len(val['ids'])} validation patches, rungs {list(labels)}, "
          f"{len(folds)} out-of-fold U-Nets, {len(students)} students")


if __name__ == "__main__":
    main()
