"""The rf_baseline, evaluate and submission stages run end to end on tiny inputs.

Each stage is run as dvc.yaml runs it (its entry script, its command-line
arguments) in a temporary workspace holding small synthetic ingested splits
and the prepared files of the data contract (docs/architecture.md).
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest

from echocem.io import file_md5, load_npz, save_json, save_npz
from echocem.seg.submission import read_submission, validate_submission
from tests.pipeline import REPO, run, tiny_params, write_params
from tests.seg.synthetic import make_patches

preprocess = pytest.importorskip("echocem.data.preprocess", reason="the data stages' module is not there yet")

VAL_WELL = 4
N_TRAIN, N_TEST = 16, 6


def stage(root: Path, name: str, *args: str, check: bool = True):
    return run([sys.executable, str(REPO / "stages" / f"{name}.py"), "--params", "params.yaml", *args], root, check=check)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("seg_stages")
    write_params(root, tiny_params())
    train = make_patches(N_TRAIN, seed=11)
    well = (1 + np.arange(N_TRAIN) % 4).astype(np.int32)
    ids = np.array([f"well_{w}_section_1_patch_{i}" for i, w in enumerate(well)])
    save_npz(root / "data/ingested/train.npz", images=train["images"], masks=train["masks"], widths=train["widths"],
             ids=ids, well=well, section=np.ones(N_TRAIN, np.int32), patch=np.arange(N_TRAIN, dtype=np.int32))
    test = make_patches(N_TEST, seed=12)
    save_npz(root / "data/ingested/test.npz", images=test["images"], widths=test["widths"],
             ids=np.array([f"well_7_section_2_patch_{i}" for i in range(N_TEST)]),
             well=np.full(N_TEST, 7, np.int32), section=np.full(N_TEST, 2, np.int32),
             patch=np.arange(N_TEST, dtype=np.int32))
    train_idx = well != VAL_WELL
    save_json(root / "data/prepared/normalization.json",
              preprocess.fit_normalization(train["images"][train_idx], train["widths"][train_idx]))
    save_json(root / "data/prepared/splits.json",
              {"val_wells": [VAL_WELL], "train_wells": [1, 2, 3], "oof_folds": [[1], [2], [3]]})
    return root


def test_rf_baseline_stage(workspace):
    stage(workspace, "rf_baseline", "--ingested", "data/ingested", "--prepared", "data/prepared",
          "--model", "models/rf.joblib", "--pred", "data/predictions/rf_val.npz",
          "--metrics", "reports/metrics/rf.json")
    train = load_npz(workspace / "data/ingested/train.npz")
    va = np.flatnonzero(train["well"] == VAL_WELL)
    pred = load_npz(workspace / "data/predictions/rf_val.npz")
    assert pred["ids"].tolist() == train["ids"][va].tolist()
    assert pred["pred"].dtype == np.int8 and pred["pred"].shape == (len(va), 160, 272)
    np.testing.assert_array_equal(pred["pred"] == -1, train["masks"][va] == -1)  # padding exactly where it is
    metrics = json.loads((workspace / "reports/metrics/rf.json").read_text())
    assert metrics["n_patches"] == len(va) and list(metrics["per_well"]) == [str(VAL_WELL)]
    assert metrics["val_wells"] == [VAL_WELL] and metrics["iou"] > 0.5
    assert sum(metrics["train_pixels_per_class"]) == metrics["n_train_pixels"]
    model = joblib.load(workspace / "models/rf.joblib")
    assert model.n_estimators == tiny_params()["rf"]["n_estimators"]


RUNGS = ("unet", "sections", "tta", "ensemble", "pseudo", "postproc")


def test_evaluate_stage(workspace):
    """Rungs with intervals; each part's gain a paired difference; one more well and self-training too."""
    if not (workspace / "data/predictions/rf_val.npz").exists():
        test_rf_baseline_stage(workspace)
    train = load_npz(workspace / "data/ingested/train.npz")
    va = np.flatnonzero(train["well"] == VAL_WELL)
    rng = np.random.default_rng(0)
    truth = train["masks"][va]

    def missing(fraction: float) -> np.ndarray:  # the truth with a share of its class pixels missed
        pred = truth.copy()
        pred[(rng.random(pred.shape) < fraction) & (pred > 0)] = 0
        return pred

    holes = dict(zip(RUNGS, (0.5, 0.45, 0.4, 0.3, 0.3, 0.2)))
    arrays = {f"rung_{r}": missing(h) for r, h in holes.items()}
    arrays.update({f"alone_fold_{k}": missing(0.6) for k in range(3)}, alone_student_0=missing(0.55),
                  postproc_on_tta=missing(0.25))
    save_npz(workspace / "data/predictions/ladder_val.npz", ids=train["ids"][va], well=train["well"][va], **arrays)
    stage(workspace, "evaluate", "--ingested", "data/ingested", "--prepared", "data/prepared",
          "--rf", "data/predictions/rf_val.npz", "--rungs", "data/predictions/ladder_val.npz",
          "--metrics", "reports/metrics/ladder.json", "--figures", "reports/figures/ladder")
    ladder = json.loads((workspace / "reports/metrics/ladder.json").read_text())
    assert ladder["val_wells"] == [VAL_WELL]
    assert ladder["order"] == ["all_background", "rf", *RUNGS, "rules"]
    rungs = ladder["rungs"]
    assert rungs["all_background"]["iou"] == 0.0
    assert rungs["unet"]["iou"] < rungs["tta"]["iou"] < rungs["postproc"]["iou"]
    assert ladder["gains"]["postproc"] == pytest.approx(rungs["postproc"]["iou"] - rungs["pseudo"]["iou"])
    rf = json.loads((workspace / "reports/metrics/rf.json").read_text())
    assert rungs["rf"]["iou"] == pytest.approx(rf["iou"])
    overall = {r["rung"]: r for r in ladder["intervals"] if r["scope"] == "all"}
    for rung in ladder["order"]:
        assert overall[rung]["low"] <= rungs[rung]["iou"] <= overall[rung]["high"], rung
    gains = {d["name"]: d for d in ladder["differences"] if d["scope"] == "all"}
    assert gains["ensemble - tta"]["low"] > 0 and gains["ensemble - tta"]["excludes_zero"]  # 30 % vs 40 % missed
    assert gains["pseudo - ensemble"]["estimate"] != 0 or not gains["pseudo - ensemble"]["excludes_zero"]
    assert gains["tta - unet_one_well_fewer"]["estimate"] > 0  # 40 % vs 60 % missed
    assert gains["student_alone - tta"]["estimate"] < 0  # 55 % vs 40 % missed
    assert gains["postproc_on_tta - tta"]["low"] > 0  # 25 % vs 40 % missed: the refiner's gain as submitted
    assert ladder["bootstrap"]["n_patches"] == len(va)
    figures = sorted(p.name for p in (workspace / "reports/figures/ladder").iterdir())
    assert figures == ["best_patches.png", "confusion_best.png", "ladder.png", "ladder_per_well.png",
                       "worst_patches.png"]


