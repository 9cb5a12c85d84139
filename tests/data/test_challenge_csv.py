"""The challenge CSV module: exact round trips (narrow patches included) and every refusal's message."""
from __future__ import annotations

import re

import numpy as np
import pytest

from echocem.data.challenge_csv import (
    FULL_WIDTH,
    HEADER,
    HEIGHT,
    N_COLUMNS,
    PAD_VALUE,
    check_ids,
    check_label_rows,
    decode_rows,
    encode_rows,
    header_problem,
    read_csv,
    row_shapes,
    scan_csv,
    stack_masks,
    write_csv,
    write_rows_csv,
)
from echocem.io import EchoCemError

IDS = ["well_3_section_2_patch_1", "well_1_section_1_patch_0", "well_4_section_9_patch_10", "well_2_section_1_patch_3"]
WIDTHS = [160, 272, 160, 272]


@pytest.fixture()
def masks() -> list[np.ndarray]:
    """Masks of the patches' true widths (two 160-wide), every class present."""
    rng = np.random.default_rng(5)
    return [rng.integers(0, 3, (HEIGHT, w)).astype(np.int8) for w in WIDTHS]


@pytest.fixture()
def csv_path(tmp_path, masks):
    path = tmp_path / "labels.csv"
    write_csv(path, IDS, encode_rows(*stack_masks(masks)))
    return path


def lines_of(path) -> list[str]:
    return path.read_text().splitlines()


def write_lines(path, lines: list[str], end: str = "\n"):
    path.write_text(end.join(lines) + end)
    return path


def set_cell(line: str, column: int, token: str) -> str:
    cells = line.split(",")
    cells[1 + column] = token
    return ",".join(cells)


# --- round trip -------------------------------------------------------------------------------------


def test_write_then_read_returns_the_exact_masks(csv_path, masks):
    ids, rows = read_csv(csv_path)
    assert ids.tolist() == IDS  # file order kept (it need not be sorted)
    assert rows.dtype == np.int8 and rows.shape == (4, N_COLUMNS)
    shapes = row_shapes(rows)
    assert shapes.canonical().all()
    widths = shapes.mask_len // HEIGHT
    assert widths.tolist() == WIDTHS
    back = decode_rows(rows, widths)
    for i, m in enumerate(masks):
        w = m.shape[1]
        np.testing.assert_array_equal(back[i, :, :w], m)
        assert (back[i, :, w:] == PAD_VALUE).all()
    # the narrow rows: 25,600 mask values, then 17,920 values -1 at the END of the row
    np.testing.assert_array_equal(rows[0, : HEIGHT * 160], masks[0].ravel())
    assert (rows[0, HEIGHT * 160:] == PAD_VALUE).all() and rows[0, HEIGHT * 160:].size == 17920


def test_encode_decode_are_inverse(masks):
    stack, widths = stack_masks(masks)
    assert stack.shape == (4, HEIGHT, FULL_WIDTH) and widths.tolist() == WIDTHS
    assert (stack[0, :, 160:] == PAD_VALUE).all()
    rows = encode_rows(stack, widths)
    np.testing.assert_array_equal(decode_rows(rows, widths), stack)


def test_exact_bytes_of_the_written_file(csv_path, masks):
    data = csv_path.read_bytes()
    assert data.startswith(HEADER) and HEADER.startswith(b",0,1,2,3,") and HEADER.endswith(b",43519\n")
    first = data[len(HEADER):].split(b"\n", 1)[0].decode()
    expected = [IDS[0], *map(str, masks[0].ravel().tolist()), *["-1"] * (N_COLUMNS - HEIGHT * 160)]
    assert first == ",".join(expected)


def test_the_general_tokenizer_reads_what_the_fast_parser_does_not(tmp_path, csv_path, masks):
    """Quoted ids, \\r\\n line ends, blank lines, no final newline, padding written '-01': same masks."""
    lines = lines_of(csv_path)
    lines[1] = f'"{IDS[0]}"' + lines[1][len(IDS[0]):]
    lines[2] = re.sub(r"(?<=,)-1(?=,|$)", "-01", lines[2])  # not canonical bytes: general path
    path = tmp_path / "variant.csv"
    path.write_bytes(("\r\n".join(lines[:3] + [""] + lines[3:])).encode())
    ids, rows = read_csv(path)
    assert ids.tolist() == IDS
    np.testing.assert_array_equal(rows, read_csv(csv_path)[1])


