"""The three stage scripts end to end on tiny data (in-process): outputs, contracts, reruns, errors."""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from echocem.data.preprocess import fit_normalization, make_splits, split_indices
from echocem.io import save_json, save_npz
from echocem.seg.postproc import load_refiner
from echocem.seg.unet import labels_from_proba, load_model
from tests.pipeline import REPO, tiny_params
from tests.seg.synthetic import make_patches

CURVES = "reports/plots/unet/plots/metrics"  # dvclive's layout
UNET_OUT = ["models/unet.pt", "data/predictions/unet_val.npz", "reports/metrics/unet.json",
            f"{CURVES}/train/loss.tsv", f"{CURVES}/train/lr.tsv", f"{CURVES}/val/iou.tsv",
            f"{CURVES}/val/iou_class1.tsv", f"{CURVES}/val/iou_class2.tsv", "reports/plots/unet/metrics.json",
            "reports/plots/unet/curves.png"]
UNET_ARGS = ["--params", "params.yaml", "--ingested", "data/ingested", "--prepared", "data/prepared",
             "--model", "models/unet.pt", "--pred", "data/predictions/unet_val.npz",
             "--metrics", "reports/metrics/unet.json", "--plots", "reports/plots/unet",
             "--generated", "data/generated/none.npz"]  # generated_pairs.ratio 0: not read
def fold_args(k: int) -> list[str]:
    return ["--params", "params.yaml", "--fold", str(k), "--ingested", "data/ingested", "--prepared", "data/prepared",
            "--model", f"models/folds/fold_{k}.pt", "--pred", f"data/predictions/folds/fold_{k}.npz",
            "--metrics", f"reports/metrics/folds/fold_{k}.json", "--plots", f"reports/plots/unet_fold_{k}"]


OOF_ARGS = ["--params", "params.yaml", "--ingested", "data/ingested", "--prepared", "data/prepared",
            "--folds", "data/predictions/folds", "--fold-metrics", "reports/metrics/folds",
            "--pred", "data/predictions/unet_oof.npz", "--metrics", "reports/metrics/unet_oof.json"]
POST_ARGS = ["--params", "params.yaml", "--ingested", "data/ingested", "--prepared", "data/prepared",
             "--oof", "data/predictions/unet_oof.npz", "--val", "data/predictions/unet_val.npz",
             "--model", "models/postproc_unet.pt", "--pred", "data/predictions/postproc_val.npz",
             "--metrics", "reports/metrics/postproc.json", "--plots", "reports/plots/postproc_unet"]


