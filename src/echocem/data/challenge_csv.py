"""The challenge CSV format, written once: the labels file Y_train_*.csv and the submission share it.

- Header: the index name (pandas writes it empty), then the columns "0".."43519"
  (43,520 = 160 x 272): the line `,0,1,...,43519`.
- One row per patch: its stem (`well_2_section_22_patch_1`), then the row-major
  flattening of its 160 x W mask of classes 0/1/2, then -1 up to 43,520 values. A
  160-wide patch is 25,600 mask values and 17,920 values -1: the padding sits at the
  END of the row, never inside each image row.
- Row order is free (the real label file is not sorted).

Here: the constants; encoding a mask stack (N, 160, 272) to rows (N, 43520) and back;
writing a CSV (bytes built by NumPy, atomic); reading one (a fast parser for rows in
the canonical shape, the general tokenizer as the fallback that names the bad row and
column); and validating it, both ways its users need: `check_label_rows` raises at
the first bad label row (ingestion stops there), `scan_csv` collects every problem
(the submission validator lists them all). Both read the same per-row facts
(`row_shapes`).

General CSV readers pay a per-column cost that dominates at 43,521 columns (pyarrow
and pandas take seconds even for 100 rows), hence the byte-level parsing.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from echocem.io import EchoCemError, atomic_path

HEIGHT = 160
FULL_WIDTH = 272
N_COLUMNS = HEIGHT * FULL_WIDTH  # 43,520
PAD_VALUE = -1
HEADER = ("," + ",".join(str(i) for i in range(N_COLUMNS)) + "\n").encode()

_COMMA, _MINUS, _ZERO, _QUOTE = ord(","), ord("-"), ord("0"), ord('"')
_BAD = -128  # int8 value of a token that is not an integer in -127..127 (e.g. '1.0', 'x', '', '999')
_MAX_DIGITS = 3  # longer integers are out of range for a class anyway
_PAD_TAIL = b",-1" * N_COLUMNS  # the padding of any row is a slice of this
_ROWS_PER_PASS = 256  # rows per vectorised pass of row_shapes (bounds the temporaries)
_MAX_PER_KIND = 10  # problems of one kind listed by scan_csv before summarising the rest
_MAX_LISTED = 5  # ids listed in one message


# ---------------------------------------------------------------- encoding (pure)

def stack_masks(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Masks of shape (160, W) -> (stack (N, 160, 272) int8 with -1 right of each width, widths (N,))."""
    stack = np.full((len(masks), HEIGHT, FULL_WIDTH), PAD_VALUE, dtype=np.int8)
    widths = np.zeros(len(masks), dtype=np.int64)
    for i, m in enumerate(masks):
        m = np.asarray(m)
        if m.ndim != 2 or m.shape[0] != HEIGHT or not 1 <= m.shape[1] <= FULL_WIDTH:
            raise EchoCemError(f"mask {i}: shape {m.shape}, expected ({HEIGHT}, W) with 1 <= W <= {FULL_WIDTH}")
        stack[i, :, : m.shape[1]] = m
        widths[i] = m.shape[1]
    return stack, widths


def encode_rows(masks: np.ndarray, widths: Sequence[int] | np.ndarray) -> np.ndarray:
    """(N, 43520) int8 rows: each patch's 160 x width mask flattened row-major, -1 after it."""
    masks = np.asarray(masks)
    widths = np.asarray(widths, dtype=np.int64).reshape(-1)
    if masks.ndim != 3 or masks.shape[1:] != (HEIGHT, FULL_WIDTH):
        raise EchoCemError(f"masks must be (N, {HEIGHT}, {FULL_WIDTH}); got {masks.shape}")
    if widths.shape[0] != masks.shape[0]:
        raise EchoCemError(f"{widths.shape[0]} widths for {masks.shape[0]} masks")
    outside = (widths < 1) | (widths > FULL_WIDTH)
    if outside.any():
        raise EchoCemError(f"patch width {int(widths[outside][0])} outside 1..{FULL_WIDTH}")
    rows = np.empty((masks.shape[0], N_COLUMNS), dtype=np.int8)
    for i, w in enumerate(widths.tolist()):  # plain slice copies: cheaper than fancy-indexed width groups
        mask = rows[i, : HEIGHT * w]
        mask.reshape(HEIGHT, w)[...] = masks[i, :, :w]
        if mask.view(np.uint8).max() > 2:  # as uint8 every non-class value (-1 included) is > 2
            raise EchoCemError(f"classes must be 0, 1 or 2 inside the patch width; found "
                               f"{np.unique(mask[(mask < 0) | (mask > 2)]).tolist()} in mask {i}")
        rows[i, HEIGHT * w:] = PAD_VALUE
    return rows