def test_scan_of_a_valid_file_keeps_every_row(csv_path):
    scan = scan_csv(csv_path, IDS[::-1], WIDTHS[::-1])
    assert scan.problems == []
    assert scan.ids == IDS and scan.widths.tolist() == WIDTHS
    np.testing.assert_array_equal(scan.rows, read_csv(csv_path)[1])


# --- encoding refusals -----------------------------------------------------------------------------


def test_stack_masks_refuses_a_wrong_shape(masks):
    with pytest.raises(EchoCemError, match=re.escape("mask 1: shape (100, 272), expected (160, W) with 1 <= W <= 272")):
        stack_masks([masks[0], np.zeros((100, 272), np.int8)])


def test_encode_rows_refusals(masks):
    stack, widths = stack_masks(masks)
    with pytest.raises(EchoCemError, match=re.escape("masks must be (N, 160, 272); got (4, 160, 100)")):
        encode_rows(stack[:, :, :100], widths)
    with pytest.raises(EchoCemError, match=re.escape("3 widths for 4 masks")):
        encode_rows(stack, widths[:3])
    with pytest.raises(EchoCemError, match=re.escape("patch width 300 outside 1..272")):
        encode_rows(stack, [160, 300, 160, 272])
    bad = stack.copy()
    bad[1, 7, 9] = 3
    with pytest.raises(EchoCemError, match=re.escape("classes must be 0, 1 or 2 inside the patch width; found [3] in mask 1")):
        encode_rows(bad, widths)
    with pytest.raises(EchoCemError, match=re.escape("found [-1] in mask 0")):  # the width says 272, the mask 160
        encode_rows(stack, [272, 272, 160, 272])


def test_check_ids_refusals():
    assert check_ids(np.array(IDS)) == IDS
    with pytest.raises(EchoCemError, match=re.escape("patch id 'a,b' is empty or holds a comma, quote or newline")):
        check_ids(["a,b"])
    with pytest.raises(EchoCemError, match=re.escape("patch id '' is empty")):
        check_ids(["x", ""])
    with pytest.raises(EchoCemError, match=re.escape("duplicate patch ids well_1_section_1_patch_0")):
        check_ids(IDS + [IDS[1]])


# --- writing refusals ------------------------------------------------------------------------------


def test_writer_refusals_leave_no_file(tmp_path, masks):
    rows = encode_rows(*stack_masks(masks))
    path = tmp_path / "out.csv"
    with pytest.raises(EchoCemError, match=re.escape(f"{path}: duplicate patch ids {IDS[0]}")):
        write_csv(path, [IDS[0]] * 4, rows)
    with pytest.raises(EchoCemError, match=re.escape(f"{path}: rows must be (N, 43520); got (4, 10)")):
        write_csv(path, IDS, rows[:, :10])
    with pytest.raises(EchoCemError, match=re.escape(f"{path}: 3 ids for 4 rows")):
        write_rows_csv(path, IDS[:3], rows)
    broken = rows.copy()
    broken[2, 5] = PAD_VALUE  # -1 inside the mask
    with pytest.raises(EchoCemError, match=re.escape(
            f"{path}: row '{IDS[2]}' is not a 160 x W mask of classes 0, 1, 2 followed by -1 padding (1 such rows)")):
        write_csv(path, IDS, broken)
    assert list(tmp_path.iterdir()) == []


# --- reading refusals (read_csv names the file, the row, the column and the value) ------------------


def test_read_refuses_a_missing_or_empty_file(tmp_path):
    with pytest.raises(EchoCemError, match=re.escape(f"{tmp_path / 'nowhere.csv'}: file not found")):
        read_csv(tmp_path / "nowhere.csv")
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(EchoCemError, match=re.escape(f"{tmp_path / 'empty.csv'}: the file is empty (no header line)")):
        read_csv(tmp_path / "empty.csv")


def test_read_refuses_a_file_without_header(tmp_path, csv_path):
    path = write_lines(tmp_path / "nohead.csv", lines_of(csv_path)[1:])
    first = lines_of(csv_path)[1]
    with pytest.raises(EchoCemError) as err:
        read_csv(path)
    assert str(err.value) == (
        f"{path}: no header line: the first line holds 43521 fields starting {first[:60] + '...'!r}; expected "
        "the header ',0,1,...,43519' (an index column then columns \"0\"..\"43519\")")


