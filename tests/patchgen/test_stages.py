"""Both stage scripts end to end on tiny data (in-process): outputs and their contracts, errors."""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from echocem.data.preprocess import fit_normalization, make_splits
from echocem.io import load_npz, save_json, save_npz
from echocem.patchgen.generate import load_generator
from echocem.patchgen.masks import plausibility_problems
from tests.pipeline import REPO, tiny_params

GEN_OUT = ["models/gen_patches.pt", "data/generated/patches.npz", "reports/metrics/gen_patches.json"]
GEN_FIGURES = ["real_vs_generated.png", "proposals.png", "distances.png", "loss.png"]
GEN_ARGS = ["--params", "params.yaml", "--ingested", "data/ingested", "--prepared", "data/prepared",
            "--unet", "models/unet.pt", "--model", "models/gen_patches.pt", "--generated",
            "data/generated/patches.npz", "--metrics", "reports/metrics/gen_patches.json",
            "--figures", "reports/figures/gen_patches"]
STUDY_ARGS = ["--params", "params.yaml", "--ingested", "data/ingested", "--prepared", "data/prepared",
              "--generated", "data/generated/patches.npz", "--metrics", "reports/metrics/augmentation_study.json",
              "--table", "reports/tables/augmentation_study.md", "--figure",
              "reports/figures/augmentation_study.png"]


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
        torch.set_num_threads(1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, wells) -> Path:
    """data/ingested (train: wells 1-4, well 4 held out; test and unlabelled images), data/prepared,
    a tiny first U-Net of the training wells, tiny params."""
    from echocem.seg.unet import build_model, save_model

    root = tmp_path_factory.mktemp("patchgen_stages")
    n = len(wells["ids"])
    train = {**wells, "section": np.ones(n, np.int32), "patch": np.arange(n, dtype=np.int32)}
    save_npz(root / "data/ingested/train.npz", **train)
    for name, w in (("test", 7), ("unlabeled", 12)):
        pick = wells["well"] != 3  # full-width patches, as those splits are
        save_npz(root / f"data/ingested/{name}.npz", images=wells["images"][pick][:3], widths=wells["widths"][pick][:3],
                 ids=np.array([f"well_{w}_section_1_patch_{p}" for p in range(3)]),
                 well=np.full(3, w, np.int32), section=np.ones(3, np.int32), patch=np.arange(3, dtype=np.int32))
    save_json(root / "data/prepared/normalization.json", fit_normalization(wells["images"], wells["widths"]))
    save_json(root / "data/prepared/splits.json", make_splits(wells["well"], [4], 2))
    cfg = {"encoder": "tu-mobilenetv3_small_050", "encoder_depth": 3, "decoder_channels": [16, 8, 8],
           "encoder_weights_path": None, "in_channels": 1, "classes": 3}
    torch.manual_seed(0)
    save_model(root / "models/unet.pt", build_model(cfg), cfg, {"stage": "unet", "train_wells": [1, 2, 3]})
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    return root


@pytest.fixture(scope="module")
def gen_run(workdir) -> Path:
    run_stage("gen_patches.py", GEN_ARGS, workdir)
    return workdir


def test_gen_patches_outputs(gen_run):
    root = gen_run
    for rel in GEN_OUT:
        assert (root / rel).is_file(), rel
    assert sorted(p.name for p in (root / "reports/figures/gen_patches").iterdir()) == sorted(GEN_FIGURES)
    assert not any((root / "checkpoints").glob("gen_patches/*")), "the checkpoints are removed at the end"
    params = yaml.safe_load((root / "params.yaml").read_text())
    n_pairs = params["gen_patches"]["sizes"]["small"]["n_pairs"]
    pairs = load_npz(root / "data/generated/patches.npz")
    assert pairs["images"].shape == (n_pairs, 160, 272) and pairs["images"].dtype == np.int16
    assert pairs["masks"].dtype == np.int8 and pairs["widths"].dtype == np.int16
    train = load_npz(root / "data/ingested/train.npz")
    assert set(np.unique(train["well"][pairs["source_index"]])) <= {1, 2, 3}, "validation masks never proposed"
    assert (pairs["source_id"] == train["ids"][pairs["source_index"]]).all()
    for img, m, w in zip(pairs["images"], pairs["masks"], pairs["widths"]):
        assert plausibility_problems(m, int(w)) == []
        assert (img[:, int(w):] == 0).all()
    gen = load_generator(root / "models/gen_patches.pt")
    assert gen.meta["train_wells"] == [1, 2, 3] and gen.meta["n_labelled"] == 12 and gen.meta["n_unlabelled"] == 6


