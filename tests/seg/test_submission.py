"""Submission CSV: round trip, exact layout, the validator's rejections, the CLI."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from echocem.__main__ import main as echocem_main
from echocem.io import EchoCemError, save_npz
from echocem.seg import submission as sub
from echocem.seg.submission import (
    N_COLUMNS,
    cli_validate,
    expected_patches,
    predict_classes,
    read_submission,
    validate_submission,
    write_submission,
    write_validated_submission,
)

H, W = 160, 272


@pytest.fixture()
def patches():
    rng = np.random.default_rng(3)
    widths = np.array([272, 160, 272, 160, 272], dtype=np.int16)
    preds = rng.integers(0, 3, (5, H, W)).astype(np.int8)
    preds[np.broadcast_to(np.arange(W)[None, None, :] >= widths[:, None, None], preds.shape)] = -1
    ids = [f"well_{7 + k % 2}_section_{k}_patch_{k + 1}" for k in range(5)]
    return ids, preds, widths


@pytest.fixture()
def csv_lines(tmp_path, patches):
    """A valid file as a list of lines (header first), and where to write variants."""
    ids, preds, widths = patches
    path = tmp_path / "good.csv"
    write_submission(path, ids, preds, widths)
    return path.read_text().splitlines()


def write_lines(path, lines) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_round_trip_with_narrow_patches(tmp_path, patches):
    ids, preds, widths = patches
    path = tmp_path / "submission.csv"
    write_submission(path, ids, preds, widths)
    assert validate_submission(path, ids, widths) == []
    ids2, preds2, widths2 = read_submission(path)
    assert ids2 == ids
    assert widths2.tolist() == widths.tolist()
    assert preds2.dtype == np.int8 and preds2.shape == (5, H, W)
    np.testing.assert_array_equal(preds2, preds)


def test_layout_is_the_challenge_one_as_pandas_reads_it(tmp_path, patches):
    ids, preds, widths = patches
    path = tmp_path / "submission.csv"
    write_submission(path, ids, preds, widths)
    assert path.read_text().startswith(",0,1,2,3,")
    df = pd.read_csv(path, index_col=0)
    assert list(df.columns) == [str(i) for i in range(N_COLUMNS)]
    assert list(df.index) == ids
    values = df.to_numpy()
    np.testing.assert_array_equal(values[0], preds[0].ravel())  # 272 wide: row-major
    narrow = values[1]
    np.testing.assert_array_equal(narrow[: H * 160], preds[1, :, :160].ravel())  # 160 x 160, row-major
    assert (narrow[H * 160 :] == -1).all() and narrow[H * 160 :].size == 17920  # padding at the end only


def test_writer_refuses_bad_predictions(tmp_path, patches):
    ids, preds, widths = patches
    bad = preds.copy()
    bad[0, 5, 5] = 3
    with pytest.raises(EchoCemError, match="0, 1 or 2"):
        write_submission(tmp_path / "x.csv", ids, bad, widths)
    with pytest.raises(EchoCemError, match="duplicate"):
        write_submission(tmp_path / "x.csv", [ids[0]] * 5, preds, widths)
    assert not (tmp_path / "x.csv").exists()


def test_rejects_wrong_column_count(tmp_path, csv_lines, patches):
    ids, _, widths = patches
    lines = [line.rsplit(",", 1)[0] for line in csv_lines]  # drop the last column everywhere
    problems = validate_submission(write_lines(tmp_path / "cols.csv", lines), ids, widths)
    assert any("header: 43519 value columns" in p for p in problems)
    assert any(f"row '{ids[0]}' (line 2): 43519 values, expected 43520" in p for p in problems)


def test_rejects_wrong_column_names(tmp_path, csv_lines):
    lines = list(csv_lines)
    lines[0] = lines[0].replace(",17,", ",seventeen,")
    problems = validate_submission(write_lines(tmp_path / "names.csv", lines))
    assert problems == ["header: column 18 is named 'seventeen', expected '17' (columns must be \"0\"..\"43519\" in order)"]


def test_rejects_padding_inside_the_mask(tmp_path, csv_lines, patches):
    ids, _, widths = patches
    lines = list(csv_lines)
    cells = lines[2].split(",")  # the first 160-wide patch
    cells[1 + 100] = "-1"
    lines[2] = ",".join(cells)
    problems = validate_submission(write_lines(tmp_path / "pad.csv", lines), ids, widths)
    assert len(problems) == 1 and f"row '{ids[1]}'" in problems[0]
    assert "-1 padding must only fill the end" in problems[0]


def test_rejects_padding_of_the_wrong_length(tmp_path, csv_lines, patches):
    ids, _, widths = patches
    lines = list(csv_lines)
    cells = lines[1].split(",")  # a 272-wide patch written as if it were 160 wide
    cells[1 + H * 160 :] = ["-1"] * (N_COLUMNS - H * 160)
    lines[1] = ",".join(cells)
    cells = lines[4].split(",")  # a 160-wide patch whose mask is 100 values too long
    cells[1 + H * 160 : 1 + H * 160 + 100] = ["0"] * 100
    lines[4] = ",".join(cells)
    problems = validate_submission(write_lines(tmp_path / "len.csv", lines), ids, widths)
    assert any(f"row '{ids[0]}'" in p and "mask part is 160 x 160" in p and "the patch is 160 x 272" in p for p in problems)
    assert any(f"row '{ids[3]}'" in p and "holds 25700 values before the -1 padding" in p for p in problems)
    # without the expected widths the first is a valid-looking 160-wide patch, the second still is not
    alone = validate_submission(tmp_path / "len.csv")
    assert len(alone) == 1 and f"row '{ids[3]}'" in alone[0]


def test_rejects_values_outside_the_classes(tmp_path, csv_lines, patches):
    ids, _, widths = patches
    lines = list(csv_lines)
    cells = lines[1].split(",")
    cells[1 + 7] = "3"
    lines[1] = ",".join(cells)
    cells = lines[4].split(",")
    cells[1 + 9] = "1.0"
    cells[1 + 11] = "-2"
    lines[4] = ",".join(cells)
    problems = validate_submission(write_lines(tmp_path / "vals.csv", lines), ids, widths)
    assert f"row '{ids[0]}' (line 2): 1 values outside {{0,1,2}} in the mask part (first '3' at column 7)" in problems
    assert f"row '{ids[3]}' (line 5): 2 values outside {{0,1,2}} in the mask part (first '1.0' at column 9)" in problems
    assert len(problems) == 2


def test_rejects_missing_extra_and_duplicate_patches(tmp_path, csv_lines, patches):
    ids, _, widths = patches
    lines = list(csv_lines[:-1])  # the last patch is missing
    lines.append(lines[1])  # the first one twice
    lines.append(lines[2].replace(ids[1], "well_99_section_1_patch_1", 1))  # one not in the test set
    problems = validate_submission(write_lines(tmp_path / "ids.csv", lines), ids, widths)
    assert f"row '{ids[0]}' (line 6): duplicate of line 2" in problems
    assert f"1 expected patches missing, e.g. ['{ids[4]}']" in problems
    assert "1 patches not in the test set, e.g. ['well_99_section_1_patch_1']" in problems
    assert len(problems) == 3


def test_validator_never_raises_on_broken_files(tmp_path):
    assert validate_submission(tmp_path / "absent.csv")[0].endswith("file not found")
    (tmp_path / "empty.csv").write_text("")
    assert "empty" in validate_submission(tmp_path / "empty.csv")[0]
    (tmp_path / "junk.csv").write_bytes(b"\x00\xff,,\n\x01")
    assert validate_submission(tmp_path / "junk.csv")
    with pytest.raises(EchoCemError, match="not a valid submission"):
        read_submission(tmp_path / "junk.csv")


def test_write_validated_leaves_nothing_when_validation_fails(tmp_path, patches, monkeypatch):
    ids, preds, widths = patches
    path = tmp_path / "out" / "submission.csv"
    assert write_validated_submission(path, ids, preds, widths) == 5
    before = path.read_bytes()

    original = sub.write_rows_csv
    # simulate a writer bug: the last row goes missing from the file
    monkeypatch.setattr(sub, "write_rows_csv", lambda p, i, r: original(p, i[:-1], r[:-1]))
    with pytest.raises(EchoCemError, match="fails validation"):
        write_validated_submission(path, ids, preds, widths)
    assert path.read_bytes() == before  # the previous complete file is untouched
    assert sorted(x.name for x in path.parent.iterdir()) == ["submission.csv"]  # no temporary left


def test_cli_against_an_ingested_test_split_and_raw_folder(tmp_path, patches, capsys):
    ids, preds, widths = patches
    path = tmp_path / "submission.csv"
    write_submission(path, ids, preds, widths)
    save_npz(tmp_path / "ingested" / "test.npz", ids=np.array(ids), widths=widths)
    raw = tmp_path / "X_test_abc" / "images"
    raw.mkdir(parents=True)
    for i, w in zip(ids, widths):
        np.save(raw / f"{i}.npy", np.zeros((H, int(w)), dtype=np.int16))
    assert expected_patches(tmp_path / "ingested")[0] == ids
    got_ids, got_widths = expected_patches(tmp_path)
    assert sorted(got_ids) == sorted(ids) and sorted(got_widths.tolist()) == sorted(widths.tolist())

    assert cli_validate([str(path), "--test-dir", str(tmp_path / "ingested" / "test.npz")]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {path} (5 rows, 43520 columns) against 5 test patches")
    assert echocem_main(["validate-submission", str(path), "--test-dir", str(tmp_path)]) == 0

    save_npz(tmp_path / "other.npz", ids=np.array(ids + ["well_9_section_1_patch_1"]), widths=np.append(widths, 272))
    assert echocem_main(["validate-submission", str(path), "--test-dir", str(tmp_path / "other.npz")]) == 1
    out = capsys.readouterr().out
    assert "1 problem(s)" in out and "1 expected patches missing" in out
    assert cli_validate([str(path), "--test-dir", str(tmp_path / "nowhere")]) == 2


def test_cli_checks_against_the_ingested_test_split_by_default(tmp_path, patches, capsys, monkeypatch):
    """With data/ingested/test.npz under the current directory, no --test-dir is needed."""
    ids, preds, widths = patches
    path = tmp_path / "submission.csv"
    write_submission(path, ids[:-1], preds[:-1], widths[:-1])  # the last test patch is missing
    save_npz(tmp_path / "data" / "ingested" / "test.npz", ids=np.array(ids), widths=widths)
    monkeypatch.chdir(tmp_path)
    assert cli_validate([str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [f"{path}: 1 problem(s); checked against 5 test patches (data/ingested/test.npz)",
                   f"  - 1 expected patches missing, e.g. ['{ids[4]}']"]

    write_submission(path, ids, preds, widths)
    assert echocem_main(["validate-submission", str(path)]) == 0
    assert capsys.readouterr().out == (f"OK: {path} (5 rows, 43520 columns) against 5 test patches "
                                       "(data/ingested/test.npz)\n")

    # --test-dir still overrides the default
    save_npz(tmp_path / "other" / "test.npz", ids=np.array(ids[:-1]), widths=widths[:-1])
    assert cli_validate([str(path), "--test-dir", str(tmp_path / "other")]) == 1
    assert f"1 patches not in the test set, e.g. ['{ids[4]}']" in capsys.readouterr().out


def test_cli_without_a_test_set_says_it_checked_the_format_only(tmp_path, patches, capsys, monkeypatch):
    ids, preds, widths = patches
    path = tmp_path / "submission.csv"
    write_submission(path, ids[:-1], preds[:-1], widths[:-1])
    monkeypatch.chdir(tmp_path)  # no data/ingested/test.npz here
    assert cli_validate([str(path)]) == 0
    assert capsys.readouterr().out == (
        f"OK: {path} (4 rows, 43520 columns); format only: no test set to compare with "
        "(data/ingested/test.npz not found here, no --test-dir), so the ids, the row count and each row's width "
        "were not checked\n")
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0]
    path.write_text("\n".join(lines) + "\n")
    assert cli_validate([str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: 1 problem(s); checked format only: no test set to compare with")
    assert out[1] == f"  - row '{ids[0]}' (line 2): 43519 values, expected 43520"


def test_cli_exit_2_when_the_file_or_the_test_set_can_not_be_read(tmp_path, patches, capsys, monkeypatch):
    ids, preds, widths = patches
    monkeypatch.chdir(tmp_path)
    assert cli_validate([str(tmp_path / "absent.csv")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'absent.csv'}: file not found\n"
    path = tmp_path / "submission.csv"
    write_submission(path, ids, preds, widths)
    raw = tmp_path / "X_test_abc" / "images"
    raw.mkdir(parents=True)
    (raw / f"{ids[0]}.npy").write_text("not numpy")
    assert cli_validate([str(path), "--test-dir", str(tmp_path / "X_test_abc")]) == 2
    assert capsys.readouterr().err == (f"error: {raw / (ids[0] + '.npy')}: not an .npy file "
                                       "(it starts with b'not nu', not b'\\x93NUMPY')\n")
    np.save(raw / f"{ids[0]}.npy", np.zeros((H, 200), np.int16))
    assert cli_validate([str(path), "--test-dir", str(raw)]) == 2
    assert "wrong width 200 (shape (160, 200))" in capsys.readouterr().err


def one_hot(classes: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.eye(3, dtype=np.float32)[np.clip(classes, 0, 2)], -1, 1)


def _chunks(truth: np.ndarray, order: list[list[int]]):
    """(indices, one-hot probabilities of the truth) in the given groups: chunks need not be slices."""
    return [(np.array(group), one_hot(truth[group])) for group in order]


def test_predict_classes_takes_chunks_refines_and_applies_rules(patches):
    _, truth, widths = patches
    images = np.zeros(truth.shape, dtype=np.int16)
    n = len(truth)
    groups = [[3, 0], [1], [4, 2]]  # whole sections at a time: not consecutive slices
    plain = predict_classes(images, widths, _chunks(truth, groups))
    np.testing.assert_array_equal(plain, truth)

    def swap(probs, imgs, w):  # a "refiner" that swaps classes 1 and 2
        return probs[:, [0, 2, 1]]

    swapped = predict_classes(images, widths, _chunks(truth, groups), refine=swap)
    expected = np.where(truth == 1, 2, np.where(truth == 2, 1, truth))
    np.testing.assert_array_equal(swapped, expected)

    clean = np.zeros_like(truth)
    clean[:, :, 20:36] = 2
    clean[:, 70:73, 200:203] = 2  # a casing speck the rules remove
    clean[np.broadcast_to(np.arange(W)[None, None, :] >= widths[:, None, None], clean.shape)] = -1
    rules = dict(open=False, close=False, morph_size=3, casing_largest_component=True,
                 tie_single_interval=False, tie_support_rows=2)
    cleaned = predict_classes(images, widths, _chunks(clean, groups), rules_cfg=rules)
    assert (cleaned[:, 70:73, 200:203] != 2).all()
    assert (cleaned[:, :, 20:36] == 2).all()

    with pytest.raises(EchoCemError, match="shape"):
        predict_classes(images, widths, [(np.arange(n), np.zeros((n, 2, H, W)))])
    with pytest.raises(EchoCemError, match="were not predicted"):
        predict_classes(images, widths, _chunks(truth, [[0]]))
    with pytest.raises(EchoCemError, match="predicted twice"):
        predict_classes(images, widths, _chunks(truth, [list(range(n)), [0]]))