def decode_rows(rows: np.ndarray, widths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Inverse of `encode_rows`: (N, 160, 272) int8 masks with -1 right of each width."""
    rows = np.asarray(rows)
    widths = np.asarray(widths, dtype=np.int64).reshape(-1)
    masks = np.full((rows.shape[0], HEIGHT, FULL_WIDTH), PAD_VALUE, dtype=np.int8)
    for w in np.unique(widths).tolist():
        idx = np.flatnonzero(widths == w)
        masks[idx, :, :w] = rows[idx, : HEIGHT * w].reshape(len(idx), HEIGHT, w)
    return masks


@dataclass(frozen=True)
class RowShapes:
    """Per row: where its mask part ends and what breaks the format (each (N,) int64).

    mask_len: values before the trailing run of -1 (the width is mask_len / 160);
    first_pad: column of the first -1 (mask_len when the padding is one block at the end);
    n_bad: values of the mask part outside {0, 1, 2}, a -1 inside it not counted;
    first_bad: column of the first of those, -1 when there is none.
    """

    mask_len: np.ndarray
    first_pad: np.ndarray
    n_bad: np.ndarray
    first_bad: np.ndarray

    def canonical(self) -> np.ndarray:
        """Rows that are a 160 x W mask of classes then -1 to the end (W >= 1)."""
        return ((self.first_pad == self.mask_len) & (self.n_bad == 0) & (self.mask_len > 0)
                & (self.mask_len % HEIGHT == 0))


def row_shapes(rows: np.ndarray) -> RowShapes:
    """The RowShapes of rows (N, 43520) int8, vectorised in blocks of a few hundred rows.

    Per block: the first -1 of each row (a first-hit argmax), then one max over every
    row's part before it and one min over the part after it (reduceat on the uint8
    view, where -1 is 255 and every non-class value is > 2). A row whose part before
    is all classes and part after all -1 is canonical; only the others get a slower
    per-row look (where their trailing padding starts, which values are bad).
    """
    rows = np.asarray(rows)
    n = rows.shape[0]
    out = {k: np.zeros(n, dtype=np.int64) for k in ("mask_len", "first_pad", "n_bad", "first_bad")}
    for lo in range(0, n, _ROWS_PER_PASS):
        part = rows[lo:lo + _ROWS_PER_PASS]
        k = len(part)
        u8 = np.ascontiguousarray(part).view(np.uint8)
        pad = u8 == 255
        first_pad = np.argmax(pad, axis=1)
        first_pad[~pad[np.arange(k), first_pad]] = N_COLUMNS  # no -1 at all
        starts = np.arange(k) * N_COLUMNS
        cuts = np.stack([starts, starts + np.minimum(first_pad, N_COLUMNS - 1)], axis=1).ravel()
        flat = u8.ravel()
        # max of [0, first_pad) and min of [first_pad, N); a row without -1 is cut before its last
        # value (reduceat needs a non-empty second part), which joins its max; an empty first part
        # (first_pad 0) gives a meaningless max, ignored below
        top = np.maximum.reduceat(flat, cuts)[0::2]
        top = np.where(first_pad == N_COLUMNS, np.maximum(top, u8[:, -1]), top)
        low = np.minimum.reduceat(flat, cuts)[1::2]
        canonical = ((first_pad == 0) | (top <= 2)) & ((first_pad == N_COLUMNS) | (low == 255))
        mask_len = first_pad.copy()
        n_bad = np.zeros(k, dtype=np.int64)
        first_bad = np.full(k, -1, dtype=np.int64)
        for r in np.flatnonzero(~canonical).tolist():
            row_pad = pad[r]
            if row_pad.all():
                mask_len[r] = 0
            elif not row_pad[-1]:
                mask_len[r] = N_COLUMNS
            else:  # the trailing run of -1 starts after the last value that is not -1
                mask_len[r] = N_COLUMNS - int(np.argmin(row_pad[::-1]))
            bad = (u8[r] > 2) & ~row_pad
            n_bad[r] = np.count_nonzero(bad)
            if n_bad[r]:
                first_bad[r] = int(np.argmax(bad))
        sl = slice(lo, lo + k)
        out["mask_len"][sl] = mask_len
        out["first_pad"][sl] = first_pad
        out["n_bad"][sl] = n_bad
        out["first_bad"][sl] = first_bad
    return RowShapes(**out)


def check_ids(ids: Sequence[str]) -> list[str]:
    """Patch ids as str; EchoCemError for an empty, duplicated or CSV-breaking id."""
    ids = [str(i) for i in ids]
    for i in ids:
        if not i or any(ch in i for ch in ',"\r\n'):
            raise EchoCemError(f"patch id {i!r} is empty or holds a comma, quote or newline")
    if len(set(ids)) != len(ids):
        dup = _duplicates(ids)
        raise EchoCemError(f"duplicate patch ids {_listing(dup)}")
    return ids


# ---------------------------------------------------------------- writing

def _mask_lengths(where: str | os.PathLike, ids: list[str], rows: np.ndarray) -> list[int]:
    """Each row's mask length; EchoCemError naming `where` unless every row is canonical."""
    if rows.ndim != 2 or rows.shape[1] != N_COLUMNS:
        raise EchoCemError(f"{where}: rows must be (N, {N_COLUMNS}); got {rows.shape}")
    if len(ids) != rows.shape[0]:
        raise EchoCemError(f"{where}: {len(ids)} ids for {rows.shape[0]} rows")
    shapes = row_shapes(rows)
    broken = np.flatnonzero(~shapes.canonical())
    if broken.size:
        i = int(broken[0])
        raise EchoCemError(f"{where}: row {ids[i]!r} is not a 160 x W mask of classes 0, 1, 2 followed by -1 "
                           f"padding ({broken.size} such rows)")
    return shapes.mask_len.tolist()


