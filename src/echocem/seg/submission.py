"""The challenge submission CSV: writer, reader and validator.

Format (the same as the challenge's Y_train CSV):

- header: an empty index name, then the columns "0".."43519" (43,520 = 160 x 272),
  i.e. the line pandas writes for an unnamed index: `,0,1,...,43519`;
- one row per test patch: the patch stem (`well_7_section_1_patch_3`), then the
  row-major flattening of its 160 x W mask of integers 0/1/2;
- a patch narrower than 272 (W = 160) is its 160 x 160 flattening (25,600 values)
  followed by 17,920 values -1: the padding sits at the END of the row, never
  inside each image row.

The writer builds the bytes of each row with NumPy (one token per cell, no
Python loop over cells) and writes atomically. The reader/validator parses
rows the same way, so checking a 1,000-row file takes about a second. Anyone
can check a file before uploading it:

    python -m echocem validate-submission submission/submission.csv --test-dir data/ingested/test.npz

`--test-dir` takes an ingested `test.npz`, a folder holding one, or a folder of
test `.npy` patches (the raw `X_test_*` folder or its `images/`), and adds the
checks that every test patch is there exactly once with the right width.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from echocem.io import EchoCemError, atomic_path, load_npz

HEIGHT = 160
FULL_WIDTH = 272
N_COLUMNS = HEIGHT * FULL_WIDTH  # 43,520
PAD_VALUE = -1
HEADER = ("," + ",".join(str(i) for i in range(N_COLUMNS)) + "\n").encode()
_COMMA, _MINUS, _ZERO = ord(","), ord("-"), ord("0")
_BAD = -99  # parsed value of a token that is not an integer in -1..9
_MAX_PER_KIND = 10  # problem lines of one kind listed before summarising the rest


# ---------------------------------------------------------------- encoding

def encode_rows(preds: np.ndarray, widths: Sequence[int] | np.ndarray) -> np.ndarray:
    """(N, 43520) int8 submission rows: each patch's 160 x width mask flattened, -1 after it."""
    preds = np.asarray(preds)
    widths = np.asarray(widths, dtype=np.int64).reshape(-1)
    if preds.ndim != 3 or preds.shape[1:] != (HEIGHT, FULL_WIDTH):
        raise EchoCemError(f"submission: predictions must be (N, {HEIGHT}, {FULL_WIDTH}); got {preds.shape}")
    if widths.shape[0] != preds.shape[0]:
        raise EchoCemError(f"submission: {widths.shape[0]} widths for {preds.shape[0]} patches")
    rows = np.full((preds.shape[0], N_COLUMNS), PAD_VALUE, dtype=np.int8)
    for w in np.unique(widths):
        if not 1 <= w <= FULL_WIDTH:
            raise EchoCemError(f"submission: patch width {int(w)} outside 1..{FULL_WIDTH}")
        idx = np.flatnonzero(widths == w)
        part = preds[idx, :, :w]
        if part.size and (part.min() < 0 or part.max() > 2):
            bad = np.unique(part[(part < 0) | (part > 2)]).tolist()
            raise EchoCemError(f"submission: predicted classes must be 0, 1 or 2 inside the patch width; found {bad}")
        rows[idx, : HEIGHT * w] = part.reshape(len(idx), -1)
    return rows


