"""Stage pseudo_labels: confident labels of the unlabelled and test images, for self-training.

The out-of-fold U-Nets (stage unet_fold; none trained on these wells) predict
every unlabelled and test patch together (whole sections, depth-flip TTA, their
mean); a pixel is labelled with the mean's class where its probability reaches
params pseudo.threshold (else ignored), a patch is kept when at least
pseudo.min_fraction of its pixels are. The test wells are dealt into the folds of
pseudo.test_folds: student k (stage unet_pseudo) predicts test fold k and never
learns its labels. Writes the pseudo-labelled patches (.npz) and what was kept
(.json, per well and class).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from echocem.data.preprocess import load_normalization, load_splits
from echocem.io import EchoCemError, load_npz, save_json, save_npz
from echocem.runtime import resolve_device, stage_main, start_stage
from echocem.seg.context import Inference, iter_probs
from echocem.seg.folds import oof_plan
from echocem.seg.pseudo import IGNORE, confident_labels, eligible_teachers
from echocem.params import active_profile
from echocem.seg.unet import load_model

STAGE = "pseudo_labels"
KEYS = ("images", "widths", "ids", "well", "section", "patch")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding train.npz, test.npz, unlabeled.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json and splits.json")
    p.add_argument("--teachers", required=True, help="folder of the out-of-fold U-Nets (fold_<k>.pt)")
    p.add_argument("--out", required=True, help="output: pseudo-labelled patches (.npz)")
    p.add_argument("--metrics", required=True, help="output: what was kept (.json)")
    return p.parse_args()


def deal_test_wells(wells: np.ndarray, n_folds: int) -> list[list[int]]:
    """Test wells dealt round-robin into `n_folds` folds (sorted: deterministic)."""
    folds: list[list[int]] = [[] for _ in range(n_folds)]
    for k, w in enumerate(sorted(int(x) for x in np.unique(wells))):
        folds[k % n_folds].append(w)
    return folds


@stage_main
def main() -> None:
    args = parse_args()
    params = start_stage(args.params, STAGE)
    cfg = params["pseudo"]
    device = resolve_device(params["execution"]["device"])
    profile = active_profile(params["unet"], "unet")
    spec = load_normalization(Path(args.prepared) / "normalization.json")
    splits = load_splits(Path(args.prepared) / "splits.json")
    train = load_npz(Path(args.ingested) / "train.npz")
    plan = oof_plan(train["well"], splits["train_wells"], splits["oof_folds"])
    teachers = [load_model(Path(args.teachers) / f"fold_{f.number}.pt")[0] for f in plan]
    teacher_train_ids = {f"fold_{f.number}": train["ids"][f.train_idx] for f in plan}

    parts = {split: load_npz(Path(args.ingested) / f"{split}.npz") for split in ("unlabeled", "test")}
    cand = {k: np.concatenate([parts[s][k] for s in parts]) for k in KEYS}
    source = np.concatenate([np.full(len(parts[s]["ids"]), s) for s in parts])
    if len(cand["ids"]) == 0:
        raise EchoCemError(f"{args.ingested}: no unlabelled or test patches to pseudo-label")
    # the rule, checked: no teacher trained on a candidate patch
    _, ok = eligible_teachers(cand["ids"], teacher_train_ids)
    if not ok.all():
        raise EchoCemError("pseudo-labels: a teacher trained on an unlabelled or test patch")
    test_folds = deal_test_wells(parts["test"]["well"], len(cfg["test_folds"]))
    if any(not f for f in test_folds):
        raise EchoCemError(f"params pseudo.test_folds: {len(cfg['test_folds'])} folds for the test wells "
                           f"{sorted(np.unique(parts['test']['well']).tolist())}: a fold would be empty")

    how = Inference.from_params(profile["context"], int(profile["train"]["eval_batch_size"]), sections=True, tta=True)
    labels = np.full(cand["images"].shape, IGNORE, dtype=np.int8)
    fraction = np.zeros(len(cand["ids"]))
    for idx, probs in iter_probs(teachers, cand, spec, device, how, desc="teachers"):
        labels[idx], fraction[idx] = confident_labels(probs, cand["widths"][idx], float(cfg["threshold"]))
    keep = np.flatnonzero(fraction >= float(cfg["min_fraction"]))
    save_npz(args.out, **{k: v[keep] for k, v in cand.items()}, masks=labels[keep], source=source[keep],
             confident_fraction=fraction[keep].astype(np.float32))
    per_well = {}
    for w in sorted(np.unique(cand["well"]).tolist()):
        sel = cand["well"] == w
        kept = sel & (fraction >= float(cfg["min_fraction"]))
        px = labels[kept]
        per_well[str(w)] = {"split": str(source[sel][0]), "candidates": int(sel.sum()), "kept": int(kept.sum()),
                            "mean_confident_fraction": round(float(fraction[sel].mean()), 4),
                            "class_fraction_of_labelled": {str(c): round(float((px == c).sum() / max((px >= 0).sum(), 1)), 4)
                                                           for c in (0, 1, 2)}}
    save_json(args.metrics, {"teachers": sorted(teacher_train_ids), "threshold": cfg["threshold"],
                             "min_fraction": cfg["min_fraction"], "candidates": int(len(cand["ids"])),
                             "kept": int(len(keep)), "per_well": per_well, "test_folds": test_folds})
    print(f"pseudo_labels: kept {len(keep)} of {len(cand['ids'])} patches (test folds {test_folds})")


if __name__ == "__main__":
    main()
