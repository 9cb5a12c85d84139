"""The raw EchoCem layout: folder and file names, what a patch file must be, and writing it.

The layout of the challenge download is the contract (docs: shared format notes):

    X_train_<suffix>/images/well_{w}_section_{s}_patch_{p}.npy      int16 (160, W)
    X_test_<suffix>/images/...                                       (labels hidden)
    X_unlabeled_<suffix>/images/...
    Y_train_<suffix>.csv   the challenge CSV format (echocem.data.challenge_csv)

W is 272, or 160 for the narrow wells (3 and 4 of the real train set). Folders are
matched by prefix (the suffixes belong to one download). The simulator writes exactly
this layout so that the same ingestion code reads both.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from echocem.data.challenge_csv import FULL_WIDTH, HEIGHT, encode_rows, stack_masks, write_csv
from echocem.io import EchoCemError

# re-exported: simulate.py imports HEIGHT and MAX_WIDTH from here, benchmarks/ingest_speed.py HEIGHT
MAX_WIDTH = FULL_WIDTH
NARROW_WIDTH = 160
PATCH_WIDTHS = (FULL_WIDTH, NARROW_WIDTH)  # the only widths of the real patches, every split
NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file
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


def check_npy_magic(path: Path, head: bytes) -> None:
    """Refuse a file that is no .npy at all before numpy does: its message ("pickled data") misleads."""
    if head != NPY_MAGIC:
        what = "it is empty" if not head else f"it starts with {head!r}, not {NPY_MAGIC!r}"
        raise EchoCemError(f"{path}: not an .npy file ({what})")


def check_patch_shape(path: Path, shape: tuple[int, ...]) -> int:
    """The width of a patch of this shape: (160, 272), or (160, 160) for a narrow well; else EchoCemError."""
    if len(shape) == 2 and shape[0] == HEIGHT and shape[1] not in PATCH_WIDTHS:
        raise EchoCemError(f"{path}: wrong width {shape[1]} (shape {shape}): a patch is {HEIGHT} x {FULL_WIDTH}, "
                           f"or {HEIGHT} x {PATCH_WIDTHS[1]} for a narrow well")
    if len(shape) != 2 or shape[0] != HEIGHT:
        raise EchoCemError(f"{path}: wrong shape {shape} (expected ({HEIGHT}, W) with W in {PATCH_WIDTHS})")
    return int(shape[1])


def patch_width(path: Path) -> int:
    """Width of one patch from its .npy header (the data is not read); EchoCemError for a bad file."""
    try:
        with open(path, "rb") as f:
            check_npy_magic(path, f.read(len(NPY_MAGIC)))
        shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    except (OSError, ValueError) as exc:
        raise EchoCemError(f"{path}: not a readable .npy array ({exc})") from exc
    return check_patch_shape(path, shape)


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
    write_csv(label_path, order, encode_rows(*stack_masks([labels[s] for s in order])))
    return RawLayout(images=images, labels=label_path)