def decode_rows(rows: np.ndarray, widths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Inverse of `encode_rows`: (N, 160, 272) int8 masks with -1 right of each width."""
    rows = np.asarray(rows)
    widths = np.asarray(widths, dtype=np.int64).reshape(-1)
    preds = np.full((rows.shape[0], HEIGHT, FULL_WIDTH), PAD_VALUE, dtype=np.int8)
    for w in np.unique(widths):
        idx = np.flatnonzero(widths == w)
        preds[idx, :, :w] = rows[idx, : HEIGHT * w].reshape(len(idx), HEIGHT, w)
    return preds


def check_ids(ids: Sequence[str]) -> list[str]:
    """Patch ids as str; EchoCemError for an empty, duplicated or CSV-breaking id."""
    ids = [str(i) for i in ids]
    for i in ids:
        if not i or any(ch in i for ch in ',"\r\n'):
            raise EchoCemError(f"submission: patch id {i!r} is empty or holds a comma, quote or newline")
    if len(set(ids)) != len(ids):
        dup = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise EchoCemError(f"submission: duplicate patch ids {dup[:5]}")
    return ids


def write_rows_csv(path: str | os.PathLike, ids: Sequence[str], rows: np.ndarray) -> None:
    """Write encoded rows (N, 43520) with their ids to `path` (not atomic; see write_submission)."""
    rows = np.asarray(rows)
    mask_lens = np.where((rows == PAD_VALUE).any(axis=1), np.argmax(rows == PAD_VALUE, axis=1), N_COLUMNS)
    with open(path, "wb") as f:
        f.write(HEADER)
        for name, row, m in zip(ids, rows, mask_lens):
            # mask cells are one digit: ",d" as two bytes; the padding is ",-1" repeated
            body = np.empty(2 * m, dtype=np.uint8)
            body[0::2] = _COMMA
            body[1::2] = _ZERO + row[:m].astype(np.uint8)
            f.write(name.encode())
            f.write(body.tobytes())
            f.write(b",-1" * (N_COLUMNS - int(m)))
            f.write(b"\n")


def write_submission(
    path: str | os.PathLike, ids: Sequence[str], preds: np.ndarray, widths: Sequence[int] | np.ndarray
) -> None:
    """Write predictions (N, 160, 272) as a challenge CSV, atomically, rows in the order given."""
    ids = check_ids(ids)
    rows = encode_rows(preds, widths)
    if len(ids) != rows.shape[0]:
        raise EchoCemError(f"submission: {len(ids)} ids for {rows.shape[0]} predictions")
    with atomic_path(path) as tmp:
        write_rows_csv(tmp, ids, rows)


def write_validated_submission(
    path: str | os.PathLike, ids: Sequence[str], preds: np.ndarray, widths: Sequence[int] | np.ndarray
) -> int:
    """Write the CSV, validate the written file against ids/widths, then move it into place.

    A validation problem raises EchoCemError; the file is not created (a
    previous file at `path` stays as it was). Returns the number of rows written.
    """
    ids = check_ids(ids)
    rows = encode_rows(preds, widths)
    if len(ids) != rows.shape[0]:
        raise EchoCemError(f"submission: {len(ids)} ids for {rows.shape[0]} predictions")
    with atomic_path(path) as tmp:
        write_rows_csv(tmp, ids, rows)
        problems = validate_submission(tmp, expected_ids=ids, expected_widths=widths)
        if problems:
            raise EchoCemError(f"{path}: the written submission fails validation:\n  - " + "\n  - ".join(problems))
    return len(ids)


# ---------------------------------------------------------------- prediction

# (raw images (n, H, W), widths (n,)) -> class probabilities (n, 3, H, W)
ProbaFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
# (probabilities (n, 3, H, W), raw images, widths) -> refined probabilities (n, 3, H, W)
RefineFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def predict_classes(
    images: np.ndarray,
    widths: Sequence[int] | np.ndarray,
    predict_proba: ProbaFn,
    refine: RefineFn | None = None,
    rules_cfg: Mapping | None = None,
    chunk: int = 128,
) -> np.ndarray:
    """(N, 160, 272) int8 classes, -1 padding: argmax of (refined) probabilities, then rules.

    Works `chunk` patches at a time so the float probabilities of the whole
    test set are never held at once. `rules_cfg` None: no rule-based clean-up.
    """
    from echocem.seg.rules import apply_rules

    widths = np.asarray(widths, dtype=np.int64).reshape(-1)
    n = images.shape[0]
    preds = np.full((n, HEIGHT, FULL_WIDTH), PAD_VALUE, dtype=np.int8)
    cols = np.arange(FULL_WIDTH)
    for start in tqdm(range(0, n, chunk), desc="predict test", unit="chunk"):
        sl = slice(start, start + chunk)
        probs = np.asarray(predict_proba(images[sl], widths[sl]))
        expected = (len(widths[sl]), 3, HEIGHT, FULL_WIDTH)
        if probs.shape != expected:
            raise EchoCemError(f"submission: the U-Net returned probabilities of shape {probs.shape}, expected {expected}")
        if refine is not None:
            probs = np.asarray(refine(probs, images[sl], widths[sl]))
            if probs.shape != expected:
                raise EchoCemError(f"submission: the post-processing U-Net returned shape {probs.shape}, expected {expected}")
        classes = np.argmax(probs, axis=1).astype(np.int8)
        if rules_cfg is not None:
            classes = apply_rules(classes, widths[sl], rules_cfg)
        classes[np.broadcast_to((cols[None, :] >= widths[sl][:, None])[:, None, :], classes.shape)] = PAD_VALUE
        preds[sl] = classes
    return preds


# ---------------------------------------------------------------- parsing

def _parse_values(text: bytes) -> np.ndarray:
    """Comma-separated integer tokens -> int16 array; a token that is not -1..9 becomes _BAD.

    Valid submissions only hold one-digit classes and -1, so a vectorised
    byte-level parse suffices; anything else (10, 1.0, x, empty) is flagged.
    """
    b = np.frombuffer(text, dtype=np.uint8)
    commas = np.flatnonzero(b == _COMMA)
    starts = np.concatenate(([0], commas + 1))
    ends = np.concatenate((commas, [b.size]))
    lens = ends - starts
    vals = np.full(starts.size, _BAD, dtype=np.int16)
    one = np.flatnonzero(lens == 1)
    digit = b[starts[one]].astype(np.int16) - _ZERO
    is_digit = (digit >= 0) & (digit <= 9)
    vals[one[is_digit]] = digit[is_digit]
    two = np.flatnonzero(lens == 2)
    s2 = starts[two]
    minus_one = (b[s2] == _MINUS) & (b[np.minimum(s2 + 1, b.size - 1)] == _ZERO + 1)
    vals[two[minus_one]] = PAD_VALUE
    return vals


def _token(text: bytes, index: int) -> str:
    """The `index`-th comma-separated token, for messages."""
    return text.split(b",")[index].decode(errors="replace")


class _Problems:
    """Problems grouped by kind, each kind listed up to _MAX_PER_KIND times."""

    def __init__(self) -> None:
        self.kinds: OrderedDict[str, list[str]] = OrderedDict()

    def add(self, kind: str, message: str) -> None:
        self.kinds.setdefault(kind, []).append(message)

    def lines(self) -> list[str]:
        out = []
        for kind, messages in self.kinds.items():
            out.extend(messages[:_MAX_PER_KIND])
            if len(messages) > _MAX_PER_KIND:
                out.append(f"... and {len(messages) - _MAX_PER_KIND} more rows with this problem ({kind})")
        return out


def _split_id(line: bytes) -> tuple[str, bytes]:
    """Split a data line into its index field (quotes removed) and the rest after the comma."""
    if line.startswith(b'"'):
        close = line.find(b'"', 1)
        if close > 0 and line[close + 1 : close + 2] == b",":
            return line[1:close].decode(errors="replace"), line[close + 2 :]
    comma = line.find(b",")
    if comma < 0:
        return line.decode(errors="replace"), b""
    return line[:comma].decode(errors="replace"), line[comma + 1 :]


def _check_header(line: bytes, problems: _Problems) -> None:
    fields = line.rstrip(b"\r\n").split(b",")
    names = [f.strip(b'"').decode(errors="replace") for f in fields[1:]]
    if len(names) != N_COLUMNS:
        problems.add("header", f"header: {len(names)} value columns after the index, expected {N_COLUMNS} (\"0\"..\"{N_COLUMNS - 1}\")")
        return
    expected = [str(i) for i in range(N_COLUMNS)]
    if names != expected:
        k = next(i for i, (a, b) in enumerate(zip(names, expected)) if a != b)
        problems.add("header", f"header: column {k + 1} is named {names[k]!r}, expected {expected[k]!r} (columns must be \"0\"..\"{N_COLUMNS - 1}\" in order)")


def _check_row(
    name: str, lineno: int, rest: bytes, expected_width: int | None, problems: _Problems
) -> tuple[np.ndarray | None, int | None]:
    """Check one data row; return (int8 values, width) when it is usable, else (None, None).

    One problem per row at most, the first found of: value count, padding
    position, padding length, values outside {0,1,2}, width.
    """
    where = f"row {name!r} (line {lineno})"
    vals = _parse_values(rest)
    if vals.size != N_COLUMNS:
        problems.add("columns", f"{where}: {vals.size} values, expected {N_COLUMNS}")
        return None, None
    pad = vals == PAD_VALUE
    mask_len = int(np.argmax(pad)) if pad.any() else N_COLUMNS
    if not pad[mask_len:].all():
        j = mask_len + int(np.argmin(pad[mask_len:]))
        problems.add("padding", f"{where}: -1 padding must only fill the end of the row; -1 at column {mask_len} but {_token(rest, j)!r} at column {j}")
        return None, None
    if mask_len == 0 or mask_len % HEIGHT:
        problems.add("padding", f"{where}: the mask part holds {mask_len} values before the -1 padding; expected 160 x width")
        return None, None
    mask = vals[:mask_len]
    bad = (mask < 0) | (mask > 2)
    if bad.any():
        j = int(np.argmax(bad))
        problems.add("values", f"{where}: {int(bad.sum())} values outside {{0,1,2}} in the mask part (first {_token(rest, j)!r} at column {j})")
        return None, None
    width = mask_len // HEIGHT
    if expected_width is not None and width != expected_width:
        problems.add("width", f"{where}: mask part is 160 x {width} ({mask_len} values, then {N_COLUMNS - mask_len} x -1); the patch is 160 x {expected_width}, expected {HEIGHT * expected_width} values then {N_COLUMNS - HEIGHT * expected_width} x -1")
        return None, None
    return vals.astype(np.int8), width


def _scan(
    path: str | os.PathLike,
    expected_ids: Sequence[str] | None = None,
    expected_widths: Sequence[int] | np.ndarray | None = None,
) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Parse and check a submission file: (ids, rows (n, 43520) int8, widths, problems).

    Rows with a problem are left out of the returned arrays.
    """
    problems = _Problems()
    p = Path(path)
    if not p.is_file():
        return [], np.zeros((0, N_COLUMNS), np.int8), np.zeros(0, np.int64), [f"{p}: file not found"]
    width_of: dict[str, int] | None = None
    if expected_ids is not None:
        expected_ids = [str(i) for i in expected_ids]
        if expected_widths is not None:
            ew = np.asarray(expected_widths).reshape(-1)
            if len(ew) != len(expected_ids):
                raise EchoCemError(f"validate_submission: {len(ew)} expected widths for {len(expected_ids)} expected ids")
            width_of = dict(zip(expected_ids, (int(w) for w in ew)))
    seen: dict[str, int] = {}
    ids: list[str] = []
    rows: list[np.ndarray] = []
    widths: list[int] = []
    with open(p, "rb") as f:
        header = f.readline()
        if not header.strip():
            return [], np.zeros((0, N_COLUMNS), np.int8), np.zeros(0, np.int64), [f"{p}: the file is empty (no header line)"]
        _check_header(header, problems)
        for lineno, line in enumerate(f, start=2):
            line = line.rstrip(b"\r\n")
            if not line.strip():
                continue  # blank lines are skipped by every CSV reader
            name, rest = _split_id(line)
            if not name:
                problems.add("index", f"line {lineno}: empty patch id in the index column")
                continue
            if name in seen:
                problems.add("duplicate", f"row {name!r} (line {lineno}): duplicate of line {seen[name]}")
                continue
            seen[name] = lineno
            expected_width = width_of.get(name) if width_of is not None else None
            vals, width = _check_row(name, lineno, rest, expected_width, problems)
            if vals is not None:
                ids.append(name)
                rows.append(vals)
                widths.append(width)
    if not seen and not problems.kinds:
        problems.add("rows", f"{p}: no data rows after the header")
    if expected_ids is not None:
        expected = set(expected_ids)
        missing = [i for i in expected_ids if i not in seen]
        extra = [i for i in seen if i not in expected]
        if missing:
            problems.add("missing", f"{len(missing)} expected patches missing, e.g. {missing[:5]}")
        if extra:
            problems.add("extra", f"{len(extra)} patches not in the test set, e.g. {extra[:5]}")
    rows_arr = np.stack(rows) if rows else np.zeros((0, N_COLUMNS), np.int8)
    return ids, rows_arr, np.asarray(widths, dtype=np.int64), problems.lines()


def validate_submission(
    path: str | os.PathLike,
    expected_ids: Sequence[str] | None = None,
    expected_widths: Sequence[int] | np.ndarray | None = None,
) -> list[str]:
    """Every problem of a submission file, one line each; [] when it is valid. Never raises.

    Checked: the header (index then "0".."43519"), 43,520 values per row,
    values in {0,1,2} before the padding, -1 only as one block at the end whose
    length leaves 160 x width values, no duplicate or empty patch id; given
    `expected_ids`, no missing or extra patch; given `expected_widths` too
    (aligned with `expected_ids`), each patch's width.
    """
    try:
        return _scan(path, expected_ids, expected_widths)[3]
    except (OSError, EchoCemError) as exc:
        return [f"{path}: {exc}"]


def read_submission(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, preds (N, 160, 272) int8 with -1 padding, widths) of a valid submission file.

    Raises EchoCemError listing the problems if the file is not valid.
    """
    ids, rows, widths, problems = _scan(path)
    if problems:
        raise EchoCemError(f"{path}: not a valid submission:\n  - " + "\n  - ".join(problems))
    return ids, decode_rows(rows, widths), widths


# ---------------------------------------------------------------- command line

def _npy_width(path: Path) -> int:
    """Width of one raw test patch from its .npy header (the data is not read)."""
    try:
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    except (OSError, ValueError) as exc:
        raise EchoCemError(f"{path}: not a readable .npy patch ({exc})") from exc
    if len(shape) != 2 or shape[0] != HEIGHT or not 1 <= shape[1] <= FULL_WIDTH:
        raise EchoCemError(f"{path}: expected a (160, W<=272) patch, found shape {shape}")
    return int(shape[1])


def expected_patches(source: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """(ids, widths) of the test patches from an ingested test.npz, a folder holding one,
    or a folder of raw test .npy patches (X_test_*/, its images/, or the .npy files)."""
    src = Path(source)
    npz = src if src.suffix == ".npz" else src / "test.npz"
    if npz.is_file():
        arrays = load_npz(npz)
        for key in ("ids", "widths"):
            if key not in arrays:
                raise EchoCemError(f"{npz}: array {key!r} missing (expected an ingested test split)")
        return [str(i) for i in arrays["ids"]], np.asarray(arrays["widths"], dtype=np.int64)
    if not src.is_dir():
        raise EchoCemError(f"{src}: neither a test .npz nor a folder")
    candidates = [src, src / "images", *sorted(src.glob("X_test*/images"))]
    for folder in candidates:
        files = sorted(folder.glob("*.npy")) if folder.is_dir() else []
        if files:
            return [f.stem for f in files], np.array([_npy_width(f) for f in files], dtype=np.int64)
    raise EchoCemError(f"{src}: no test.npz and no .npy patches found (looked in {', '.join(map(str, candidates))})")


def cli_validate(argv: list[str]) -> int:
    """`python -m echocem validate-submission FILE [--test-dir DIR|test.npz]`: print OK or every problem.

    Exit 0 when valid, 1 when there are problems, 2 when the test set can not be read.
    """
    parser = argparse.ArgumentParser(prog="python -m echocem validate-submission", description=cli_validate.__doc__)
    parser.add_argument("file", help="submission CSV to check")
    parser.add_argument("--test-dir", help="ingested test.npz, a folder holding it, or the raw X_test_* folder")
    args = parser.parse_args(argv)
    ids = widths = None
    if args.test_dir:
        try:
            ids, widths = expected_patches(args.test_dir)
        except EchoCemError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    problems = validate_submission(args.file, ids, widths)
    if problems:
        print(f"{args.file}: {len(problems)} problem(s)")
        for line in problems:
            print(f"  - {line}")
        return 1
    n = sum(1 for _ in open(args.file, "rb")) - 1
    against = f" against {len(ids)} test patches" if ids is not None else ""
    print(f"OK: {args.file} ({n} rows, {N_COLUMNS} columns){against}")
    return 0