def _write_bytes(path: str | os.PathLike, ids: list[str], rows: np.ndarray, mask_lens: list[int]) -> None:
    """The bytes of checked rows. The mask part is built by NumPy (digit, comma, ...) and the
    padding is a slice of one precomputed ",-1,-1..." string: writing 4,410 rows through
    Python's str formatting would take minutes."""
    with open(path, "wb") as f:
        f.write(HEADER)
        for name, row, m in zip(ids, rows, mask_lens):
            body = np.empty(2 * m, dtype=np.uint8)
            body[0::2] = _COMMA
            body[1::2] = row[:m].view(np.uint8) + _ZERO
            f.write(name.encode())
            f.write(body.tobytes())
            f.write(_PAD_TAIL[: 3 * (N_COLUMNS - m)])
            f.write(b"\n")


def write_rows_csv(path: str | os.PathLike, ids: Sequence[str], rows: np.ndarray) -> None:
    """Write rows (N, 43520) with their ids to `path` as it is (not atomic: see write_csv).

    Every row must be canonical (classes, then -1 to the end): what is written then
    reads back exactly.
    """
    ids = [str(i) for i in ids]
    rows = np.asarray(rows)
    _write_bytes(path, ids, rows, _mask_lengths(path, ids, rows))


def write_csv(path: str | os.PathLike, ids: Sequence[str], rows: np.ndarray) -> None:
    """Write a challenge CSV atomically (complete or absent), rows in the order given.

    Everything is checked before the temporary file exists, so a message names `path`.
    """
    try:
        ids = check_ids(ids)
    except EchoCemError as exc:
        raise EchoCemError(f"{path}: {exc}") from exc
    rows = np.asarray(rows)
    mask_lens = _mask_lengths(path, ids, rows)
    with atomic_path(path) as tmp:
        _write_bytes(tmp, ids, rows, mask_lens)


