"""Read a raw folder in the challenge layout into validated, sorted arrays per split.

Every check raises EchoCemError naming the file and the problem; nothing is written
here (the stage writes only after everything has been read and checked). The label
CSV (43,521 columns) is parsed by a vectorised NumPy byte parser, with no Python
loop over columns or values.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from echocem.data.layout import HEIGHT, MAX_WIDTH, N_LABEL_COLUMNS, SPLITS, find_layout, parse_stem
from echocem.io import EchoCemError

CLASS_NAMES = ("background", "tie", "casing")
MAX_LISTED = 5  # names listed in an error message


def _listing(names: list[str]) -> str:
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return ", ".join(names[:MAX_LISTED]) + more


def read_patch(path: Path) -> np.ndarray:
    """One image: int16, 2-D, 160 rows, 1..272 columns, finite."""
    try:
        img = np.load(path, allow_pickle=False)
    except Exception as exc:  # a corrupt or non-array file: name it
        raise EchoCemError(f"{path}: not a readable .npy array ({exc})") from exc
    if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
        raise EchoCemError(f"{path}: contains NaN or inf values")
    if img.dtype != np.int16:
        raise EchoCemError(f"{path}: wrong dtype {img.dtype} (expected int16)")
    if img.ndim != 2 or img.shape[0] != HEIGHT or not 1 <= img.shape[1] <= MAX_WIDTH:
        raise EchoCemError(f"{path}: wrong shape {img.shape} (expected ({HEIGHT}, W) with W <= {MAX_WIDTH})")
    return img


def read_split_images(folder: Path, split: str) -> dict[str, Any]:
    """All patches of one images folder, sorted by (well, section, patch), zero-padded to 272."""
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    keys = []
    for f in files:
        if f.suffix != ".npy" or not f.is_file():
            raise EchoCemError(f"{f}: unparsable file name (expected well_<w>_section_<s>_patch_<p>.npy)")
        keys.append(parse_stem(f.stem, str(f)))
    order = sorted(range(len(files)), key=lambda i: keys[i])
    n = len(files)
    images = np.zeros((n, HEIGHT, MAX_WIDTH), dtype=np.int16)
    widths = np.zeros(n, dtype=np.int16)
    for out_i, i in enumerate(tqdm(order, desc=f"read {split}", unit="patch", leave=False)):
        img = read_patch(files[i])
        images[out_i, :, : img.shape[1]] = img
        widths[out_i] = img.shape[1]
    wsp = np.array([keys[i] for i in order], dtype=np.int32).reshape(n, 3)
    return {
        "images": images,
        "widths": widths,
        "ids": np.array([files[i].stem for i in order], dtype=np.str_),
        "well": wsp[:, 0].copy(),
        "section": wsp[:, 1].copy(),
        "patch": wsp[:, 2].copy(),
        "files": [files[i] for i in order],
    }


COMMA, NEWLINE, MINUS, ZERO = ord(","), ord("\n"), ord("-"), ord("0")
MAX_DIGITS = 3  # labels are small integers; longer tokens are reported as out of range
CSV_CHUNK_ROWS = 128  # rows parsed at once (bounds memory: ~90 kB of text a row)


def _parse_rows(path: Path, text: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Parse complete CSV lines (uint8 bytes, each ending in a newline) into stems and int8 values."""
    delims = np.flatnonzero((text == COMMA) | (text == NEWLINE))
    ends_line = text[delims] == NEWLINE
    line_of = np.cumsum(ends_line) - ends_line  # line of each token (its delimiter ends it)
    per_line = np.bincount(line_of, minlength=int(ends_line.sum()))
    starts = np.concatenate([[0], delims[:-1] + 1])
    first = np.concatenate([[0], np.flatnonzero(ends_line)[:-1] + 1])  # index of each line's stem token
    stems = [bytes(text[starts[t]:delims[t]]).decode(errors="replace").strip('"') for t in first]
    bad = np.flatnonzero(per_line != N_LABEL_COLUMNS + 1)
    if bad.size:
        i = bad[0]
        raise EchoCemError(f"{path}: label row {stems[i]} has {per_line[i] - 1} values, expected "
                           f"{N_LABEL_COLUMNS} (wrong number of values)")
    tok_start = starts.reshape(len(stems), -1)[:, 1:].ravel()
    tok_end = delims.reshape(len(stems), -1)[:, 1:].ravel()
    neg = text[tok_start] == MINUS
    digits_at = tok_start + neg
    n_digits = tok_end - digits_at
    value = np.zeros(tok_start.size, dtype=np.int16)
    ok = (n_digits >= 1) & (n_digits <= MAX_DIGITS)
    for j in range(MAX_DIGITS):  # at most 3 passes over the tokens, never a loop over values
        has = j < n_digits
        d = text[np.minimum(digits_at + j, text.size - 1)].astype(np.int16) - ZERO
        ok &= ~has | ((d >= 0) & (d <= 9))
        value = np.where(has, value * 10 + d, value)
    if not ok.all():
        t = int(np.flatnonzero(~ok)[0])
        token = bytes(text[tok_start[t]:tok_end[t]]).decode(errors="replace")
        raise EchoCemError(f"{path}: label row {stems[t // N_LABEL_COLUMNS]} has a missing, non-integer or "
                           f"out-of-range value {token!r} (column {t % N_LABEL_COLUMNS})")
    value = np.where(neg, -value, value).reshape(len(stems), N_LABEL_COLUMNS)
    outside = (value < -1) | (value > 2)
    if outside.any():
        i = int(np.flatnonzero(outside.any(axis=1))[0])
        raise EchoCemError(f"{path}: label row {stems[i]} has values {sorted(set(value[i][outside[i]].tolist()))} "
                           "outside {0, 1, 2}")
    return stems, value.astype(np.int8)


