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

UNET_OUT = ["models/unet.pt", "data/predictions/unet_val.npz", "reports/metrics/unet.json",
            "reports/plots/unet/train_loss.tsv", "reports/plots/unet/val_iou.tsv",
            "reports/plots/unet/val_iou_class1.tsv", "reports/plots/unet/val_iou_class2.tsv",
            "reports/plots/unet/learning_rate.tsv", "reports/plots/unet/curves.png"]
UNET_ARGS = ["--params", "params.yaml", "--ingested", "data/ingested", "--prepared", "data/prepared",
             "--model", "models/unet.pt", "--pred", "data/predictions/unet_val.npz",
             "--metrics", "reports/metrics/unet.json", "--plots", "reports/plots/unet"]
OOF_ARGS = ["--params", "params.yaml", "--ingested", "data/ingested", "--prepared", "data/prepared",
            "--pred", "data/predictions/unet_oof.npz", "--metrics", "reports/metrics/unet_oof.json"]
POST_ARGS = ["--params", "params.yaml", "--ingested", "data/ingested", "--prepared", "data/prepared",
             "--oof", "data/predictions/unet_oof.npz", "--val", "data/predictions/unet_val.npz",
             "--model", "models/postproc_unet.pt", "--pred", "data/predictions/postproc_val.npz",
             "--metrics", "reports/metrics/postproc.json"]


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
    data["well"] = (1 + np.arange(n) % 5).astype(np.int32)
    data["ids"] = np.array([f"well_{w}_section_0_patch_{i}" for i, w in enumerate(data["well"])])
    data["section"] = np.zeros(n, dtype=np.int32)
    data["patch"] = np.arange(n, dtype=np.int32)
    save_npz(root / "data/ingested/train.npz", **data)
    splits = make_splits(data["well"], [5], n_folds=2)
    tr = split_indices(data["well"], splits["train_wells"])
    save_json(root / "data/prepared/normalization.json", fit_normalization(data["images"][tr], data["widths"][tr]))
    save_json(root / "data/prepared/splits.json", splits)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    run_stage("unet.py", UNET_ARGS, root)
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
    curve = (workdir / "reports/plots/unet/val_iou.tsv").read_text().splitlines()
    assert curve[0] == "epoch\tval_iou" and len(curve) == 3
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


def test_postproc_is_never_worse_than_the_unet_on_val(workdir):
    metrics = json.loads((workdir / "reports/metrics/postproc.json").read_text())
    assert metrics["refined"]["iou"] >= metrics["unet"]["iou"]
    unet_metrics = json.loads((workdir / "reports/metrics/unet.json").read_text())
    assert metrics["unet"]["iou"] == unet_metrics["iou"]
    refined = np.load(workdir / "data/predictions/postproc_val.npz")
    assert refined["pred"].dtype == np.int8 and refined["probs"].dtype == np.float16
    refiner, meta = load_refiner(workdir / "models/postproc_unet.pt")
    assert meta["config"]["in_channels"] == 4 and meta["best_epoch"] == metrics["best_epoch"]


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
    assert "nowhere/normalization.json" in err and "not found" in err
    assert not (tmp_path / "unet.pt").exists()