def test_header_problems():
    assert header_problem(HEADER.rstrip(b"\n")) is None
    assert header_problem(b"id" + HEADER.rstrip(b"\n")) is None  # a named index column is fine
    assert header_problem(HEADER.rstrip(b"\n").rsplit(b",", 1)[0]) == (
        'header: 43519 value columns after the index, expected 43520 ("0".."43519")')
    assert header_problem(HEADER.rstrip(b"\n").replace(b",17,", b",seventeen,")) == (
        "header: column 18 is named 'seventeen', expected '17' (columns must be \"0\"..\"43519\" in order)")
    no_index = HEADER.rstrip(b"\n")[1:]  # pandas' to_csv(index=False)
    assert header_problem(no_index) == (
        "header without the index column: the first line holds 43520 fields starting "
        "'0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,2...'; expected the header ',0,1,...,43519' "
        "(an index column then columns \"0\"..\"43519\")")
    assert header_problem(b"hello") == (
        "no header line: the first line holds 1 fields starting 'hello'; expected the header ',0,1,...,43519' "
        "(an index column then columns \"0\"..\"43519\")")


def test_read_refuses_a_wrong_header(tmp_path, csv_path):
    lines = lines_of(csv_path)
    lines[0] = lines[0].replace(",17,", ",seventeen,")
    path = write_lines(tmp_path / "names.csv", lines)
    with pytest.raises(EchoCemError, match=re.escape(f"{path}: header: column 18 is named 'seventeen', expected '17'")):
        read_csv(path)


def test_read_refuses_a_row_of_the_wrong_length(tmp_path, csv_path):
    lines = lines_of(csv_path)
    lines[3] = lines[3].rsplit(",", 1)[0]
    path = write_lines(tmp_path / "short.csv", lines)
    with pytest.raises(EchoCemError, match=re.escape(
            f"{path}: label row {IDS[2]} has 43519 values, expected 43520 (wrong number of values; line 4)")):
        read_csv(path)


@pytest.mark.parametrize("token", ["1.0", "", "x", "999", "-128"])
def test_read_refuses_a_value_that_is_not_a_small_integer(tmp_path, csv_path, token):
    lines = lines_of(csv_path)
    lines[2] = set_cell(lines[2], 9, token)
    path = write_lines(tmp_path / "token.csv", lines)
    with pytest.raises(EchoCemError, match=re.escape(
            f"{path}: label row {IDS[1]} has a missing, non-integer or out-of-range value {token!r} (column 9; line 3)")):
        read_csv(path)


def test_read_names_the_first_broken_row_in_file_order(tmp_path, csv_path):
    lines = lines_of(csv_path)
    lines[2] = set_cell(lines[2], 4, "x")
    lines[4] = lines[4] + ",0"
    path = write_lines(tmp_path / "two.csv", lines)
    with pytest.raises(EchoCemError, match=re.escape(f"label row {IDS[1]} has a missing, non-integer")):
        read_csv(path)


# --- label-row checks (ingestion: raise at the first problem) ----------------------------------------


def test_check_label_rows_refusals(masks):
    rows = encode_rows(*stack_masks(masks))
    check_label_rows("Y.csv", IDS, rows, WIDTHS)  # valid: no exception
    with pytest.raises(EchoCemError, match=re.escape(
            f"Y.csv: label row {IDS[1]} has 43520 mask values before its -1 padding; its image is 160 wide, "
            "so 25600 expected (1 such rows)")):
        check_label_rows("Y.csv", IDS, rows, [160, 160, 160, 272])
    inner = rows.copy()
    inner[0, 100] = PAD_VALUE
    with pytest.raises(EchoCemError, match=re.escape(
            f"Y.csv: label row {IDS[0]} has -1 inside its mask at column 100 (padding must be at the end only; "
            "1 such rows)")):
        check_label_rows("Y.csv", IDS, inner, WIDTHS)
    outside = rows.copy()
    outside[3, 17] = 7
    outside[3, 20] = -3
    with pytest.raises(EchoCemError, match=re.escape(
            f"Y.csv: label row {IDS[3]} has values [-3, 7] outside {{0, 1, 2}} (first at column 17; 1 such rows)")):
        check_label_rows("Y.csv", IDS, outside, WIDTHS)