_FAST_LUT = np.full(256, 99, dtype=np.int8)  # byte -> label; 99: not a one-character label
_FAST_LUT[[ord("0"), ord("1"), ord("2"), ord("x")]] = [0, 1, 2, -1]


def _parse_fast(body: bytes) -> tuple[list[str], np.ndarray] | None:
    """The common case in one pass per row: every value one of 0, 1, 2, -1.

    With "-1" replaced by one byte, a row is exactly "d,d,...,d" (2 * 43520 - 1 bytes),
    so its labels are every second byte through a lookup table. Returns None when any
    row does not have that shape or holds another value: the general parser then reads
    the file and names the problem.
    """
    lines = body.replace(b"-1", b"x").split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    labels = np.empty((len(lines), N_LABEL_COLUMNS), dtype=np.int8)
    stems = []
    commas_ok = True
    for r, line in enumerate(lines):  # a loop over rows; each row is whole-array work
        cut = line.find(b",")
        if cut < 0 or len(line) - cut - 1 != 2 * N_LABEL_COLUMNS - 1:
            return None
        stems.append(line[:cut].decode(errors="replace").strip('"'))
        row = np.frombuffer(line, dtype=np.uint8, offset=cut + 1)
        labels[r] = _FAST_LUT[row[0::2]]
        commas_ok = commas_ok and bool((row[1::2] == COMMA).all())
    if not commas_ok or (labels == 99).any():
        return None
    return stems, labels