def run_stage(script: str, args: list[str], cwd: Path) -> None:
    """Run stages/<script> as `python stages/<script> ARGS` would, from `cwd`, in this process."""
    import os

    old_cwd, old_argv = Path.cwd(), sys.argv
    os.chdir(cwd)
    sys.argv = [script, *args]
    try:
        runpy.run_path(str(REPO / "stages" / script), run_name="__main__")
    finally:
        os.chdir(old_cwd)
        sys.argv = old_argv


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """Ingested and prepared data of 5 wells (well 5 for validation, 2 out-of-fold folds), tiny params."""
    root = tmp_path_factory.mktemp("stages")
    data = make_patches(30, seed=11)
    n = len(data["ids"])
    # one section of 6 depth-adjacent patches per well (narrow ones break a section into runs)
    data["well"] = (1 + np.arange(n) // 6).astype(np.int32)
    data["section"] = np.zeros(n, dtype=np.int32)
    data["patch"] = (np.arange(n) % 6).astype(np.int32)
    data["ids"] = np.array([f"well_{w}_section_0_patch_{p}" for w, p in zip(data["well"], data["patch"])])
    save_npz(root / "data/ingested/train.npz", **data)
    splits = make_splits(data["well"], [5], n_folds=2)
    tr = split_indices(data["well"], splits["train_wells"])
    save_json(root / "data/prepared/normalization.json", fit_normalization(data["images"][tr], data["widths"][tr]))
    save_json(root / "data/prepared/splits.json", splits)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    run_stage("unet.py", UNET_ARGS, root)
    for k in range(2):
        run_stage("unet_fold.py", fold_args(k), root)
    run_stage("unet_oof.py", OOF_ARGS, root)
    run_stage("postproc_unet.py", POST_ARGS, root)
    return root


def test_unet_outputs_follow_the_contracts(workdir):
    for rel in UNET_OUT:
        assert (workdir / rel).is_file(), rel
    truth = np.load(workdir / "data/ingested/train.npz")
    val_idx = np.flatnonzero(truth["well"] == 5)
    pred = np.load(workdir / "data/predictions/unet_val.npz")
    assert list(pred["ids"]) == list(truth["ids"][val_idx])
    assert pred["pred"].dtype == np.int8 and pred["pred"].shape == (len(val_idx), 160, 272)
    assert pred["probs"].dtype == np.float16 and pred["probs"].shape == (len(val_idx), 3, 160, 272)
    np.testing.assert_array_equal(pred["pred"], labels_from_proba(pred["probs"], truth["widths"][val_idx]))
    metrics = json.loads((workdir / "reports/metrics/unet.json").read_text())
    assert set(metrics["per_well"]) == {"5"} and 0 <= metrics["iou"] <= 1
    assert metrics["val_wells"] == [5] and metrics["epochs"] == 2 and 1 <= metrics["best_epoch"] <= 2
    assert not any("time" in k or k.endswith("_s") for k in metrics)  # no wall times in outputs
    curve = (workdir / CURVES / "val/iou.tsv").read_text().splitlines()
    assert curve[0] == "step\tiou" and [row.split("\t")[0] for row in curve[1:]] == ["1", "2"]  # step = epoch
    live = json.loads((workdir / "reports/plots/unet/metrics.json").read_text())
    assert live["best_epoch"] == metrics["best_epoch"] and live["step"] == 2
    model, meta = load_model(workdir / "models/unet.pt")
    assert meta["best_epoch"] == metrics["best_epoch"] and meta["config"]["in_channels"] == 1
    assert not any((workdir / "checkpoints" / "unet").glob("*"))  # scratch removed after success


def test_out_of_fold_predictions_cover_every_training_patch_once(workdir):
    truth = np.load(workdir / "data/ingested/train.npz")
    oof = np.load(workdir / "data/predictions/unet_oof.npz")
    train_ids = truth["ids"][truth["well"] != 5]
    assert sorted(oof["ids"]) == sorted(train_ids) and len(set(oof["ids"])) == len(train_ids)
    assert oof["probs"].dtype == np.float16 and oof["pred"].dtype == np.int8
    metrics = json.loads((workdir / "reports/metrics/unet_oof.json").read_text())
    assert len(metrics["folds"]) == 2
    for fold in metrics["folds"]:
        assert set(fold["train_wells"]).isdisjoint(fold["wells"])
        assert 5 not in fold["train_wells"]  # the validation well is never trained on
    assert sorted(w for f in metrics["folds"] for w in f["wells"]) == [1, 2, 3, 4]
    for k, fold in enumerate(metrics["folds"]):  # each fold's model, as its own stage recorded it
        model_meta = load_model(workdir / f"models/folds/fold_{k}.pt")[1]
        assert model_meta["fold_wells"] == fold["wells"]
        assert fold["n_border_windows"] > 0  # trained on windows across patch borders too


def test_postproc_is_never_worse_than_the_unet_on_val(workdir):
    metrics = json.loads((workdir / "reports/metrics/postproc.json").read_text())
    assert metrics["refined"]["iou"] >= metrics["unet"]["iou"]
    unet_metrics = json.loads((workdir / "reports/metrics/unet.json").read_text())
    assert metrics["unet"]["iou"] == unet_metrics["iou"]
    refined = np.load(workdir / "data/predictions/postproc_val.npz")
    assert refined["pred"].dtype == np.int8 and refined["probs"].dtype == np.float16
    refiner, meta = load_refiner(workdir / "models/postproc_unet.pt")
    assert meta["config"]["in_channels"] == 4 and meta["best_epoch"] == metrics["best_epoch"]
    # its curves start at epoch 0: the untrained refiner (the identity) is scored too
    curve = (workdir / "reports/plots/postproc_unet/plots/metrics/val/iou.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in curve[1:]] == [str(e) for e in range(metrics["epochs"] + 1)]


def test_unet_rerun_gives_byte_identical_outputs(workdir):
    before = {rel: (workdir / rel).read_bytes() for rel in UNET_OUT}
    run_stage("unet.py", UNET_ARGS, workdir)
    changed = [rel for rel in UNET_OUT if (workdir / rel).read_bytes() != before[rel]]
    assert changed == []


def test_missing_input_is_a_clear_error(workdir, tmp_path, capsys):
    args = [a if a != "data/prepared" else str(tmp_path / "nowhere") for a in UNET_ARGS]
    args = [a if not a.startswith("models/") else str(tmp_path / "unet.pt") for a in args]
    with pytest.raises(SystemExit) as exc:
        run_stage("unet.py", args, workdir)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "nowhere/" in err and "not found" in err
    assert not (tmp_path / "unet.pt").exists()
