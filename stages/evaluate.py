"""Stage evaluate: the ladder on the validation wells, with 95 % intervals.

Every rung's challenge IoU (overall, per class, per well) with a 95 % interval
(bootstrap over whole sections, resampled within their
well: a section's patches are depth strips of one image and err together), and every part's gain as
a paired difference with its interval: each rung against the one below, plus
two comparisons the rungs cannot show: one more training well (the TTA rung, the
main U-Net as the submission predicts, against the out-of-fold U-Nets predicted
the same way, each trained without one of its wells: what the refit on every
labelled well adds) and self-training (each student alone against the TTA rung).
Writes ladder.json and a folder of figures (intervals as error bars, per well,
confusion matrix and overlays of the best rung).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from echocem.data.preprocess import load_splits, split_indices
from echocem.io import EchoCemError, atomic_path, load_npz, save_figure, save_json
from echocem.runtime import stage_main, start_stage
from echocem.seg.intervals import intervals_figure, ladder_intervals, records, section_codes
from echocem.seg.ladder import (RUNG_LABELS, align_predictions, best_and_worst, best_rung, build_ladder,
                                confusion_figure, overlay_figure, per_well_figure)
from echocem.seg.metric import confusion_matrix, patch_scores
from echocem.seg.rules import apply_rules

STAGE = "evaluate"
N_OVERLAY = 3  # best and worst patches shown


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding train.npz (truth of the validation wells)")
    p.add_argument("--prepared", required=True, help="folder holding splits.json")
    p.add_argument("--rf", required=True, help="Random Forest validation predictions (.npz)")
    p.add_argument("--rungs", required=True, help="the networks' rungs on the validation wells (.npz)")
    p.add_argument("--metrics", required=True, help="output: ladder.json")
    p.add_argument("--figures", required=True, help="output folder of the ladder figures")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    params = start_stage(args.params, STAGE)
    cfg = params["evaluate"]

    train_path = Path(args.ingested) / "train.npz"
    data = load_npz(train_path)
    for key in ("images", "masks", "widths", "ids", "well", "section"):
        if key not in data:
            raise EchoCemError(f"{train_path}: array {key!r} missing")
    splits = load_splits(Path(args.prepared) / "splits.json")
    va = split_indices(data["well"], splits["val_wells"])
    if len(va) == 0:
        raise EchoCemError(f"{train_path}: no patches of the validation wells {splits['val_wells']}")
    ids, truth, widths, wells = data["ids"][va], data["masks"][va], data["widths"][va], data["well"][va]

    nets = load_npz(args.rungs)
    if [str(i) for i in nets["ids"]] != [str(i) for i in ids]:
        raise EchoCemError(f"{args.rungs}: its patches are not the validation wells' patches in order")
    rf = load_npz(args.rf)
    preds = {"all_background": np.where(truth >= 0, 0, -1).astype(np.int8),
             "rf": align_predictions(ids, rf["ids"], rf["pred"], args.rf)}
    for rung in ("unet", "sections", "tta", "ensemble", "pseudo", "postproc"):
        preds[rung] = nets[f"rung_{rung}"]
    preds["rules"] = apply_rules(preds["postproc"], widths, params["rules"])
    ladder = build_ladder(truth, widths, wells, preds, splits["val_wells"])

    scores = {rung: patch_scores(truth, pred, widths) for rung, pred in preds.items()}
    folds = np.stack([patch_scores(truth, nets[k], widths) for k in sorted(nets) if k.startswith("alone_fold_")])
    students = np.stack([patch_scores(truth, nets[k], widths) for k in sorted(nets) if k.startswith("alone_student_")])
    extra = {"unet_one_well_fewer": folds, "student_alone": students,
             "postproc_on_tta": patch_scores(truth, nets["postproc_on_tta"], widths)}
    pairs = [(b, a) for a, b in zip(ladder["order"], ladder["order"][1:])]
    # the networks alone are predicted as the TTA rung is (sections + TTA): paired with it
    pairs += [("tta", "unet_one_well_fewer"), ("student_alone", "tta"), ("postproc_on_tta", "tta")]
    # whole sections are resampled: a section's patches are strips of one image and err together
    sections = section_codes(wells, data["section"][va])
    tables = ladder_intervals({**scores, **extra}, wells, order=[*ladder["order"], *extra], pairs=pairs,
                              clusters=sections, n_boot=int(cfg["n_boot"]), level=float(cfg["level"]),
                              seed=int(params["seed"]))
    ladder["intervals"] = records(tables["rungs"])
    ladder["differences"] = records(tables["differences"])
    ladder["labels"] = {**RUNG_LABELS,
                        "unet_one_well_fewer": "U-Net, one training well fewer (out-of-fold, sections + TTA, mean)",
                        "student_alone": "pseudo-label student alone (sections + TTA, mean)",
                        "postproc_on_tta": "+ post-processing U-Net on the TTA rung (no ensemble, no students)"}
    ladder["bootstrap"] = {"n_boot": int(cfg["n_boot"]), "level": float(cfg["level"]),
                           "resampling": "whole sections, within their validation well", "n_patches": int(len(va)),
                           "n_sections": int(len(np.unique(sections))),
                           "n_out_of_fold_unets": int(len(folds)), "n_students": int(len(students))}

    best = best_rung(ladder)
    patch_best, best_idx, worst_idx = best_and_worst(truth, preds[best], widths, N_OVERLAY)
    labels = ladder["labels"]
    with atomic_path(args.figures, is_dir=True) as folder:
        save_figure(folder / "ladder.png", intervals_figure(tables["rungs"], tables["differences"], labels,
                                                            title=f"Ladder on validation well(s) {splits['val_wells']}"))
        save_figure(folder / "ladder_per_well.png", per_well_figure(ladder))
        save_figure(folder / "confusion_best.png", confusion_figure(confusion_matrix(truth, preds[best], widths), best))
        for name, idx in (("best", best_idx), ("worst", worst_idx)):
            fig = overlay_figure(data["images"][va][idx], truth[idx], preds[best][idx], widths[idx], ids[idx],
                                 patch_best[idx], f"{name.capitalize()} validation patches, {RUNG_LABELS[best]}")
            save_figure(folder / f"{name}_patches.png", fig)
    save_json(args.metrics, ladder)
    overall = tables["rungs"][tables["rungs"]["scope"] == "all"].set_index("rung")
    for rung in ladder["order"]:
        r = ladder["rungs"][rung]
        print(f"{rung:<16} IoU {r['iou']:.4f} [{overall.loc[rung, 'low']:.4f}, {overall.loc[rung, 'high']:.4f}]  "
              f"class 1 {r['iou_class1']:.4f}  class 2 {r['iou_class2']:.4f}")
    diffs = tables["differences"][tables["differences"]["scope"] == "all"]
    for row in diffs.itertuples(index=False):
        print(f"gain {row.name:<34} {row.estimate:+.4f} [{row.low:+.4f}, {row.high:+.4f}]"
              + ("" if row.excludes_zero else "  (no difference within the interval)"))


if __name__ == "__main__":
    main()
