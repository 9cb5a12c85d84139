"""The out-of-fold plan: each fold's network (stage unet_fold) never sees the wells it predicts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from echocem.io import EchoCemError


@dataclass(frozen=True)
class Fold:
    """One out-of-fold task: train on `train_idx`, predict `pred_idx` (indices into the split)."""

    number: int
    wells: tuple[int, ...]
    train_idx: np.ndarray
    pred_idx: np.ndarray


def oof_plan(wells: np.ndarray, train_wells: Sequence[int], folds: Sequence[Sequence[int]]) -> list[Fold]:
    """The folds over the training wells; each fold's model never sees the wells it predicts.

    The folds must partition `train_wells` exactly (each train well in exactly
    one fold), so the out-of-fold predictions cover every training patch once.
    """
    wells = np.asarray(wells)
    train_set = {int(w) for w in train_wells}
    seen: list[int] = []
    plan = []
    for k, fold in enumerate(folds):
        fold_set = {int(w) for w in fold}
        if not fold_set:
            raise EchoCemError(f"splits.json: oof_folds[{k}] is empty")
        if not fold_set <= train_set:
            raise EchoCemError(f"splits.json: oof_folds[{k}] has wells {sorted(fold_set - train_set)} "
                               f"outside train_wells {sorted(train_set)}")
        seen.extend(fold_set)
        pred = np.flatnonzero(np.isin(wells, sorted(fold_set)))
        train = np.flatnonzero(np.isin(wells, sorted(train_set - fold_set)))
        if len(pred) == 0 or len(train) == 0:
            raise EchoCemError(f"splits.json: oof_folds[{k}] (wells {sorted(fold_set)}) leaves no patch to "
                               "train on or to predict")
        plan.append(Fold(k, tuple(sorted(fold_set)), train, pred))
    if sorted(seen) != sorted(train_set):
        dup = sorted({w for w in seen if seen.count(w) > 1})
        missing = sorted(train_set - set(seen))
        raise EchoCemError(f"splits.json: oof_folds must partition train_wells; repeated {dup}, missing {missing}")
    return plan