# ---------------------------------------------------------------- parsing

@dataclass
class _Parsed:
    """The data lines of a CSV: ids, line numbers, value counts and int8 values (_BAD for a bad token)."""

    data: bytes
    header: bytes
    ids: list[str]
    lines: list[int]  # 1-based line number of each row (the header is line 1)
    spans: list[tuple[int, int]]  # byte range of each row's values (after its id), for messages
    counts: np.ndarray  # values per row
    values: np.ndarray  # (rows, 43520) int8; all _BAD in a row whose count is wrong

    def token(self, row: int, column: int) -> str:
        """The text of one value, for messages."""
        start, end = self.spans[row]
        return self.data[start:end].split(b",")[column].decode(errors="replace")


def _read(path: str | os.PathLike) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise EchoCemError(f"{p}: file not found")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise EchoCemError(f"{p}: cannot be read ({exc.strerror or exc})") from exc


def _split_id(data: bytes, start: int, end: int) -> tuple[str, int]:
    """The index field of a line (quotes removed) and where its values start (end+1 if none)."""
    if data[start] == _QUOTE:
        close = data.find(b'"', start + 1, end)
        if close > 0 and data[close + 1:close + 2] == b",":
            return data[start + 1:close].decode(errors="replace"), close + 2
    comma = data.find(b",", start, end)
    if comma < 0:
        return data[start:end].decode(errors="replace"), end + 1
    return data[start:comma].decode(errors="replace"), comma + 1


def _parse_fast(data: bytes, text: np.ndarray, start: int, end: int, out: np.ndarray) -> bool:
    """Parse one row in the canonical shape into `out` (int8 row viewed as uint8); False if it is not.

    Canonical: m one-character classes then N - m tokens -1, so its value part is
    exactly 3N - m - 1 bytes; m follows from the length, the padding is compared as
    bytes and the classes are every second byte of the mask part.
    """
    m = 3 * N_COLUMNS - 1 - (end - start)
    if not 0 <= m <= N_COLUMNS:
        return False
    if m == 0:
        if not data.startswith(memoryview(_PAD_TAIL)[1:], start, end):
            return False
    else:
        if not data.startswith(memoryview(_PAD_TAIL)[: 3 * (N_COLUMNS - m)], start + 2 * m - 1, end):
            return False
        np.subtract(text[start:start + 2 * m:2], _ZERO, out=out[:m])  # a non-digit wraps to > 2
        if out[:m].max() > 2 or (text[start + 1:start + 2 * m - 1:2] != _COMMA).any():
            return False
    out[m:] = 255  # -1 as uint8
    return True


def _tokenize(text: np.ndarray) -> tuple[int, np.ndarray | None]:
    """General tokenizer of one row's value part: (number of values, int8 values or None if not 43,520).

    Any integer of up to 3 digits (sign aside) is read; any other token (empty,
    '1.0', 'x', ...) becomes _BAD. Vectorised over the row's tokens.
    """
    commas = np.flatnonzero(text == _COMMA)
    count = commas.size + 1
    if count != N_COLUMNS:
        return count, None
    starts = np.concatenate([[0], commas + 1])
    ends = np.concatenate([commas, [text.size]])
    padded = np.append(text, np.uint8(0))  # an empty last token starts at text.size
    neg = padded[starts] == _MINUS
    digits_at = starts + neg
    n_digits = ends - digits_at
    ok = (n_digits >= 1) & (n_digits <= _MAX_DIGITS)
    value = np.zeros(count, dtype=np.int16)
    for j in range(_MAX_DIGITS):  # three passes over the tokens, never a loop over values
        has = j < n_digits
        d = padded[np.minimum(digits_at + j, text.size)].astype(np.int16) - _ZERO
        ok &= ~has | ((d >= 0) & (d <= 9))
        value = np.where(has, value * 10 + d, value)
    value = np.where(neg, -value, value)
    ok &= (value > _BAD) & (value <= 127)
    return count, np.where(ok, value, _BAD).astype(np.int8)


