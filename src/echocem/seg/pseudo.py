"""Confidence-filtered pseudo-labels for self-training, kept out of fold.

Self-training turns the unlabelled wells and the test images into extra
training data: the trained networks (teachers) predict them, the pixels they
are sure of become labels, and new networks (students) train on those too.
Two leaks would make the result look better than it is:

- a teacher that trained on a patch repeats its training labels there, so its
  "prediction" is no evidence: a patch's pseudo-label is averaged only over the
  teachers that did not train on it (a patch every teacher trained on gets none);
- a student that learns a pseudo-label on a patch it is later scored on, or that
  learns from its own earlier predictions, is graded on its own answer: a
  student gets a patch only if the patch is not among those it predicts, and
  none of the teachers that produced the label is the student itself (its own
  lineage, e.g. the same fold model of an earlier round).

The functions are pure: probabilities and id sets in, labels and a plan out.
`check_plan` re-verifies both rules on a finished plan, so a stage can assert
them before training.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Collection, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from echocem.io import EchoCemError

IGNORE = -1  # label of an unsure pixel or a padding column: ignored by the loss


# --------------------------------------------------------------------------- pixels


def confident_labels(
    probs: np.ndarray, widths: Sequence[int] | np.ndarray, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(labels int8 (N, H, W), confident fraction (N,)) from probabilities (N, C, H, W).

    A pixel gets its argmax class when its largest probability reaches
    `threshold`, IGNORE otherwise and in every padding column; the fraction is
    counted over each patch's real (non-padding) pixels.
    """
    probs = np.asarray(probs)
    widths = np.asarray(widths).reshape(-1)
    if probs.ndim != 4 or widths.shape[0] != probs.shape[0]:
        raise EchoCemError(f"confident_labels: expected probs (N, C, H, W) and N widths; "
                           f"got {probs.shape} and {widths.shape}")
    _check_threshold(threshold)
    top = probs.max(axis=1)
    labels = probs.argmax(axis=1).astype(np.int8)
    valid = np.arange(probs.shape[-1])[None, None, :] < widths[:, None, None]
    sure = (top >= threshold) & valid
    labels[~sure] = IGNORE
    n_valid = widths.astype(np.float64) * probs.shape[2]
    return labels, sure.sum(axis=(1, 2)) / np.maximum(n_valid, 1)


def _check_threshold(threshold: float) -> None:
    if not (0.0 < float(threshold) <= 1.0):
        raise EchoCemError(f"pseudo-labels: threshold must lie in (0, 1], got {threshold}")


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class PseudoLabels:
    """Kept pseudo-labels and the record of every candidate patch.

    ids (M,), labels int8 (M, H, W) with IGNORE, producers: per kept patch the
    teachers whose mean gave its label. `table` has one row per candidate:
    id, n_producers, producers ("a+b"), confident_fraction, kept, reason.
    """

    ids: np.ndarray
    labels: np.ndarray
    producers: tuple[tuple[str, ...], ...]
    table: pd.DataFrame = field(repr=False)


