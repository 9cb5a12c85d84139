"""The challenge submission: predicting the test classes, writing and checking the CSV.

The CSV format itself (the one of the challenge's Y_train file: header `,0,1,...,43519`,
one row per test patch, its 160 x W mask row-major then -1 padding at the END) lives
in echocem.data.challenge_csv; here is what is the submission's own: the classes
from the networks' probabilities, writing a file that is validated against the test
patches before it is moved into place, and the check anyone can run before uploading:

    python -m echocem validate-submission submission/submission.csv

It checks the format and, against the test set, that every test patch is there
exactly once with its width (so the row count and the padding of each row). The
test set is `--test-dir` (an ingested `test.npz`, a folder holding one, or a folder
of raw test `.npy` patches: the `X_test_*` folder or its `images/`), else
`data/ingested/test.npz` under the current directory when it exists; without
either, only the format is checked and the answer says so. Exit 0 valid, 1 invalid
(every problem listed), 2 when the file or the test set can not be read.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from echocem.data.challenge_csv import (
    FULL_WIDTH,
    HEIGHT,
    N_COLUMNS,
    PAD_VALUE,
    check_ids,
    decode_rows,
    encode_rows,
    scan_csv,
    write_csv,
    write_rows_csv,
)
from echocem.data.layout import patch_width
from echocem.io import EchoCemError, atomic_path, load_npz

DEFAULT_TEST_SPLIT = Path("data") / "ingested" / "test.npz"  # relative to the current directory


# ---------------------------------------------------------------- writing

def _rows(path: str | os.PathLike, ids: Sequence[str], preds: np.ndarray,
          widths: Sequence[int] | np.ndarray) -> tuple[list[str], np.ndarray]:
    """Checked ids and encoded rows, or EchoCemError naming the submission file."""
    try:
        ids = check_ids(ids)
        rows = encode_rows(preds, widths)
    except EchoCemError as exc:
        raise EchoCemError(f"{path}: {exc}") from exc
    if len(ids) != rows.shape[0]:
        raise EchoCemError(f"{path}: {len(ids)} ids for {rows.shape[0]} predictions")
    return ids, rows


def write_submission(
    path: str | os.PathLike, ids: Sequence[str], preds: np.ndarray, widths: Sequence[int] | np.ndarray
) -> None:
    """Write predictions (N, 160, 272) as a challenge CSV, atomically, rows in the order given."""
    write_csv(path, *_rows(path, ids, preds, widths))


def write_validated_submission(
    path: str | os.PathLike, ids: Sequence[str], preds: np.ndarray, widths: Sequence[int] | np.ndarray
) -> int:
    """Write the CSV, validate the written file against ids/widths, then move it into place.

    A validation problem raises EchoCemError; the file is not created (a
    previous file at `path` stays as it was). Returns the number of rows written.
    """
    ids, rows = _rows(path, ids, preds, widths)
    with atomic_path(path) as tmp:
        write_rows_csv(tmp, ids, rows)
        problems = validate_submission(tmp, expected_ids=ids, expected_widths=widths)
        if problems:
            raise EchoCemError(f"{path}: the written submission fails validation:\n  - " + "\n  - ".join(problems))
    return len(ids)


# ---------------------------------------------------------------- prediction

# (probabilities (n, 3, H, W), raw images, widths) -> refined probabilities (n, 3, H, W)
RefineFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def predict_classes(
    images: np.ndarray,
    widths: Sequence[int] | np.ndarray,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    refine: RefineFn | None = None,
    rules_cfg: Mapping | None = None,
) -> np.ndarray:
    """(N, 160, 272) int8 classes, -1 padding: argmax of (refined) probabilities, then rules.

    `chunks` yields (indices, probabilities (n, 3, 160, 272)) that together cover the N
    patches once (e.g. whole sections at a time, echocem.seg.context.iter_probs), so
    the float probabilities of the whole test set are never held at once.
    `rules_cfg` None: no rule-based clean-up.
    """
    from echocem.seg.rules import apply_rules
    from echocem.seg.unet import labels_from_proba

    widths = np.asarray(widths, dtype=np.int64).reshape(-1)
    n = images.shape[0]
    preds = np.full((n, HEIGHT, FULL_WIDTH), PAD_VALUE, dtype=np.int8)
    done = np.zeros(n, dtype=bool)
    for idx, probs in chunks:
        idx = np.asarray(idx, dtype=np.int64)
        probs = np.asarray(probs)
        expected = (len(idx), 3, HEIGHT, FULL_WIDTH)
        if probs.shape != expected:
            raise EchoCemError(f"submission: the networks returned probabilities of shape {probs.shape}, "
                               f"expected {expected}")
        if refine is not None:
            probs = np.asarray(refine(probs, images[idx], widths[idx]))
            if probs.shape != expected:
                raise EchoCemError(f"submission: the post-processing U-Net returned shape {probs.shape}, "
                                   f"expected {expected}")
        # argmax with -1 (the format's PAD_VALUE) right of each width; the rules keep that padding
        classes = labels_from_proba(probs, widths[idx])
        if rules_cfg is not None:
            classes = apply_rules(classes, widths[idx], rules_cfg)
        if done[idx].any():
            raise EchoCemError(f"submission: patch {int(idx[done[idx]][0])} predicted twice")
        preds[idx] = classes
        done[idx] = True
    if not done.all():
        raise EchoCemError(f"submission: {int((~done).sum())} test patches were not predicted")
    return preds


# ---------------------------------------------------------------- reading and checking

def validate_submission(
    path: str | os.PathLike,
    expected_ids: Sequence[str] | None = None,
    expected_widths: Sequence[int] | np.ndarray | None = None,
) -> list[str]:
    """Every problem of a submission file, one line each; [] when it is valid. Never raises.

    The checks of echocem.data.challenge_csv.scan_csv: the header, 43,520 values a
    row, classes before one block of -1 padding, ids; given `expected_ids`, no
    missing or extra patch; given `expected_widths` too, each patch's width.
    """
    try:
        return scan_csv(path, expected_ids, expected_widths).problems
    except (OSError, EchoCemError) as exc:
        return [str(exc)]


def read_submission(path: str | os.PathLike) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(ids, preds (N, 160, 272) int8 with -1 padding, widths) of a valid submission file.

    Raises EchoCemError listing the problems if the file is not valid.
    """
    scan = scan_csv(path)
    if scan.problems:
        raise EchoCemError(f"{path}: not a valid submission:\n  - " + "\n  - ".join(scan.problems))
    return scan.ids, decode_rows(scan.rows, scan.widths), scan.widths


