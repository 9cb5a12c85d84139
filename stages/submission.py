"""Stage submission: predict the test split, write the challenge CSV and its manifest.

The networks params `submission` switches on (the U-Net refit on every labelled
well or the one selected on the validation wells; the out-of-fold U-Nets; for
each test well, the pseudo-label student that never learned it) average their
probabilities over whole sections (overlapping windows) with depth-flip TTA ->
(optionally) the post-processing U-Net -> argmax -> (optionally) the rules ->
CSV, validated against the test patches before it is moved into place (a
failing validation leaves nothing), then the provenance manifest beside it
(echocem.provenance), naming every network used.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from echocem.data.challenge_csv import N_COLUMNS, check_ids
from echocem.data.preprocess import load_normalization
from echocem.io import EchoCemError, load_json, load_npz
from echocem.provenance import build_manifest, write_manifest
from echocem.runtime import configure_threads, resolve_device, stage_main, stage_threads, start_stage
from echocem.seg.submission import predict_classes, write_validated_submission

STAGE = "submission"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding test.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json")
    p.add_argument("--unet", required=True, help="the U-Net selected on the validation wells (.pt)")
    p.add_argument("--unet-final", required=True, help="the U-Net refit on every labelled well (.pt)")
    p.add_argument("--folds", required=True, help="folder of the out-of-fold U-Nets (fold_<k>.pt)")
    p.add_argument("--students", required=True, help="folder of the pseudo-label students (student_<k>.pt)")
    p.add_argument("--pseudo-metrics", required=True, help="pseudo-labels record (.json: the test folds)")
    p.add_argument("--postproc", required=True, help="post-processing U-Net checkpoint (.pt)")
    p.add_argument("--out", required=True, help="output: the submission CSV")
    p.add_argument("--manifest", required=True, help="output: the provenance manifest (.json)")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    params = start_stage(args.params, STAGE)
    cfg = params["submission"]
    test_path = Path(args.ingested) / "test.npz"
    norm_path = Path(args.prepared) / "normalization.json"
    test = load_npz(test_path)
    for key in ("images", "widths", "ids", "well", "section", "patch"):
        if key not in test:
            raise EchoCemError(f"{test_path}: array {key!r} missing")
    try:
        ids = check_ids(test["ids"])  # fail before minutes of prediction, not after
    except EchoCemError as exc:
        raise EchoCemError(f"{test_path}: {exc}") from exc
    spec = load_normalization(norm_path)
    test_folds = load_json(args.pseudo_metrics)["test_folds"]

    # the networks are imported only now: a bad input above fails without loading torch
    from echocem.seg.context import Inference, iter_probs, take
    from echocem.seg.postproc import load_refiner, refine_proba
    from echocem.params import active_profile
    from echocem.seg.unet import load_model

    configure_threads(stage_threads(params, STAGE))  # torch is imported only now
    device = resolve_device(params["execution"]["device"])
    profile = active_profile(params["unet"], "unet")
    batch = int(cfg["batch_size"])

    base = args.unet_final if cfg["refit"] else args.unet
    inputs = {"unet_model": base, "test_data": test_path, "normalization": norm_path}
    models = [load_model(base)[0]]
    if cfg["ensemble"]:
        # exactly the folds splits.json names: a folder can hold a model of a fold dropped since
        for k in range(len(load_json(Path(args.prepared) / "splits.json")["oof_folds"])):
            path = Path(args.folds) / f"fold_{k}.pt"
            models.append(load_model(path)[0])
            inputs[f"unet_fold_{k}"] = str(path)
    # the test wells, each with the networks that predict it (a student only for its own test fold)
    groups = [(sorted(int(w) for w in np.unique(test["well"])), models)]
    if cfg["pseudo"]:
        groups = []
        for k, wells in enumerate(test_folds):
            path = Path(args.students) / f"student_{k}.pt"
            groups.append((wells, [*models, load_model(path)[0]]))
            inputs[f"student_{k}"] = str(path)
    how = Inference.from_params(profile["context"], batch, sections=bool(cfg["sections"]), tta=bool(cfg["tta"]))

    def chunks():
        for wells, members in groups:
            where = np.flatnonzero(np.isin(test["well"], wells))
            for idx, probs in iter_probs(members, take(test, where), spec, device, how,
                                         int(cfg["chunk_patches"]), desc=f"test wells {wells}"):
                yield where[idx], probs

    refine_fn = None
    if cfg["use_postproc"]:
        refiner, _ = load_refiner(args.postproc)
        inputs["postproc_model"] = args.postproc

        def refine_fn(probs: np.ndarray, images: np.ndarray, widths: np.ndarray) -> np.ndarray:
            return refine_proba(refiner, probs, images, widths, spec, device, batch)

    preds = predict_classes(test["images"], test["widths"], chunks(), refine_fn,
                            rules_cfg=params["rules"] if cfg["apply_rules"] else None)
    rows = write_validated_submission(args.out, ids, preds, test["widths"])
    try:
        manifest = build_manifest(args.out, rows, inputs, params, sections=("rules", "submission", "unet"),
                                  params_file=args.params, columns=N_COLUMNS)
        write_manifest(args.manifest, manifest)
    except BaseException:
        # a submission without its manifest is not a result: remove it
        Path(args.out).unlink(missing_ok=True)
        raise
    print(f"submission: {rows} patches -> {args.out} (validated) by {len(models)} U-Net(s)"
          f"{' + a student per test fold' if cfg['pseudo'] else ''}, manifest {args.manifest}")


if __name__ == "__main__":
    main()
