"""Read a raw folder in the challenge layout into validated, sorted arrays per split.

Every check raises EchoCemError naming the file and the problem; nothing is written
here (the stage writes only after everything has been read and checked). The label
CSV is read and checked by echocem.data.challenge_csv (the one home of that format);
here are the images, the pairing of images and labels, and the data card.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from echocem.data.challenge_csv import FULL_WIDTH, HEIGHT, check_label_rows, decode_rows, read_csv
from echocem.data.layout import NPY_MAGIC, SPLITS, check_npy_magic, check_patch_shape, find_layout, parse_stem
from echocem.io import EchoCemError

CLASS_NAMES = ("background", "tie", "casing")
MAX_LISTED = 5  # names listed in an error message
REQUIRED_SPLITS = ("train", "test")  # an empty unlabeled folder is allowed: nothing downstream needs it

read_label_csv = read_csv  # the name benchmarks/ingest_speed.py times


def _listing(names: list[str]) -> str:
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return ", ".join(names[:MAX_LISTED]) + more


def read_patch(path: Path) -> np.ndarray:
    """One image: an .npy file, int16, finite, shape (160, 272) or (160, 160)."""
    try:
        with open(path, "rb") as f:  # one open: the magic, then numpy reads from the start
            check_npy_magic(path, f.read(len(NPY_MAGIC)))
            f.seek(0)
            img = np.load(f, allow_pickle=False)
    except EchoCemError:
        raise
    except Exception as exc:  # a corrupt array file: name it
        raise EchoCemError(f"{path}: not a readable .npy array ({exc})") from exc
    if np.issubdtype(img.dtype, np.floating) and not np.isfinite(img).all():
        raise EchoCemError(f"{path}: contains NaN or inf values")
    if img.dtype != np.int16:
        raise EchoCemError(f"{path}: wrong dtype {img.dtype} (expected int16)")
    check_patch_shape(path, img.shape)
    return img


def read_split_images(folder: Path, split: str) -> dict[str, Any]:
    """All patches of one images folder, sorted by (well, section, patch), zero-padded to 272."""
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    if not files and split in REQUIRED_SPLITS:
        # caught here, not at the submission stage hours later (issue 14)
        raise EchoCemError(f"{folder}: no .npy patches (the {split} split needs at least one)")
    keys = []
    for f in files:
        if f.suffix != ".npy" or not f.is_file():
            raise EchoCemError(f"{f}: unparsable file name (expected well_<w>_section_<s>_patch_<p>.npy)")
        keys.append(parse_stem(f.stem, str(f)))
    order = sorted(range(len(files)), key=lambda i: keys[i])
    n = len(files)
    images = np.zeros((n, HEIGHT, FULL_WIDTH), dtype=np.int16)
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
    return decode_rows(labels, train["widths"])


def ingest(raw_dir: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read and validate a raw folder; split -> arrays of the ingested contract."""
    layout = find_layout(raw_dir)
    splits = {split: read_split_images(layout.images[split], split) for split in SPLITS}
    check_unique_ids(splits)
    stems, labels = read_csv(layout.labels)
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
        valid = np.arange(FULL_WIDTH)[None, None, :] < w[:, None, None]
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
            "n_narrow": int((data["widths"] < FULL_WIDTH).sum()),
            "per_well": {str(w): int(c) for w, c in zip(wells, counts)},
            "values": _value_stats(data["images"], data["widths"]),
        }
    masks = splits["train"]["masks"]
    counts = np.bincount((masks[masks >= 0]).ravel(), minlength=3)[:3]
    card["class_frequency"] = {name: round(float(c / max(counts.sum(), 1)), 4) for name, c in zip(CLASS_NAMES, counts)}
    card["train_patches_without_tie"] = int((~(masks == 1).any(axis=(1, 2))).sum())
    return card
