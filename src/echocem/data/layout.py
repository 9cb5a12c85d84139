"""The raw EchoCem layout: folder and file names, and writing it.

The layout of the challenge download is the contract (docs: shared format notes):

    X_train_<suffix>/images/well_{w}_section_{s}_patch_{p}.npy      int16 (160, W)
    X_test_<suffix>/images/...                                       (labels hidden)
    X_unlabeled_<suffix>/images/...
    Y_train_<suffix>.csv   index = patch stem, columns "0".."43519"; each row is the
                           row-major 160 x W mask followed by -1 END padding.

Folders are matched by prefix (the suffixes belong to one download). The simulator
writes exactly this layout so that the same ingestion code reads both.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from echocem.io import EchoCemError

HEIGHT = 160
MAX_WIDTH = 272
N_LABEL_COLUMNS = HEIGHT * MAX_WIDTH  # 43,520
SPLITS = ("train", "test", "unlabeled")
IMAGE_PREFIX = {"train": "X_train_", "test": "X_test_", "unlabeled": "X_unlabeled_"}
LABEL_PREFIX = "Y_train_"
STEM_RE = re.compile(r"^well_(\d+)_section_(\d+)_patch_(\d+)$")


def stem(well: int, section: int, patch: int) -> str:
    """Patch stem as the challenge names it, e.g. `well_2_section_22_patch_1`."""
    return f"well_{well}_section_{section}_patch_{patch}"


def parse_stem(name: str, where: str) -> tuple[int, int, int]:
    """(well, section, patch) of a stem; EchoCemError naming `where` if it does not parse."""
    m = STEM_RE.match(name)
    if m is None:
        raise EchoCemError(f"{where}: unparsable patch name {name!r} "
                           "(expected well_<w>_section_<s>_patch_<p>)")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


@dataclass(frozen=True)
class RawLayout:
    """Where the parts of a raw folder are: one images folder per split and the label CSV."""

    images: dict[str, Path]
    labels: Path


def _single(root: Path, prefix: str, is_dir: bool, suffix: str = "") -> Path:
    hits = sorted(p for p in root.iterdir() if p.name.startswith(prefix) and p.name.endswith(suffix)
                  and (p.is_dir() if is_dir else p.is_file()))
    kind = "folder" if is_dir else "label file"
    if not hits:
        raise EchoCemError(f"{root}: missing {kind} {prefix}*{suffix}")
    if len(hits) > 1:
        raise EchoCemError(f"{root}: several {kind}s match {prefix}*{suffix}: {[h.name for h in hits]}")
    return hits[0]


def find_layout(raw_dir: str | Path) -> RawLayout:
    """Locate X_train_*/images, X_test_*/images, X_unlabeled_*/images and Y_train_*.csv."""
    root = Path(raw_dir)
    if not root.is_dir():
        raise EchoCemError(f"{root}: raw data folder not found (data.raw_dir)")
    images = {}
    for split in SPLITS:
        folder = _single(root, IMAGE_PREFIX[split], is_dir=True)
        if not (folder / "images").is_dir():
            raise EchoCemError(f"{folder}: missing folder images/")
        images[split] = folder / "images"
    return RawLayout(images=images, labels=_single(root, LABEL_PREFIX, is_dir=False, suffix=".csv"))


def encode_label_row(mask: np.ndarray) -> bytes:
    """One CSV value list: the row-major mask (values 0..2), then -1 up to 43,520 values.

    Built as bytes with NumPy (digit, comma, digit, ...): writing 4,410 rows of
    43,520 values through Python's str formatting would take minutes.
    """
    flat = np.asarray(mask, dtype=np.int8).ravel()
    if flat.size > N_LABEL_COLUMNS or flat.min(initial=0) < 0 or flat.max(initial=0) > 9:
        raise EchoCemError(f"label row: mask of {flat.size} values in 0..9 expected")
    body = np.empty(2 * flat.size, dtype=np.uint8)
    body[0::2] = flat.astype(np.uint8) + ord("0")
    body[1::2] = ord(",")
    pad = N_LABEL_COLUMNS - flat.size
    tail = b"-1," * pad
    return (body.tobytes() + tail)[:-1]


def write_label_csv(path: str | Path, stems: Sequence[str], masks: Sequence[np.ndarray]) -> None:
    """Write Y_train_*.csv in the challenge format (pandas-readable, index column unnamed)."""
    header = ("," + ",".join(str(i) for i in range(N_LABEL_COLUMNS)) + "\n").encode()
    with open(path, "wb") as f:
        f.write(header)
        for s, m in zip(stems, masks):
            f.write(s.encode() + b"," + encode_label_row(m) + b"\n")


def write_raw_layout(out: str | Path, patches: Mapping[str, Mapping[str, np.ndarray]],
                     labels: Mapping[str, np.ndarray], suffixes: Mapping[str, str],
                     label_order: Sequence[str] | None = None) -> RawLayout:
    """Write one dataset in the raw layout under `out` (which must exist).

    patches: split -> {stem: int16 image (160, W)}; labels: stem -> mask (160, W)
    for the train split; suffixes: split and "labels" -> the random-looking suffix;
    label_order: row order of the CSV (the real file is not sorted).
    """
    root = Path(out)
    images = {}
    for split in SPLITS:
        folder = root / f"{IMAGE_PREFIX[split]}{suffixes[split]}" / "images"
        folder.mkdir(parents=True, exist_ok=True)
        for name, img in patches.get(split, {}).items():
            np.save(folder / f"{name}.npy", np.asarray(img, dtype=np.int16), allow_pickle=False)
        images[split] = folder
    order = list(label_order) if label_order is not None else sorted(labels)
    label_path = root / f"{LABEL_PREFIX}{suffixes['labels']}.csv"
    write_label_csv(label_path, order, [labels[s] for s in order])
    return RawLayout(images=images, labels=label_path)