# --- scan_csv: every problem collected, one line each ------------------------------------------------


def test_scan_collects_every_kind_of_problem(tmp_path, csv_path):
    lines = lines_of(csv_path)
    lines[1] = lines[1].rsplit(",", 1)[0]  # one value short
    lines[2] = set_cell(set_cell(lines[2], 50, "-1"), 51, "2")  # -1 inside the mask
    lines[3] = set_cell(lines[3], 7, "3")  # a value outside the classes
    lines.append(lines[4])  # a duplicate
    lines.append("," + lines[4].split(",", 1)[1])  # an empty id
    path = write_lines(tmp_path / "bad.csv", lines)
    assert scan_csv(path, IDS + ["well_9_section_1_patch_1"]).problems == [
        f"row '{IDS[0]}' (line 2): 43519 values, expected 43520",
        f"row '{IDS[1]}' (line 3): -1 padding must only fill the end of the row; -1 at column 50 but '2' at column 51",
        f"row '{IDS[2]}' (line 4): 1 values outside {{0,1,2}} in the mask part (first '3' at column 7)",
        f"row '{IDS[3]}' (line 6): duplicate of line 5",
        "line 7: empty patch id in the index column",
        "1 expected patches missing, e.g. ['well_9_section_1_patch_1']",
    ]


def test_scan_width_and_length_problems(tmp_path, csv_path):
    lines = lines_of(csv_path)
    lines[2] = lines[2].split(",", 1)[0] + "," + ",".join(["1"] * 100 + ["-1"] * (N_COLUMNS - 100))
    path = write_lines(tmp_path / "len.csv", lines)
    assert scan_csv(path).problems == [
        f"row '{IDS[1]}' (line 3): the mask part holds 100 values before the -1 padding; expected 160 x width"]
    assert scan_csv(csv_path, IDS, [272, 272, 160, 272]).problems == [
        f"row '{IDS[0]}' (line 2): mask part is 160 x 160 (25600 values, then 17920 x -1); the patch is 160 x 272, "
        "expected 43520 values then 0 x -1"]


def test_scan_extra_rows_and_summary_of_many(tmp_path, csv_path):
    lines = lines_of(csv_path)
    body = lines[1].split(",", 1)[1]
    lines += [f"well_20_section_1_patch_{k},{body}" for k in range(12)]
    path = write_lines(tmp_path / "extra.csv", lines)
    problems = scan_csv(path, IDS, WIDTHS).problems
    assert problems == ["12 patches not in the test set, e.g. ['well_20_section_1_patch_0', 'well_20_section_1_patch_1', "
                        "'well_20_section_1_patch_2', 'well_20_section_1_patch_3', 'well_20_section_1_patch_4']"]
    many = [lines[0]] + [f"well_20_section_1_patch_{k},{body},0" for k in range(12)]
    problems = scan_csv(write_lines(tmp_path / "many.csv", many)).problems
    assert len(problems) == 11 and problems[-1] == "... and 2 more rows with this problem (columns)"


def test_scan_of_files_without_rows(tmp_path, csv_path):
    header_only = write_lines(tmp_path / "header.csv", lines_of(csv_path)[:1])
    assert scan_csv(header_only).problems == ["no data rows after the header"]
    (tmp_path / "empty.csv").write_bytes(b"")
    assert scan_csv(tmp_path / "empty.csv").problems == ["the file is empty (no header line)"]
    nohead = write_lines(tmp_path / "nohead.csv", lines_of(csv_path)[1:])
    problems = scan_csv(nohead, IDS).problems
    assert problems[0].startswith("no header line: the first line holds 43521 fields starting 'well_3_section_2_patch_1,")
    assert problems[1] == f"1 expected patches missing, e.g. ['{IDS[0]}']"  # a CSV reader takes that row as the header


def test_scan_raises_only_when_it_can_not_read(tmp_path, csv_path):
    with pytest.raises(EchoCemError, match=re.escape(f"{tmp_path / 'absent.csv'}: file not found")):
        scan_csv(tmp_path / "absent.csv")
    with pytest.raises(EchoCemError, match=re.escape("3 expected widths for 4 expected ids")):
        scan_csv(csv_path, IDS, WIDTHS[:3])
