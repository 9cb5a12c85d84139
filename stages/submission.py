"""Stage submission: predict the test split, write the challenge CSV and its manifest.

U-Net probabilities -> (optionally) refined by the post-processing U-Net ->
argmax -> (optionally) rule-based clean-up -> CSV, validated against the test
patches before it is moved into place (a failing validation leaves nothing),
then the provenance manifest beside it (echocem.provenance).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from echocem.data.preprocess import load_normalization
from echocem.io import EchoCemError, load_npz
from echocem.params import load_params
from echocem.provenance import build_manifest, write_manifest
from echocem.runtime import configure_threads, resolve_device, seed_everything, stage_main, thread_count
from echocem.seg.submission import N_COLUMNS, check_ids, predict_classes, write_validated_submission

STAGE = "submission"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--ingested", required=True, help="folder holding test.npz")
    p.add_argument("--prepared", required=True, help="folder holding normalization.json")
    p.add_argument("--unet", required=True, help="U-Net checkpoint (models/unet.pt)")
    p.add_argument("--postproc", required=True, help="post-processing U-Net checkpoint (models/postproc_unet.pt)")
    p.add_argument("--out", required=True, help="output: the submission CSV")
    p.add_argument("--manifest", required=True, help="output: the provenance manifest (.json)")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    params = load_params(args.params)
    cfg = params["submission"]
    seed_everything(params["seed"])
    threads = params["execution"]["threads"]
    n_threads = thread_count(threads.get(STAGE, threads["default"]))
    configure_threads(n_threads)
    test_path = Path(args.ingested) / "test.npz"
    norm_path = Path(args.prepared) / "normalization.json"
    test = load_npz(test_path)
    for key in ("images", "widths", "ids"):
        if key not in test:
            raise EchoCemError(f"{test_path}: array {key!r} missing")
    try:
        ids = check_ids(test["ids"])  # fail before minutes of prediction, not after
    except EchoCemError as exc:
        raise EchoCemError(f"{test_path}: {exc}") from exc
    spec = load_normalization(norm_path)

    # the networks are imported only now: a bad input above fails without loading torch
    from echocem.seg.postproc import load_refiner, refine_proba
    from echocem.seg.unet import load_model, predict_proba

    configure_threads(n_threads)  # again, now that torch is imported
    device = resolve_device(params["execution"]["device"])

    model, _ = load_model(args.unet)
    batch = int(cfg["batch_size"])

    def unet_proba(images: np.ndarray, widths: np.ndarray) -> np.ndarray:
        return predict_proba(model, images, widths, spec, device, batch)

    refine_fn = None
    inputs = {"unet_model": args.unet, "test_data": test_path, "normalization": norm_path}
    if cfg["use_postproc"]:
        refiner, _ = load_refiner(args.postproc)
        inputs["postproc_model"] = args.postproc

        def refined(probs: np.ndarray, images: np.ndarray, widths: np.ndarray) -> np.ndarray:
            return refine_proba(refiner, probs, images, widths, spec, device, batch)

        refine_fn = refined

    preds = predict_classes(
        test["images"], test["widths"], unet_proba, refine_fn,
        rules_cfg=params["rules"] if cfg["apply_rules"] else None, chunk=int(cfg["chunk_patches"]),
    )
    rows = write_validated_submission(args.out, ids, preds, test["widths"])
    try:
        manifest = build_manifest(args.out, rows, inputs, params, sections=("rules", "submission"),
                                  params_file=args.params, columns=N_COLUMNS)
        write_manifest(args.manifest, manifest)
    except BaseException:
        # a submission without its manifest is not a result: remove it
        Path(args.out).unlink(missing_ok=True)
        raise
    print(f"submission: {rows} patches -> {args.out} (validated), manifest {args.manifest}")


if __name__ == "__main__":
    main()