def _id_sets(mapping: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    return {str(k): frozenset(str(i) for i in v) for k, v in mapping.items()}


def eligible_teachers(
    ids: Sequence[str] | np.ndarray,
    teacher_train_ids: Mapping[str, Iterable[str]],
    exclude: Iterable[str] = (),
) -> tuple[list[str], np.ndarray]:
    """(teacher names, (N, T) bool): may teacher t label patch i (it did not train on it, not excluded)?"""
    names = sorted(str(t) for t in teacher_train_ids)
    excluded = {str(t) for t in exclude}
    unknown = excluded - set(names)
    if unknown:
        raise EchoCemError(f"pseudo-labels: excluded teachers {sorted(unknown)} are not among {names}")
    trained = _id_sets(teacher_train_ids)
    ids = np.asarray(ids).astype(str)
    ok = np.zeros((ids.shape[0], len(names)), dtype=bool)
    for t, name in enumerate(names):
        if name not in excluded:
            ok[:, t] = ~np.isin(ids, np.asarray(sorted(trained[name]), dtype=str))
    return names, ok


def make_pseudo_labels(
    ids: Sequence[str] | np.ndarray,
    widths: Sequence[int] | np.ndarray,
    teacher_probs: Mapping[str, np.ndarray],
    teacher_train_ids: Mapping[str, Iterable[str]],
    threshold: float,
    min_fraction: float,
    exclude: Iterable[str] = (),
    chunk: int = 64,
) -> PseudoLabels:
    """Pseudo-labels of the candidate patches `ids` from the teachers' mean probabilities.

    `teacher_probs[t]` is (N, C, H, W) aligned with `ids`; `teacher_train_ids[t]`
    the ids teacher t trained on (labelled or pseudo-labelled). Patch i is
    labelled by the mean of the teachers that did not train on it and are not in
    `exclude` (pass a student's own lineage here when that student is to be
    trained on the result). A patch is kept when at least `min_fraction` of
    its real pixels reach `threshold`. Works `chunk` patches at a time.
    """
    ids = np.asarray(ids).astype(str).reshape(-1)
    widths = np.asarray(widths).reshape(-1)
    n = ids.shape[0]
    if len(set(ids.tolist())) != n:
        raise EchoCemError("pseudo-labels: candidate ids are not unique")
    if widths.shape[0] != n:
        raise EchoCemError(f"pseudo-labels: {widths.shape[0]} widths for {n} candidate patches")
    if set(map(str, teacher_probs)) != set(map(str, teacher_train_ids)):
        raise EchoCemError(f"pseudo-labels: teachers with probabilities {sorted(map(str, teacher_probs))} "
                           f"differ from teachers with training ids {sorted(map(str, teacher_train_ids))}")
    if not teacher_probs:
        raise EchoCemError("pseudo-labels: no teacher given")
    _check_threshold(threshold)
    if not (0.0 <= float(min_fraction) <= 1.0):
        raise EchoCemError(f"pseudo-labels: min_fraction must lie in [0, 1], got {min_fraction}")
    if chunk < 1:
        raise EchoCemError(f"pseudo-labels: chunk must be >= 1, got {chunk}")
    names, ok = eligible_teachers(ids, teacher_train_ids, exclude)
    probs = {str(k): np.asarray(v) for k, v in teacher_probs.items()}
    shape = probs[names[0]].shape
    for name in names:
        if probs[name].ndim != 4 or probs[name].shape[0] != n or probs[name].shape != shape:
            raise EchoCemError(f"pseudo-labels: teacher {name!r} gave probabilities of shape {probs[name].shape}; "
                               f"expected ({n}, C, H, W) like {names[0]!r} {shape}")

    counts = ok.sum(axis=1)
    labels = np.full((n, shape[2], shape[3]), IGNORE, dtype=np.int8)
    fraction = np.zeros(n, dtype=np.float64)
    for lo in range(0, n, chunk):
        sl = slice(lo, min(n, lo + chunk))
        total = np.zeros((sl.stop - sl.start, *shape[1:]), dtype=np.float32)
        for t, name in enumerate(names):
            take = ok[sl, t]
            if take.any():
                total[take] += probs[name][sl][take].astype(np.float32)
        mean = total / np.maximum(counts[sl], 1)[:, None, None, None].astype(np.float32)
        labels[sl], fraction[sl] = confident_labels(mean, widths[sl], threshold)

    has_teacher = counts > 0
    confident = fraction >= float(min_fraction)
    kept = has_teacher & confident
    labels[~has_teacher] = IGNORE
    fraction[~has_teacher] = 0.0
    producers = [tuple(name for t, name in enumerate(names) if ok[i, t]) for i in range(n)]
    reason = np.where(~has_teacher, "every teacher trained on it or is excluded",
                      np.where(~confident, f"fewer than {min_fraction:g} of its pixels reach {threshold:g}", "kept"))
    table = pd.DataFrame({
        "id": ids,
        "n_producers": counts.astype(np.int64),
        "producers": ["+".join(p) for p in producers],
        "confident_fraction": fraction,
        "kept": kept,
        "reason": reason,
    })
    keep = np.flatnonzero(kept)
    return PseudoLabels(ids=ids[keep], labels=labels[keep], producers=tuple(producers[i] for i in keep),
                        table=table)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Student:
    """A model to be trained with pseudo-labels.

    train_ids: labelled patches it trains on; scored_ids: patches it will
    predict (and be scored on); own_teachers: teacher names of its own lineage
    (itself in an earlier round), whose predictions it must not learn from.
    """

    name: str
    train_ids: frozenset[str] = frozenset()
    scored_ids: frozenset[str] = frozenset()
    own_teachers: frozenset[str] = frozenset()


def student(name: str, train_ids: Iterable[str] = (), scored_ids: Iterable[str] = (),
            own_teachers: Iterable[str] | None = None) -> Student:
    """A Student; `own_teachers` defaults to {name} (same name, same lineage)."""
    own = {name} if own_teachers is None else {str(t) for t in own_teachers}
    return Student(str(name), frozenset(map(str, train_ids)), frozenset(map(str, scored_ids)), frozenset(own))


def fold_students(
    ids: Sequence[str] | np.ndarray,
    wells: Sequence[int] | np.ndarray,
    folds: Sequence[Sequence[int]],
    train_ids: Iterable[str] = (),
    prefix: str = "student",
    own_teachers: Iterable[str] = (),
) -> dict[str, Student]:
    """Out-of-fold students over the candidate wells: student k predicts the wells of fold k.

    Each student therefore learns pseudo-labels of every other fold's wells and
    of wells in no fold (e.g. unlabelled wells nobody is scored on), never of
    the wells it predicts. Folds must not share a well.
    """
    ids = np.asarray(ids).astype(str)
    wells = np.asarray(wells).reshape(-1)
    if wells.shape[0] != ids.shape[0]:
        raise EchoCemError(f"fold_students: {wells.shape[0]} wells for {ids.shape[0]} ids")
    seen: set[int] = set()
    out = {}
    train = frozenset(map(str, train_ids))
    for k, fold in enumerate(folds):
        fold_set = {int(w) for w in fold}
        if not fold_set or fold_set & seen:
            raise EchoCemError(f"fold_students: fold {k} (wells {sorted(fold_set)}) is empty or repeats a well")
        seen |= fold_set
        name = f"{prefix}_{k}"
        out[name] = Student(name, train, frozenset(ids[np.isin(wells, sorted(fold_set))].tolist()),
                            frozenset(map(str, own_teachers)))
    return out


def _refusal(st: Student, pid: str, producers: Collection[str]) -> str | None:
    """Why `st` may not learn the pseudo-label of `pid` (None: it may)."""
    if pid in st.scored_ids:
        return "it predicts this patch"
    if pid in st.train_ids:
        return "it trains on this patch's true label"
    own = st.own_teachers & set(producers)
    if own:
        return f"its own lineage {sorted(own)} produced the label"
    return None


def assign(pseudo: PseudoLabels, students: Mapping[str, Student] | Sequence[Student]) -> pd.DataFrame:
    """The plan: one row (student, id, position) per pseudo-label a student trains on.

    `position` indexes `pseudo.ids` / `pseudo.labels`. A student gets a patch
    unless it predicts it, trains on its true label, or its own lineage is
    among the patch's producers.
    """
    studs = list(students.values()) if isinstance(students, Mapping) else list(students)
    names = [s.name for s in studs]
    if len(set(names)) != len(names):
        raise EchoCemError(f"assign: student names repeat: {names}")
    rows = [
        (st.name, str(pid), pos)
        for st in studs
        for pos, (pid, prod) in enumerate(zip(pseudo.ids, pseudo.producers))
        if _refusal(st, str(pid), prod) is None
    ]
    return pd.DataFrame(rows, columns=["student", "id", "position"]).astype({"position": np.int64})


def check_plan(
    plan: pd.DataFrame,
    pseudo: PseudoLabels,
    students: Mapping[str, Student] | Sequence[Student],
    teacher_train_ids: Mapping[str, Iterable[str]],
) -> None:
    """EchoCemError at the first broken rule: a label from a teacher that trained on its
    patch, a student learning a patch it predicts, its true label's patch, or its own label."""
    trained = _id_sets(teacher_train_ids)
    for pid, prod in zip(pseudo.ids, pseudo.producers):
        for t in prod:
            if t not in trained:
                raise EchoCemError(f"pseudo-label of {pid}: producer {t!r} is not a known teacher")
            if str(pid) in trained[t]:
                raise EchoCemError(f"pseudo-label of {pid}: teacher {t!r} trained on this patch")
    by_name = {s.name: s for s in (students.values() if isinstance(students, Mapping) else students)}
    for st_name, pid, pos in plan[["student", "id", "position"]].itertuples(index=False):
        if st_name not in by_name:
            raise EchoCemError(f"plan: unknown student {st_name!r}")
        if not (0 <= pos < len(pseudo.ids)) or str(pseudo.ids[pos]) != pid:
            raise EchoCemError(f"plan: position {pos} of student {st_name!r} does not hold {pid}")
        why = _refusal(by_name[st_name], pid, pseudo.producers[pos])
        if why is not None:
            raise EchoCemError(f"plan: student {st_name!r} may not learn the pseudo-label of {pid}: {why}")