def _parse(data: bytes) -> _Parsed:
    """Split a CSV's bytes into its header and data rows; parse every row's values.

    Blank lines are skipped, as every CSV reader does; \\r\\n line ends are accepted.
    Each row is tried with the fast parser first and tokenized in general only if
    that fails, so a valid file never pays for the general path.
    """
    text = np.frombuffer(data, dtype=np.uint8)
    has_cr = b"\r" in data

    def line_end(pos: int) -> tuple[int, int]:
        nl = data.find(b"\n", pos)
        nl = len(data) if nl < 0 else nl
        end = nl - 1 if has_cr and nl > pos and data[nl - 1] == ord("\r") else nl
        return end, nl + 1

    head_end, pos = line_end(0)
    found: list[tuple[int, int, int]] = []  # (line number, start, end)
    lineno = 1
    while pos < len(data):
        lineno += 1
        end, nxt = line_end(pos)
        # a blank line: empty or only spaces (checked on short lines only: no copy of long ones)
        if end > pos and not (end - pos < 64 and not data[pos:end].strip()):
            found.append((lineno, pos, end))
        pos = nxt
    n = len(found)
    values = np.empty((n, N_COLUMNS), dtype=np.int8)
    as_u8 = values.view(np.uint8)
    counts = np.zeros(n, dtype=np.int64)
    ids, spans = [], []
    for r, (_, start, end) in enumerate(found):
        name, vstart = _split_id(data, start, end)
        ids.append(name)
        spans.append((vstart, max(vstart, end)))
        if vstart > end:  # no comma: an id without values
            values[r] = _BAD
            continue
        if _parse_fast(data, text, vstart, end, as_u8[r]):
            counts[r] = N_COLUMNS
            continue
        counts[r], vals = _tokenize(text[vstart:end])
        values[r] = _BAD if vals is None else vals
    return _Parsed(data=data, header=data[:head_end], ids=ids, lines=[f[0] for f in found], spans=spans,
                   counts=counts, values=values)


def header_problem(line: bytes) -> str | None:
    """What is wrong with a header line (index name then "0".."43519"), or None."""
    if line + b"\n" == HEADER:
        return None
    fields = line.split(b",")
    names = [f.strip(b'"').decode(errors="replace") for f in fields[1:]]
    expected = [str(i) for i in range(N_COLUMNS)]
    preview = line[:60].decode(errors="replace") + ("..." if len(line) > 60 else "")
    wanted = f"the header ',0,1,...,{N_COLUMNS - 1}' (an index column then columns \"0\"..\"{N_COLUMNS - 1}\")"
    # a header's value columns start 0,1,2,3; a data row's cannot (its values are 0, 1, 2 or -1)
    if not names or names[:4] != expected[: min(4, len(names))]:
        if [f.strip(b'"') for f in fields[:4]] == [b"0", b"1", b"2", b"3"]:  # written without the index
            return (f"header without the index column: the first line holds {len(fields)} fields starting "
                    f"{preview!r}; expected {wanted}")
        return f"no header line: the first line holds {len(fields)} fields starting {preview!r}; expected {wanted}"
    if len(names) != N_COLUMNS:
        return f"header: {len(names)} value columns after the index, expected {N_COLUMNS} (\"0\"..\"{N_COLUMNS - 1}\")"
    if names != expected:
        k = next(i for i, (a, b) in enumerate(zip(names, expected)) if a != b)
        return (f"header: column {k + 1} is named {names[k]!r}, expected {expected[k]!r} "
                f"(columns must be \"0\"..\"{N_COLUMNS - 1}\" in order)")
    return None