def test_gen_patches_metrics(gen_run):
    m = json.loads((gen_run / "reports/metrics/gen_patches.json").read_text())
    names = {"real (training wells)", "generated: same masks", "generated: proposed masks",
             "naive: training images, shuffled masks", "naive: class-std noise"}
    assert set(m["sinkhorn"]) == names
    for d in m["sinkhorn"].values():
        assert set(d) == {"amplitude", "encoder", "combined"} and all(np.isfinite(v) for v in d.values())
    assert m["n_patches"]["reference"] == 4 and m["n_points"] == 4 * 5
    assert 0 <= m["faithfulness"]["generated: same masks"]["iou"] <= 1
    assert all(isinstance(v, bool) for v in m["checks"].values()) and len(m["checks"]) == 2 * (3 * 2 + 1)
    assert m["val_wells"] == [4] and len(m["loss_curve"]) == 2


def test_augmentation_study_outputs(gen_run):
    root = gen_run
    run_stage("augmentation_study.py", STUDY_ARGS, root)
    m = json.loads((root / "reports/metrics/augmentation_study.json").read_text())
    rows = m["table"]
    assert [(r["k"], r["draw"]) for r in rows] == [("1", 0), ("1", 1)]
    assert rows[0]["wells"] != rows[1]["wells"], "two draws label two different wells"
    for row in rows:
        assert row["n_seeds"] == 2 and row["n_heldout"] == 4
        assert row["steps_with"] == row["steps_without"] == 2, "both arms get the same number of steps"
        assert row["n_generated"] == row["n_real"] > 0
        assert row["gain_low"] <= row["gain"] <= row["gain_high"]
        assert row["verdict"] in {"gain", "loss", "no difference"}
    (pooled,) = m["pooled"]
    assert pooled["n_draws"] == 2 and pooled["n_runs"] == 4
    assert pooled["gain"] == pytest.approx(np.mean([r["gain"] for r in rows]))
    assert pooled["gain_low"] <= pooled["gain"] <= pooled["gain_high"]
    assert len(m["runs"]) == 8 and {r["arm"] for r in m["runs"]} == {"with", "without"}
    # one generator per draw and seed: the seeds' spread covers the generator's training too
    gens = m["generators"]["1"]
    assert [(g["draw"], g["seed_index"]) for g in gens] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert len({g["task"] for g in gens}) == 4 and len({g["final_loss"] for g in gens}) == 4
    assert all(g["n_pool"] == r["n_real"] for g, r in zip(gens, [rows[0], rows[0], rows[1], rows[1]]))
    table = (root / "reports/tables/augmentation_study.md").read_text()
    assert "| 1 | 0 |" in table and "| 1 | 1 |" in table and "Pooled over draws" in table
    assert (root / "reports/figures/augmentation_study.png").stat().st_size > 0


def test_judge_trained_on_validation_wells_is_refused(gen_run, capsys):
    from echocem.seg.unet import read_model_file, save_model, build_model

    blob = read_model_file(gen_run / "models/unet.pt")
    model = build_model(blob["config"], load_encoder_weights=False)
    save_model(gen_run / "models/leaky_unet.pt", model, blob["config"], {"train_wells": [1, 4]})
    args = [a if a != "models/unet.pt" else "models/leaky_unet.pt" for a in GEN_ARGS]
    args = [a.replace("gen_patches", "gen_patches_leak") for a in args]
    with pytest.raises(SystemExit) as exc:
        run_stage("gen_patches.py", args, gen_run)
    assert exc.value.code == 2
    assert "trained on validation wells [4]" in capsys.readouterr().err
