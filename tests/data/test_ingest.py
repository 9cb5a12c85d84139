"""Ingestion: the simulator round trip, a hand-built real-layout dataset, and one test per bad input."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from echocem.data.ingest import ingest
from echocem.data.challenge_csv import N_COLUMNS
from echocem.io import EchoCemError
from tests.pipeline import REPO, run, tiny_params, write_params


def _one(root: Path, pattern: str) -> Path:
    (hit,) = sorted(root.glob(pattern))
    return hit


def _labels(root: Path) -> dict[str, np.ndarray]:
    """The label rows by stem, read with plain Python (pandas takes seconds on 43,521 columns)."""
    lines = _one(root, "Y_train_*.csv").read_text().splitlines()[1:]
    return {ln.split(",", 1)[0]: np.array(ln.split(",")[1:], dtype=np.int64) for ln in lines}


def _write_labels(root: Path, rows: dict[str, np.ndarray], extra: list[str] = ()) -> None:
    header = "," + ",".join(str(i) for i in range(N_COLUMNS))
    body = [f"{k}," + ",".join(map(str, v.tolist())) for k, v in rows.items()]
    body += [f"{k}," + ",".join(map(str, rows[k].tolist())) for k in extra]
    _one(root, "Y_train_*.csv").write_text("\n".join([header, *body]) + "\n")


def test_round_trip_is_exact(raw_master, simulated):
    splits = ingest(raw_master)
    for split, patches in simulated.patches.items():
        data = splits[split]
        assert data["ids"].tolist() == sorted(patches, key=lambda s: tuple(int(t) for t in s.split("_")[1::2]))
        for i, name in enumerate(data["ids"]):
            img = patches[name]
            w = img.shape[1]
            assert data["widths"][i] == w
            np.testing.assert_array_equal(data["images"][i, :, :w], img)
            assert not data["images"][i, :, w:].any()
            if split == "train":
                np.testing.assert_array_equal(data["masks"][i, :, :w], simulated.labels[name])
                assert (data["masks"][i, :, w:] == -1).all()
    train = splits["train"]
    assert train["images"].dtype == np.int16 and train["masks"].dtype == np.int8
    assert train["well"].dtype == np.int32 and train["widths"].dtype == np.int16
    assert (train["widths"][train["well"] == 3] == 160).all()
    assert "masks" not in splits["test"]


def test_hand_built_real_layout(tmp_path):
    """A dataset written with np.save and pandas.to_csv, as the download is: read without change."""
    rng = np.random.default_rng(0)
    root = tmp_path / "download"
    names = {"train": ["well_2_section_22_patch_1", "well_10_section_1_patch_0", "well_3_section_4_patch_2",
                       "well_2_section_3_patch_11"],
             "test": ["well_9_section_1_patch_3"], "unlabeled": ["well_13_section_2_patch_5"]}
    folders = {"train": "X_train_uDRk9z9", "test": "X_test_xNbnvIa", "unlabeled": "X_unlabeled_mtkxUlo"}
    images, rows = {}, {}
    for split, stems in names.items():
        (root / folders[split] / "images").mkdir(parents=True)
        for s in stems:
            w = 160 if s.startswith("well_3_") else 272
            images[s] = rng.integers(-700, 700, (160, w)).astype(np.int16)
            np.save(root / folders[split] / "images" / f"{s}.npy", images[s])
            if split == "train":
                mask = rng.integers(0, 3, (160, w))
                rows[s] = np.concatenate([mask.ravel(), -np.ones(N_COLUMNS - mask.size, int)])
    order = ["well_3_section_4_patch_2", "well_2_section_22_patch_1", "well_10_section_1_patch_0",
             "well_2_section_3_patch_11"]  # unsorted, like the real file
    pd.DataFrame(np.stack([rows[s] for s in order]), index=order,
                 columns=[str(i) for i in range(N_COLUMNS)]).to_csv(root / "Y_train_T9NrBYo.csv")
    splits = ingest(root)
    train = splits["train"]
    assert train["ids"].tolist() == ["well_2_section_3_patch_11", "well_2_section_22_patch_1",
                                     "well_3_section_4_patch_2", "well_10_section_1_patch_0"]
    assert train["well"].tolist() == [2, 2, 3, 10] and train["section"].tolist() == [3, 22, 4, 1]
    assert train["widths"].tolist() == [272, 272, 160, 272]
    for i, s in enumerate(train["ids"]):
        w = int(train["widths"][i])
        np.testing.assert_array_equal(train["images"][i, :, :w], images[s])
        np.testing.assert_array_equal(train["masks"][i, :, :w],
                                      rows[s][: 160 * w].reshape(160, w))
    assert (train["masks"][2, :, 160:] == -1).all()
    assert splits["test"]["ids"].tolist() == names["test"]


# --- bad inputs: one test each, asserting the message ------------------------------------------------


def test_missing_raw_folder(tmp_path):
    with pytest.raises(EchoCemError, match="raw data folder not found"):
        ingest(tmp_path / "nowhere")


def test_missing_image_folder(raw_copy):
    _one(raw_copy, "X_test_*").rename(raw_copy / "elsewhere")
    with pytest.raises(EchoCemError, match=r"missing folder X_test_\*"):
        ingest(raw_copy)


def test_missing_label_file(raw_copy):
    _one(raw_copy, "Y_train_*.csv").unlink()
    with pytest.raises(EchoCemError, match=r"missing label file Y_train_\*\.csv"):
        ingest(raw_copy)


def test_unparsable_file_name(raw_copy):
    folder = _one(raw_copy, "X_train_*/images")
    np.save(folder / "well_1_patch_3.npy", np.zeros((160, 272), np.int16))
    with pytest.raises(EchoCemError, match=r"well_1_patch_3\.npy: unparsable patch name"):
        ingest(raw_copy)


def test_wrong_dtype(raw_copy):
    f = _one(raw_copy, "X_test_*/images/well_7_section_1_patch_0.npy")
    np.save(f, np.load(f).astype(np.int32))
    with pytest.raises(EchoCemError, match=r"well_7_section_1_patch_0\.npy: wrong dtype int32"):
        ingest(raw_copy)


def test_wrong_shape(raw_copy):
    f = _one(raw_copy, "X_train_*/images/well_1_section_1_patch_1.npy")
    np.save(f, np.load(f)[:100])
    with pytest.raises(EchoCemError, match=r"well_1_section_1_patch_1\.npy: wrong shape \(100, 272\)"):
        ingest(raw_copy)


def test_nan_values(raw_copy):
    f = _one(raw_copy, "X_train_*/images/well_2_section_1_patch_0.npy")
    img = np.load(f).astype(np.float32)
    img[5, 7] = np.nan
    np.save(f, img)
    with pytest.raises(EchoCemError, match=r"well_2_section_1_patch_0\.npy: contains NaN or inf"):
        ingest(raw_copy)


def test_label_row_length_does_not_fit_width(raw_copy):
    rows = _labels(raw_copy)
    rows["well_1_section_1_patch_2"][160 * 160:] = -1
    _write_labels(raw_copy, rows)
    with pytest.raises(EchoCemError, match=r"label row well_1_section_1_patch_2 has 25600 mask values .* "
                                           r"272 wide, so 43520 expected"):
        ingest(raw_copy)


def test_label_padding_inside_mask(raw_copy):
    rows = _labels(raw_copy)
    rows["well_3_section_1_patch_0"][100] = -1  # narrow patch: -1 before the end padding
    _write_labels(raw_copy, rows)
    with pytest.raises(EchoCemError, match=r"well_3_section_1_patch_0 has -1 inside its mask"):
        ingest(raw_copy)


def test_label_row_too_short(raw_copy):
    path = _one(raw_copy, "Y_train_*.csv")
    lines = path.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0]  # one value fewer
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EchoCemError, match=r"Y_train_.*\.csv: label row well_.* has 43519 values, expected 43520"):
        ingest(raw_copy)


def test_label_values_outside_classes(raw_copy):
    rows = _labels(raw_copy)
    rows["well_2_section_1_patch_1"][5] = 3
    _write_labels(raw_copy, rows)
    with pytest.raises(EchoCemError, match=r"well_2_section_1_patch_1 has values \[3\] outside \{0, 1, 2\}"):
        ingest(raw_copy)


def test_image_without_labels(raw_copy):
    rows = _labels(raw_copy)
    del rows["well_4_section_1_patch_1"]
    _write_labels(raw_copy, rows)
    with pytest.raises(EchoCemError, match=r"no labels for images well_4_section_1_patch_1"):
        ingest(raw_copy)


def test_labels_without_image(raw_copy):
    _one(raw_copy, "X_train_*/images/well_4_section_1_patch_2.npy").unlink()
    with pytest.raises(EchoCemError, match=r"labels without an image .*well_4_section_1_patch_2"):
        ingest(raw_copy)


def test_duplicate_image_ids(raw_copy):
    src = _one(raw_copy, "X_train_*/images/well_1_section_1_patch_0.npy")
    (src.parent / "well_1_section_01_patch_0.npy").write_bytes(src.read_bytes())
    with pytest.raises(EchoCemError, match=r"duplicate id well 1 section 1 patch 0"):
        ingest(raw_copy)


def test_duplicate_label_rows(raw_copy):
    rows = _labels(raw_copy)
    _write_labels(raw_copy, rows, extra=[next(iter(rows))])
    with pytest.raises(EchoCemError, match=r"duplicate ids well_"):
        ingest(raw_copy)


def test_empty_test_folder(raw_copy):
    folder = _one(raw_copy, "X_test_*/images")
    for f in folder.glob("*.npy"):
        f.unlink()
    with pytest.raises(EchoCemError) as err:
        ingest(raw_copy)
    assert str(err.value) == f"{folder}: no .npy patches (the test split needs at least one)"


def test_empty_train_folder(raw_copy):
    folder = _one(raw_copy, "X_train_*/images")
    for f in folder.glob("*.npy"):
        f.unlink()
    with pytest.raises(EchoCemError) as err:
        ingest(raw_copy)
    assert str(err.value) == f"{folder}: no .npy patches (the train split needs at least one)"


def test_empty_unlabeled_folder_is_accepted(raw_copy):
    for f in _one(raw_copy, "X_unlabeled_*/images").glob("*.npy"):
        f.unlink()
    splits = ingest(raw_copy)
    assert len(splits["unlabeled"]["ids"]) == 0 and splits["unlabeled"]["images"].shape == (0, 160, 272)
    assert len(splits["test"]["ids"]) == 2


@pytest.mark.parametrize("split, name, width", [("test", "well_7_section_1_patch_1", 200),
                                               ("train", "well_1_section_1_patch_0", 271),
                                               ("train", "well_3_section_1_patch_2", 100)])
def test_width_neither_272_nor_160(raw_copy, split, name, width):
    f = _one(raw_copy, f"X_{split}_*/images/{name}.npy")
    np.save(f, np.zeros((160, width), np.int16))
    with pytest.raises(EchoCemError) as err:
        ingest(raw_copy)
    assert str(err.value) == (f"{f}: wrong width {width} (shape (160, {width})): a patch is 160 x 272, "
                              "or 160 x 160 for a narrow well")


def test_text_file_named_npy(raw_copy):
    f = _one(raw_copy, "X_test_*/images/well_7_section_1_patch_0.npy")
    f.write_text("hello world\n")
    with pytest.raises(EchoCemError) as err:
        ingest(raw_copy)
    assert str(err.value) == f"{f}: not an .npy file (it starts with b'hello ', not b'\\x93NUMPY')"
    f.write_bytes(b"")
    with pytest.raises(EchoCemError, match=r"well_7_section_1_patch_0\.npy: not an \.npy file \(it is empty\)"):
        ingest(raw_copy)


def test_corrupt_npy_after_a_valid_magic(raw_copy):
    f = _one(raw_copy, "X_train_*/images/well_2_section_1_patch_2.npy")
    f.write_bytes(f.read_bytes()[:200])  # header kept, data cut
    with pytest.raises(EchoCemError, match=r"well_2_section_1_patch_2\.npy: not a readable \.npy array"):
        ingest(raw_copy)


def test_label_csv_without_header(raw_copy):
    path = _one(raw_copy, "Y_train_*.csv")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(EchoCemError) as err:
        ingest(raw_copy)
    first = lines[1]
    assert str(err.value) == (
        f"{path}: no header line: the first line holds 43521 fields starting {first[:60] + '...'!r}; "
        "expected the header ',0,1,...,43519' (an index column then columns \"0\"..\"43519\")")
    assert first.startswith("well_")


def test_label_value_that_is_not_an_integer(raw_copy):
    path = _one(raw_copy, "Y_train_*.csv")
    lines = path.read_text().splitlines()
    cells = lines[3].split(",")
    cells[1 + 40] = "1.5"
    lines[3] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(EchoCemError, match=rf"{cells[0]} has a missing, non-integer or out-of-range value '1\.5' "
                                           r"\(column 40; line 4\)"):
        ingest(raw_copy)


def test_stage_leaves_nothing_on_error(raw_copy, tmp_path):
    """The ingest entry script exits 2 with one clear line, and writes no data/ingested."""
    _one(raw_copy, "Y_train_*.csv").unlink()
    write_params(tmp_path, tiny_params())
    proc = run([sys.executable, str(REPO / "stages" / "ingest.py"), "--params", "params.yaml", "--raw",
                str(raw_copy), "--out", "data/ingested", "--card", "reports/metrics/data_card.json"],
               tmp_path, check=False)
    assert proc.returncode == 2 and "missing label file" in proc.stderr
    assert not (tmp_path / "data" / "ingested").exists()
    assert not (tmp_path / "reports" / "metrics" / "data_card.json").exists()
    assert not list((tmp_path / "data").glob(".*")) if (tmp_path / "data").exists() else True