def read_label_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(stems, int8 labels (N, 43520)) of Y_train_*.csv, header and every value checked.

    General CSV readers pay a per-column cost that dominates at 43,521 columns (pyarrow
    and pandas take ~4-20 s even for 100 rows here). Two NumPy parsers of the bytes, no
    Python loop over columns or values: a fast path for files of one-character labels
    (the challenge file), else a general vectorised tokenizer in chunks of rows that
    reads any integers and names the row and column of a bad value.
    """
    data = Path(path).read_bytes().replace(b"\r\n", b"\n")
    head_end = data.find(b"\n")
    header = data[: head_end if head_end >= 0 else len(data)].decode(errors="replace").split(",")
    expected = [str(i) for i in range(N_LABEL_COLUMNS)]
    if [h.strip('"') for h in header[1:]] != expected:
        raise EchoCemError(f"{path}: header must be an index column then columns 0..{N_LABEL_COLUMNS - 1} "
                           f"({len(header) - 1} value columns found)")
    body = data[head_end + 1:] if head_end >= 0 else b""
    if body and not body.endswith(b"\n"):
        body += b"\n"
    fast = _parse_fast(body)
    if fast is not None:
        return np.asarray(fast[0], dtype=np.str_), fast[1]
    text = np.frombuffer(body, dtype=np.uint8)
    line_ends = np.flatnonzero(text == NEWLINE)
    nonblank = np.diff(np.concatenate([[-1], line_ends])) > 1
    if not nonblank.all():
        raise EchoCemError(f"{path}: blank line after data row {int(np.flatnonzero(~nonblank)[0])}")
    stems: list[str] = []
    chunks = []
    bounds = np.concatenate([[0], line_ends + 1])
    for lo in range(0, len(line_ends), CSV_CHUNK_ROWS):
        hi = min(lo + CSV_CHUNK_ROWS, len(line_ends))
        s, v = _parse_rows(path, text[bounds[lo]:bounds[hi]])
        stems += s
        chunks.append(v)
    labels = np.concatenate(chunks) if chunks else np.zeros((0, N_LABEL_COLUMNS), dtype=np.int8)
    return np.asarray(stems, dtype=np.str_), labels


def check_label_rows(path: Path, stems: np.ndarray, labels: np.ndarray, widths: np.ndarray) -> None:
    """Each row: 160*W values in {0,1,2} then -1 to the end (the real END padding)."""
    pad = labels == -1
    # length of the mask part = columns before the trailing run of -1
    trailing = np.where(pad.all(axis=1), N_LABEL_COLUMNS, np.argmax(~pad[:, ::-1], axis=1))
    length = N_LABEL_COLUMNS - trailing
    expected = HEIGHT * widths.astype(np.int64)
    bad = np.flatnonzero(length != expected)
    if bad.size:
        i = bad[0]
        raise EchoCemError(f"{path}: label row {stems[i]} has {length[i]} mask values before its -1 padding; "
                           f"its image is {widths[i]} wide, so {expected[i]} expected"
                           f" ({bad.size} such rows)")
    inner_pad = pad & (np.arange(N_LABEL_COLUMNS)[None, :] < expected[:, None])
    bad = np.flatnonzero(inner_pad.any(axis=1))
    if bad.size:
        raise EchoCemError(f"{path}: label row {stems[bad[0]]} has -1 inside its mask "
                           f"(padding must be at the end only; {bad.size} such rows)")
    outside = (labels < -1) | (labels > 2)
    bad = np.flatnonzero(outside.any(axis=1))
    if bad.size:
        vals = sorted(set(np.unique(labels[outside]).tolist()))
        raise EchoCemError(f"{path}: label row {stems[bad[0]]} has values {vals} outside {{0, 1, 2}} "
                           f"({bad.size} such rows)")


def check_unique_ids(splits: dict[str, dict[str, Any]]) -> None:
    """(well, section, patch) must name one patch across all splits (e.g. no patch_01 and patch_1)."""
    seen: dict[tuple[int, int, int], str] = {}
    for split, data in splits.items():
        for f, key in zip(data["files"], zip(data["well"].tolist(), data["section"].tolist(),
                                             data["patch"].tolist())):
            if key in seen:
                raise EchoCemError(f"{f}: duplicate id well {key[0]} section {key[1]} patch {key[2]} "
                                   f"(also {seen[key]})")
            seen[key] = str(f)


def attach_masks(path: Path, train: dict[str, Any], stems: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Masks (N, 160, 272) int8 of the train images in their order, -1 in the padding."""
    uniq, counts = np.unique(stems, return_counts=True)
    if (counts > 1).any():
        raise EchoCemError(f"{path}: duplicate ids {_listing(uniq[counts > 1].tolist())}")
    for s in stems:
        parse_stem(str(s), f"{path}: label row")
    image_ids, label_ids = set(train["ids"].tolist()), set(stems.tolist())
    if image_ids - label_ids:
        raise EchoCemError(f"{path}: no labels for images {_listing(sorted(image_ids - label_ids))}")
    if label_ids - image_ids:
        raise EchoCemError(f"{path}: labels without an image in X_train_*/images: "
                           f"{_listing(sorted(label_ids - image_ids))}")
    row_of = {s: i for i, s in enumerate(stems.tolist())}
    take = np.array([row_of[s] for s in train["ids"].tolist()], dtype=np.int64)
    labels = labels[take]
    check_label_rows(path, train["ids"], labels, train["widths"])
    masks = np.full((len(take), HEIGHT, MAX_WIDTH), -1, dtype=np.int8)
    for w in np.unique(train["widths"]).tolist():  # reshape row-major per width group (python int: no int16 overflow)
        sel = np.flatnonzero(train["widths"] == w)
        masks[sel, :, :w] = labels[sel, : HEIGHT * w].reshape(len(sel), HEIGHT, w)
    return masks