def _n_folds(root: Path) -> int:
    """The out-of-fold U-Nets the workspace's splits.json names (the stages read exactly those)."""
    return len(json.loads((root / "data/prepared/splits.json").read_text())["oof_folds"])


@pytest.fixture(scope="module")
def models(workspace) -> Path:
    """Untrained tiny networks in the U-Net stages' file format (the stage only needs valid files)."""
    import torch

    from echocem.seg.postproc import build_refiner, refiner_config, save_refiner
    from echocem.seg.unet import build_model, model_config, save_model

    torch.manual_seed(0)
    section = {"encoder": "tu-mobilenetv3_small_050", "encoder_depth": 3, "decoder_channels": [16, 8, 8]}
    cfg = model_config(section)
    folds = [f"models/folds/fold_{k}.pt" for k in range(_n_folds(workspace))]
    for path in ("models/unet.pt", "models/unet_final.pt", *folds, "models/students/student_0.pt"):
        (workspace / path).parent.mkdir(parents=True, exist_ok=True)
        save_model(workspace / path, build_model(cfg), cfg, {})
    rcfg = refiner_config(section, 1e-4)
    save_refiner(workspace / "models/postproc_unet.pt", build_refiner(rcfg), rcfg, {})
    save_json(workspace / "reports/metrics/pseudo_labels.json", {"test_folds": [[7]]})
    return workspace


SUBMISSION_ARGS = ("--ingested", "data/ingested", "--prepared", "data/prepared", "--unet", "models/unet.pt",
                   "--unet-final", "models/unet_final.pt", "--folds", "models/folds", "--students", "models/students",
                   "--pseudo-metrics", "reports/metrics/pseudo_labels.json", "--postproc", "models/postproc_unet.pt")


def test_submission_stage_writes_a_valid_csv_and_its_manifest(models):
    root = models
    # a model left by a fold dropped since (more folds before): never read, never in the manifest
    shutil.copyfile(root / "models/folds/fold_0.pt", root / "models/folds/fold_9.pt")
    stage(root, "submission", *SUBMISSION_ARGS, "--out", "submission/submission.csv",
          "--manifest", "submission/manifest.json")
    test = load_npz(root / "data/ingested/test.npz")
    csv = root / "submission/submission.csv"
    assert validate_submission(csv, test["ids"].tolist(), test["widths"]) == []
    ids, preds, widths = read_submission(csv)
    assert ids == test["ids"].tolist() and widths.tolist() == test["widths"].tolist()
    manifest = json.loads((root / "submission/manifest.json").read_text())
    assert manifest["submission"]["md5"] == file_md5(csv) and manifest["submission"]["rows"] == N_TEST
    # the refit U-Net, the out-of-fold ones and the student of the test well's fold (tiny params switch all on)
    expected = {"unet_model": "models/unet_final.pt", "student_0": "models/students/student_0.pt",
                "postproc_model": "models/postproc_unet.pt", "test_data": "data/ingested/test.npz",
                "normalization": "data/prepared/normalization.json",
                **{f"unet_fold_{k}": f"models/folds/fold_{k}.pt" for k in range(_n_folds(root))}}
    assert {role: entry["path"] for role, entry in manifest["inputs"].items()} == expected
    for entry in manifest["inputs"].values():
        assert entry["md5"] == file_md5(root / entry["path"])
    assert manifest["params"]["values"]["submission"] == tiny_params()["submission"]


def test_submission_stage_leaves_nothing_on_a_bad_test_split(models, tmp_path):
    root = models
    test = load_npz(root / "data/ingested/test.npz")
    test["ids"] = np.array([test["ids"][0]] * N_TEST)  # duplicated patch ids: no valid submission exists
    save_npz(root / "data/bad/test.npz", **test)
    proc = stage(root, "submission", "--ingested", "data/bad", *SUBMISSION_ARGS[2:],
                 "--out", "bad/submission.csv", "--manifest", "bad/manifest.json", check=False)
    assert proc.returncode == 2 and "duplicate patch ids" in proc.stderr
    assert not (root / "bad").exists() or not any((root / "bad").iterdir())
