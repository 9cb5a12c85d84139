"""The simulator: real-like class frequencies, physics sanity, determinism, and the stage chain."""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import yaml

from echocem.data.simulate import simulate_dataset
from echocem.io import file_md5, load_npz
from tests.pipeline import REPO, run, tiny_params, write_params

REAL_FREQUENCIES = np.array([0.853, 0.089, 0.058])  # background, TIE, casing (format notes)


def test_default_class_frequencies_match_the_real_data():
    """The default size (params.yaml, simulate.size small) is within 2 points of 85/9/6 %."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    data = simulate_dataset(params["simulate"], params["seed"])
    counts = sum(np.bincount(m.ravel(), minlength=3) for m in data.labels.values())
    freq = counts / counts.sum()
    assert np.abs(freq - REAL_FREQUENCIES).max() < 0.02, freq
    assert len(data.labels) >= 100
    widths = {n: m.shape[1] for n, m in data.labels.items()}
    assert {w for n, w in widths.items() if n.startswith(("well_3_", "well_4_"))} == {160}


def test_physics_of_a_section(simulated):
    """Casing is the strongest echo at columns ~12-40, background noise is low, patches join up."""
    masks = [simulated.labels[f"well_1_section_1_patch_{p}"] for p in range(3)]
    images = [simulated.patches["train"][f"well_1_section_1_patch_{p}"] for p in range(3)]
    cols = np.flatnonzero((masks[0] == 2).any(axis=0))
    assert 10 <= cols.min() and cols.max() <= 42 and 15 <= (masks[0] == 2).sum(axis=1).mean() <= 17
    img = np.concatenate(images).astype(float)
    m = np.concatenate(masks)
    assert np.abs(img[m == 2]).mean() > 2 * np.abs(img[m == 1]).mean() > 2 * np.abs(img[m == 0]).mean()
    # continuity across the patch border: the casing band centre moves by at most 2 px
    centre = np.array([np.flatnonzero(row == 2).mean() for row in m])
    assert np.abs(np.diff(centre)).max() <= 2


def test_simulation_is_deterministic(sim_cfg):
    a, b = simulate_dataset(sim_cfg, 5), simulate_dataset(sim_cfg, 5)
    c = simulate_dataset(sim_cfg, 6)
    for name, img in a.patches["train"].items():
        np.testing.assert_array_equal(img, b.patches["train"][name])
    assert any(not np.array_equal(img, c.patches["train"][n]) for n, img in a.patches["train"].items())


def _chain(root, raw: str = "data/raw/synthetic") -> None:
    py = sys.executable
    run([py, str(REPO / "stages/simulate.py"), "--params", "params.yaml", "--out", "data/raw/synthetic"], root)
    run([py, str(REPO / "stages/ingest.py"), "--params", "params.yaml", "--raw", raw,
         "--out", "data/ingested", "--card", "reports/metrics/data_card.json"], root)
    run([py, str(REPO / "stages/preprocess.py"), "--params", "params.yaml", "--ingested", "data/ingested",
         "--out", "data/prepared", "--preview", "reports/figures/preview.png"], root)


def test_stage_chain_is_reproducible(tmp_path):
    """simulate -> ingest -> preprocess as dvc.yaml runs them; twice gives byte-identical outputs,
    also with data.source real reading a copy of the simulated folder (the simulator still
    writes only its own folder; the real folder must exist before any stage starts)."""
    outs = ["data/ingested/train.npz", "data/ingested/test.npz", "data/ingested/unlabeled.npz",
            "reports/metrics/data_card.json", "data/prepared/normalization.json", "data/prepared/splits.json"]
    digests = []
    for k, (source, raw) in enumerate((("synthetic", "data/raw/synthetic"), ("real", "data/raw/echocem"))):
        root = tmp_path / f"run{k}"
        root.mkdir()
        if source == "real":
            shutil.copytree(tmp_path / "run0" / "data/raw/synthetic", root / raw)
        write_params(root, tiny_params({"data": {"source": source, "raw_dir": raw}}))
        _chain(root, raw)
        digests.append([file_md5(root / p) for p in outs])
    assert digests[0] == digests[1]
    root = tmp_path / "run0"
    card = json.loads((root / "reports/metrics/data_card.json").read_text())
    assert card["splits"]["train"]["per_well"] == {"1": 3, "2": 3, "3": 3, "4": 6}
    assert abs(sum(card["class_frequency"].values()) - 1) < 1e-3
    splits = json.loads((root / "data/prepared/splits.json").read_text())
    assert splits["val_wells"] == [4] and sorted(w for f in splits["oof_folds"] for w in f) == [1, 2, 3]
    assert splits["selection_sections"] == [[4, 1]]  # 3 patches (params preprocess.selection_patches): one section
    train = load_npz(root / "data/ingested/train.npz")
    assert train["images"].shape == (15, 160, 272) and train["ids"][0] == "well_1_section_1_patch_0"
    png = (root / "reports/figures/preview.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert not list(root.glob("data/.*")) and not list(root.glob("data/raw/.*"))
