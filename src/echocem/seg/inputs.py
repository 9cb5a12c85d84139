"""What every network stage reads first, in one place: the labelled split, its
normalisation and well splits, and the resumable-checkpoint folder of a run."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from echocem.data.preprocess import load_labelled, load_normalization, load_splits, selection_indices, split_indices
from echocem.io import EchoCemError, file_md5


@dataclass
class LabelledInputs:
    """data/ingested/train.npz with data/prepared's normalisation and splits."""

    data: dict[str, np.ndarray]
    spec: dict[str, Any]
    splits: dict[str, Any]
    files: tuple[Path, ...]  # what the inputs were read from (a checkpoint's fingerprint covers them)
    train_idx: np.ndarray  # patches of the training wells
    val_idx: np.ndarray  # patches of the validation wells (the ladder scores them all)
    select_idx: np.ndarray  # those of them that choose a network's epoch (splits.json selection_sections)


def load_labelled_inputs(ingested: str | Path, prepared: str | Path) -> LabelledInputs:
    train_path = Path(ingested) / "train.npz"
    norm_path, splits_path = Path(prepared) / "normalization.json", Path(prepared) / "splits.json"
    data = load_labelled(train_path)
    splits = load_splits(splits_path)
    tr = split_indices(data["well"], splits["train_wells"])
    va = split_indices(data["well"], splits["val_wells"])
    if len(tr) == 0 or len(va) == 0:
        raise EchoCemError(f"{train_path}: no patches of the training wells {splits['train_wells']} "
                           f"or of the validation wells {splits['val_wells']}")
    sel = selection_indices(data["well"], data["section"], splits)
    if len(sel) == 0:
        raise EchoCemError(f"{splits_path}: its selection_sections name no patch of {train_path}")
    return LabelledInputs(data=data, spec=load_normalization(norm_path), splits=splits,
                          files=(train_path, norm_path, splits_path), train_idx=tr, val_idx=va, select_idx=sel)


def fingerprint(payload: Mapping[str, Any], files: tuple[str | Path, ...] = ()) -> str:
    """Short hash of a training config and its input files: names a checkpoint folder."""
    h = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    for f in files:
        h.update(file_md5(f).encode())
    return h.hexdigest()[:16]


def checkpoint_folder(root: str | Path, stage: str, config: Mapping[str, Any],
                      files: tuple[str | Path, ...]) -> tuple[str, Path]:
    """(fingerprint, folder) of a stage's resumable checkpoints: a rerun with the same
    config and input files resumes there; anything else starts in a new folder."""
    fp = fingerprint({"stage": stage, **config}, files)
    return fp, Path(root) / stage / fp