# ---------------------------------------------------------------- command line

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
            return [f.stem for f in files], np.array([patch_width(f) for f in files], dtype=np.int64)
    raise EchoCemError(f"{src}: no test.npz and no .npy patches found (looked in {', '.join(map(str, candidates))})")


def cli_validate(argv: list[str]) -> int:
    """`python -m echocem validate-submission FILE [--test-dir DIR|test.npz]`: print OK or every problem.

    Against the test set (--test-dir, else data/ingested/test.npz when present) or,
    without one, the format only. Exit 0 valid, 1 invalid, 2 when the file or the
    test set can not be read.
    """
    parser = argparse.ArgumentParser(prog="python -m echocem validate-submission", description=cli_validate.__doc__)
    parser.add_argument("file", help="submission CSV to check")
    parser.add_argument("--test-dir", help="ingested test.npz, a folder holding it, or the raw X_test_* folder "
                                           f"(default: {DEFAULT_TEST_SPLIT} when it exists)")
    args = parser.parse_args(argv)
    source = args.test_dir or (DEFAULT_TEST_SPLIT if DEFAULT_TEST_SPLIT.is_file() else None)
    ids = widths = None
    try:
        if source is not None:
            ids, widths = expected_patches(source)
        scan = scan_csv(args.file, ids, widths)
    except (OSError, EchoCemError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if source is None:
        scope = (f"format only: no test set to compare with ({DEFAULT_TEST_SPLIT} not found here, no --test-dir), "
                 "so the ids, the row count and each row's width were not checked")
    else:
        scope = f"against {len(ids)} test patches ({source})"
    if scan.problems:
        print(f"{args.file}: {len(scan.problems)} problem(s); checked {scope}")
        for line in scan.problems:
            print(f"  - {line}")
        return 1
    print(f"OK: {args.file} ({len(scan.ids)} rows, {N_COLUMNS} columns){' ' if source else '; '}{scope}")
    return 0