def ingest(raw_dir: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read and validate a raw folder; split -> arrays of the ingested contract."""
    layout = find_layout(raw_dir)
    splits = {split: read_split_images(layout.images[split], split) for split in SPLITS}
    check_unique_ids(splits)
    stems, labels = read_label_csv(layout.labels)
    splits["train"]["masks"] = attach_masks(layout.labels, splits["train"], stems, labels)
    for data in splits.values():
        data.pop("files")
    return splits


def _value_stats(images: np.ndarray, widths: np.ndarray) -> dict[str, float]:
    """min/max/mean/std over the valid (non-padding) pixels, in float64 chunks."""
    if len(images) == 0:
        return {"min": None, "max": None, "mean": None, "std": None}
    total, sq, count = 0.0, 0.0, 0
    lo, hi = np.iinfo(np.int16).max, np.iinfo(np.int16).min
    for i in range(0, len(images), 256):
        x, w = images[i:i + 256], widths[i:i + 256]
        valid = np.arange(MAX_WIDTH)[None, None, :] < w[:, None, None]
        v = x[np.broadcast_to(valid, x.shape)].astype(np.float64)
        total, sq, count = total + v.sum(), sq + np.square(v).sum(), count + v.size
        lo, hi = min(lo, int(v.min())), max(hi, int(v.max()))
    mean = total / count
    return {"min": lo, "max": hi, "mean": round(mean, 4), "std": round(float(np.sqrt(sq / count - mean**2)), 4)}


def data_card(splits: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Counts per well and split, class frequencies, value statistics (a DVC metric)."""
    card: dict[str, Any] = {"splits": {}}
    for split, data in splits.items():
        wells, counts = np.unique(data["well"], return_counts=True)
        card["splits"][split] = {
            "n_patches": int(len(data["ids"])),
            "n_narrow": int((data["widths"] < MAX_WIDTH).sum()),
            "per_well": {str(w): int(c) for w, c in zip(wells, counts)},
            "values": _value_stats(data["images"], data["widths"]),
        }
    masks = splits["train"]["masks"]
    counts = np.bincount((masks[masks >= 0]).ravel(), minlength=3)[:3]
    card["class_frequency"] = {name: round(float(c / max(counts.sum(), 1)), 4) for name, c in zip(CLASS_NAMES, counts)}
    card["train_patches_without_tie"] = int((~(masks == 1).any(axis=(1, 2))).sum())
    return card