def read_csv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N,) str, rows (N, 43520) int8) of a challenge CSV, in file order.

    Refuses, naming the file, row, column and value: a missing or wrong header, a row
    without 43,520 values, a value that is not an integer. The classes and the padding
    are left to `check_label_rows` / `scan_csv` (they need each row's width).
    """
    data = _read(path)
    if not data or data.isspace():  # (isspace stops at the first other byte: no copy, no full scan)
        raise EchoCemError(f"{path}: the file is empty (no header line)")
    parsed = _parse(data)
    problem = header_problem(parsed.header)
    if problem:
        raise EchoCemError(f"{path}: {problem}")
    bad = parsed.values == _BAD  # a row of the wrong length is all _BAD
    broken = np.flatnonzero(bad.any(axis=1))
    if broken.size:  # the first broken row in file order
        r = int(broken[0])
        where = f"{path}: label row {parsed.ids[r]}"
        if parsed.counts[r] != N_COLUMNS:
            raise EchoCemError(f"{where} has {parsed.counts[r]} values, expected {N_COLUMNS} "
                               f"(wrong number of values; line {parsed.lines[r]})")
        c = int(np.argmax(bad[r]))
        raise EchoCemError(f"{where} has a missing, non-integer or out-of-range value {parsed.token(r, c)!r} "
                           f"(column {c}; line {parsed.lines[r]})")
    return np.asarray(parsed.ids, dtype=np.str_), parsed.values


# ---------------------------------------------------------------- validating

def check_label_rows(path: str | os.PathLike, ids: Sequence[str], rows: np.ndarray,
                     widths: Sequence[int] | np.ndarray) -> None:
    """Each row: 160 x width values in {0, 1, 2}, then -1 to the end; else EchoCemError naming the row.

    `rows` aligned with `ids` and the true `widths` of their images (the labels of
    ingestion); the first problem found stops it, with the count of rows like it.
    """
    shapes = row_shapes(rows)
    expected = HEIGHT * np.asarray(widths, dtype=np.int64).reshape(-1)
    bad = np.flatnonzero(shapes.mask_len != expected)
    if bad.size:
        i = bad[0]
        raise EchoCemError(f"{path}: label row {ids[i]} has {shapes.mask_len[i]} mask values before its -1 padding; "
                           f"its image is {expected[i] // HEIGHT} wide, so {expected[i]} expected ({bad.size} such rows)")
    bad = np.flatnonzero(shapes.first_pad < shapes.mask_len)
    if bad.size:
        i = bad[0]
        raise EchoCemError(f"{path}: label row {ids[i]} has -1 inside its mask at column {shapes.first_pad[i]} "
                           f"(padding must be at the end only; {bad.size} such rows)")
    bad = np.flatnonzero(shapes.n_bad > 0)
    if bad.size:
        i = bad[0]
        mask = np.asarray(rows[i])[: shapes.mask_len[i]]
        vals = sorted(set(mask[(mask.view(np.uint8) > 2) & (mask != PAD_VALUE)].tolist()))
        raise EchoCemError(f"{path}: label row {ids[i]} has values {vals} outside {{0, 1, 2}} "
                           f"(first at column {shapes.first_bad[i]}; {bad.size} such rows)")


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


@dataclass(frozen=True)
class CsvScan:
    """What scan_csv found: the valid rows (ids, rows (n, 43520) int8, widths) and every problem."""

    ids: list[str]
    rows: np.ndarray
    widths: np.ndarray
    problems: list[str]


def _row_problem(parsed: _Parsed, r: int, shapes: RowShapes, expected_width: int | None) -> tuple[str, str] | None:
    """(kind, message) of the first problem of one row, in the order: count, padding, length, classes, width."""
    if parsed.counts[r] != N_COLUMNS:
        return "columns", f"{parsed.counts[r]} values, expected {N_COLUMNS}"
    mask_len, first_pad = int(shapes.mask_len[r]), int(shapes.first_pad[r])
    if first_pad < mask_len:
        j = first_pad + int(np.argmax(parsed.values[r, first_pad:] != PAD_VALUE))
        return "padding", (f"-1 padding must only fill the end of the row; -1 at column {first_pad} "
                           f"but {parsed.token(r, j)!r} at column {j}")
    if mask_len == 0 or mask_len % HEIGHT:
        return "padding", f"the mask part holds {mask_len} values before the -1 padding; expected 160 x width"
    if shapes.n_bad[r]:
        j = int(shapes.first_bad[r])
        return "values", (f"{shapes.n_bad[r]} values outside {{0,1,2}} in the mask part "
                          f"(first {parsed.token(r, j)!r} at column {j})")
    width = mask_len // HEIGHT
    if expected_width is not None and width != expected_width:
        return "width", (f"mask part is 160 x {width} ({mask_len} values, then {N_COLUMNS - mask_len} x -1); "
                         f"the patch is 160 x {expected_width}, expected {HEIGHT * expected_width} values then "
                         f"{N_COLUMNS - HEIGHT * expected_width} x -1")
    return None


def scan_csv(
    path: str | os.PathLike,
    expected_ids: Sequence[str] | None = None,
    expected_widths: Sequence[int] | np.ndarray | None = None,
) -> CsvScan:
    """Parse and check a challenge CSV, collecting every problem (one line each, without the path).

    Checked: the header, 43,520 integer values per row, classes 0/1/2 before the
    padding, -1 only as one block at the end leaving 160 x width values, no empty or
    duplicate id; given `expected_ids`, no missing or extra row; given
    `expected_widths` too (aligned with `expected_ids`), each row's width. Rows with a
    problem are left out of the result. Raises EchoCemError only when the file can
    not be read (or the expectations disagree with each other).
    """
    width_of: dict[str, int] | None = None
    if expected_ids is not None:
        expected_ids = [str(i) for i in expected_ids]
        if expected_widths is not None:
            ew = np.asarray(expected_widths).reshape(-1)
            if len(ew) != len(expected_ids):
                raise EchoCemError(f"{len(ew)} expected widths for {len(expected_ids)} expected ids")
            width_of = dict(zip(expected_ids, (int(w) for w in ew)))
    data = _read(path)
    empty = CsvScan([], np.zeros((0, N_COLUMNS), np.int8), np.zeros(0, np.int64), [])
    if not data or data.isspace():
        return CsvScan(empty.ids, empty.rows, empty.widths, ["the file is empty (no header line)"])
    problems = _Problems()
    parsed = _parse(data)
    header = header_problem(parsed.header)
    if header:
        problems.add("header", header)
    shapes = row_shapes(parsed.values)
    seen: dict[str, int] = {}
    keep: list[int] = []
    for r, (name, lineno) in enumerate(zip(parsed.ids, parsed.lines)):
        if not name:
            problems.add("index", f"line {lineno}: empty patch id in the index column")
            continue
        if name in seen:
            problems.add("duplicate", f"row {name!r} (line {lineno}): duplicate of line {seen[name]}")
            continue
        seen[name] = lineno
        found = _row_problem(parsed, r, shapes, width_of.get(name) if width_of is not None else None)
        if found:
            problems.add(found[0], f"row {name!r} (line {lineno}): {found[1]}")
        else:
            keep.append(r)
    if not seen and not problems.kinds:
        problems.add("rows", "no data rows after the header")
    if expected_ids is not None:
        expected = set(expected_ids)
        missing = [i for i in expected_ids if i not in seen]
        extra = [i for i in seen if i not in expected]
        if missing:
            problems.add("missing", f"{len(missing)} expected patches missing, e.g. {missing[:_MAX_LISTED]}")
        if extra:
            problems.add("extra", f"{len(extra)} patches not in the test set, e.g. {extra[:_MAX_LISTED]}")
    take = np.asarray(keep, dtype=np.int64)
    return CsvScan([parsed.ids[r] for r in keep], parsed.values[take], shapes.mask_len[take] // HEIGHT,
                   problems.lines())


def _duplicates(ids: Sequence[str]) -> list[str]:
    uniq, counts = np.unique(np.asarray(ids, dtype=np.str_), return_counts=True)
    return uniq[counts > 1].tolist()


def _listing(names: list[str]) -> str:
    more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
    return ", ".join(names[:_MAX_LISTED]) + more
