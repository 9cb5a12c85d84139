"""Stage preprocess: fit the normalisation on the training wells, write the well splits and a preview.

Writes data/prepared/{normalization.json, splits.json} (folder written atomically)
and the preview figure of image/mask pairs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from echocem.data.preprocess import (fit_normalization, load_labelled, make_splits, preview_figure,
                                     selection_sections, split_indices)
from echocem.io import EchoCemError, atomic_path, save_figure, save_json
from echocem.runtime import stage_main, start_stage

STAGE = "preprocess"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding train.npz")
    p.add_argument("--out", required=True, help="output folder: normalization.json, splits.json")
    p.add_argument("--preview", required=True, help="output: preview figure (.png)")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    params = start_stage(args.params, STAGE)
    cfg = params["preprocess"]

    train_path = Path(args.ingested) / "train.npz"
    data = load_labelled(train_path)
    folds = list(cfg["oof_folds"])
    if folds != list(range(len(folds))):
        raise EchoCemError(f"params preprocess.oof_folds: {folds} must number the folds 0..{len(folds) - 1} in order "
                           "(stage unet_fold runs one job per entry)")
    splits = make_splits(data["well"], cfg["val_wells"], len(folds))
    splits["selection_sections"] = selection_sections(data["well"], data["section"], cfg["val_wells"],
                                                      cfg["selection_patches"])
    tr = split_indices(data["well"], splits["train_wells"])
    spec = fit_normalization(data["images"][tr], data["widths"][tr], clip=cfg["clip"])
    fig = preview_figure(data, spec, splits, n_wells=cfg["preview_wells"])

    with atomic_path(args.out, is_dir=True) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        save_json(tmp / "normalization.json", spec)
        save_json(tmp / "splits.json", splits)
    save_figure(args.preview, fig)


if __name__ == "__main__":
    main()
