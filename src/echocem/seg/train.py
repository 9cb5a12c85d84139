"""Training of the segmentation networks, shared by `unet`, `unet_oof` and `postproc_unet`.

The data path is built so that it is never the bottleneck: the whole training
set sits on the training device as one tensor, each step indexes a batch out
of it and augments it there (echocem.seg.augment); there is no per-sample
Python loader. The same code runs on CPU (float32, deterministic algorithms)
and on CUDA (bf16 autocast, channels_last, optional torch.compile).

Every epoch ends with a checkpoint (model, optimizer, scheduler, RNG state,
epoch, best score, best weights, curves) in a scratch folder; a rerun with the
same fingerprint resumes after the last finished epoch and ends with exactly
the weights an uninterrupted run gives. Model selection: the epoch with the
best challenge IoU on the validation wells.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from echocem.io import EchoCemError, atomic_path, file_md5
from echocem.seg.augment import augment_batch
from echocem.seg.metric import challenge_iou
from echocem.seg.unet import N_CLASSES, batched_predict, labels_from_proba, to_memory_format, unwrap

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "echocem-train-checkpoint/1"


# --------------------------------------------------------------------------- data


@dataclass
class Dataset:
    """Inputs resident on the training device.

    x: (N, C, H, W) float32, normalised image in channel 0; y: (N, H, W) int8
    labels with -1 on padding; widths: (N,) int64; wells: (N,) on the host.
    """

    x: torch.Tensor
    y: torch.Tensor
    widths: torch.Tensor
    wells: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def batch_maker(self) -> Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]:
        return lambda lo, hi: (self.x[lo:hi], self.widths[lo:hi])


def make_dataset(x: torch.Tensor, masks: np.ndarray, widths: np.ndarray, wells: np.ndarray,
                 device: str) -> Dataset:
    """Put inputs and labels on `device` (labels as int8: an eighth of int64 memory)."""
    return Dataset(
        x=x.to(device).float(),
        y=torch.from_numpy(np.asarray(masks, dtype=np.int8)).to(device),
        widths=torch.from_numpy(np.asarray(widths, dtype=np.int64)).to(device),
        wells=np.asarray(wells),
    )


def normalised_images(images: np.ndarray, widths: np.ndarray, norm_spec: Mapping[str, Any],
                      device: str) -> torch.Tensor:
    """(N, 1, H, W) float32 on `device`: raw int16 goes to the device, is normalised there."""
    from echocem.data.preprocess import normalize

    raw = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    w = torch.from_numpy(np.asarray(widths, dtype=np.int64)).to(device)
    return normalize(raw, w, norm_spec).float().unsqueeze(1)


# --------------------------------------------------------------------------- loss


def focal_dice_loss(logits: torch.Tensor, target: torch.Tensor, focal_weight: float, dice_weight: float,
                    gamma: float) -> torch.Tensor:
    """Focal loss + soft Dice over the labelled pixels (target -1 is ignored).

    Focal down-weights the easy background pixels (85 % of the data); Dice
    scores each class by overlap, so the thin TIE and casing bands weigh as
    much as the background. Dice is pooled over the batch (stable when a class
    is absent from one patch).
    """
    target = target.long()
    valid = target >= 0
    safe = target.clamp_min(0)
    logp = F.log_softmax(logits.float(), dim=1)
    logp_t = logp.gather(1, safe.unsqueeze(1)).squeeze(1)
    n_valid = valid.sum().clamp_min(1)
    focal = -((1 - logp_t.exp()) ** gamma) * logp_t
    focal = (focal * valid).sum() / n_valid
    probs = logp.exp() * valid.unsqueeze(1)
    onehot = F.one_hot(safe, N_CLASSES).permute(0, 3, 1, 2).to(probs.dtype) * valid.unsqueeze(1)
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    dice = 1 - ((2 * inter + 1.0) / (denom + 1.0)).mean()
    return focal_weight * focal + dice_weight * dice


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Accel:
    """How a step runs on the device; on CPU only channels_last applies."""

    device: str
    bf16: bool
    channels_last: bool
    compile: bool
    deterministic: bool

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    @staticmethod
    def from_profile(profile: Mapping[str, Any], device: str) -> "Accel":
        a = profile["accel"]
        cuda = device.startswith("cuda")
        return Accel(device=device, bf16=bool(a["bf16"]) and cuda, channels_last=bool(a["channels_last"]),
                     compile=bool(a["compile"]) and cuda, deterministic=bool(a["deterministic"]) or not cuda)


@contextlib.contextmanager
def execution_mode(accel: Accel) -> Iterator[None]:
    """Deterministic algorithms on CPU (and on CUDA when asked); restores the previous mode."""
    if accel.cuda and accel.deterministic:
        # cuBLAS is reproducible only with a fixed workspace (read when its handle is made)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_bench = torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(accel.deterministic, warn_only=accel.cuda)
    if accel.cuda:
        torch.backends.cudnn.benchmark = not accel.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.backends.cudnn.benchmark = prev_bench


def autocast(accel: Accel):
    return torch.autocast("cuda", dtype=torch.bfloat16) if accel.bf16 else contextlib.nullcontext()


def make_optimizer(model: nn.Module, train_cfg: Mapping[str, Any], total_steps: int, accel: Accel):
    """AdamW and a per-step learning-rate schedule (see `LrFactor`)."""
    lr = float(train_cfg["lr"])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=float(train_cfg["weight_decay"]),
                            fused=accel.cuda)
    factor = LrFactor(str(train_cfg["schedule"]), max(1, int(total_steps)), float(train_cfg["warmup_fraction"]))
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda=factor)


@dataclass
class LrFactor:
    """Multiplier of the peak learning rate at a step.

    onecycle: linear warm-up from 1/10 over `warmup` of the steps, then cosine
    decay to 1/100; cosine: the decay alone; constant: 1. A plain object (not
    a closure) so LambdaLR can checkpoint it.
    """

    schedule: str
    total_steps: int
    warmup: float
    floor: float = 0.01
    start: float = 0.1

    def __call__(self, step: int) -> float:
        if self.schedule == "constant":
            return 1.0
        warm = int(round(self.warmup * self.total_steps)) if self.schedule == "onecycle" else 0
        if step < warm:
            return self.start + (1.0 - self.start) * step / warm
        t = min(1.0, (step - warm) / max(1, self.total_steps - warm))
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * t))


# --------------------------------------------------------------------------- one epoch


@dataclass
class StepRunner:
    """The training step and one pass over a resident dataset (shared with the benchmark)."""

    model: nn.Module  # possibly compiled; its parameters are the ones optimised
    optimizer: torch.optim.Optimizer
    scheduler: Any
    train_cfg: Mapping[str, Any]
    augment_cfg: Mapping[str, Any] | None
    accel: Accel
    generator: torch.Generator

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step on a batch; returns the loss (a device tensor: no host sync)."""
        cfg = self.train_cfg
        x = to_memory_format(x, self.accel.channels_last)
        with autocast(self.accel):
            logits = self.model(x)
        loss = focal_dice_loss(logits, y, float(cfg["focal_weight"]), float(cfg["dice_weight"]),
                               float(cfg["focal_gamma"]))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()

    def epoch(self, data: Dataset, batch_size: int) -> tuple[float, int]:
        """One shuffled pass (last incomplete batch dropped: static shapes for compile).

        Returns (mean loss, images seen). The batch is gathered, augmented and
        stepped on the device; the loss is read back once, at the end.
        """
        n = len(data)
        b = min(batch_size, n)
        perm = torch.randperm(n, generator=self.generator, device=self.generator.device)
        total = torch.zeros((), device=data.x.device)
        steps = n // b
        for s in range(steps):
            idx = perm[s * b:(s + 1) * b]
            x, y = data.x[idx], data.y[idx]
            if self.augment_cfg is not None:
                x, y = augment_batch(x, y, self.augment_cfg, self.generator)
            total += self.step(x, y)
        return float(total.item()) / max(steps, 1), steps * b


def steps_per_epoch(n: int, batch_size: int) -> int:
    return n // min(batch_size, n) if n else 0


# --------------------------------------------------------------------------- evaluation


def evaluate(model: nn.Module, data: Dataset, accel: Accel, batch_size: int) -> dict:
    """Challenge IoU (with per-well breakdown) of `model` on `data`; labels computed on the device."""
    pred = batched_predict(model, data.batch_maker(), len(data), accel.device, batch_size, accel.channels_last,
                           output="labels")
    return challenge_iou(data.y.cpu().numpy(), pred, data.widths.cpu().numpy(), data.wells)


def predict_dataset(model: nn.Module, data: Dataset, accel: Accel, batch_size: int) -> np.ndarray:
    """Float32 (N, 3, H, W) probabilities of `model` on `data`."""
    return batched_predict(model, data.batch_maker(), len(data), accel.device, batch_size, accel.channels_last)


def score_probs(probs: np.ndarray, data: Dataset) -> dict:
    """Challenge IoU of the argmax of `probs` against `data`'s labels."""
    widths = data.widths.cpu().numpy()
    return challenge_iou(data.y.cpu().numpy(), labels_from_proba(probs, widths), widths, data.wells)


# --------------------------------------------------------------------------- fit


@dataclass
class FitResult:
    """What a training run leaves: the selected weights and how it got there."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_scores: dict
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 1  # first epoch this process ran (> 1 after a resume)


def fingerprint(payload: Mapping[str, Any], files: Sequence[str | Path] = ()) -> str:
    """Short hash of a training config and its input files: names a checkpoint folder."""
    h = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
    for f in files:
        h.update(file_md5(f).encode())
    return h.hexdigest()[:16]


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}


def _load_checkpoint(path: Path, fp: str) -> dict | None:
    if not path.is_file():
        return None
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn file cannot happen (atomic writes), a foreign one can
        raise EchoCemError(f"{path}: unreadable training checkpoint ({exc}); delete it to start over") from exc
    if ck.get("format") != CHECKPOINT_FORMAT or ck.get("fingerprint") != fp:
        log.warning("%s: checkpoint of another configuration, starting over", path)
        return None
    return ck


def fit(
    model: nn.Module,
    train: Dataset,
    val: Dataset,
    profile: Mapping[str, Any],
    epochs: int,
    seed: int,
    accel: Accel,
    checkpoint_dir: Path | None = None,
    fp: str = "",
    desc: str = "train",
    evaluate_start: bool = False,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> FitResult:
    """Train `model` on `train`, select the epoch with the best challenge IoU on `val`.

    `profile` holds the `train`, `augment` and `accel` blocks of a params
    profile. `evaluate_start` also scores the untrained model as epoch 0 (the
    refiner starts as the identity, so selection can keep it). With
    `checkpoint_dir`, state is saved after every epoch and a rerun resumes.
    `on_epoch_end(epoch, row)` runs after each epoch's checkpoint (tests use it
    to interrupt a run).
    """
    train_cfg = profile["train"]
    batch = int(train_cfg["batch_size"])
    eval_batch = int(train_cfg["eval_batch_size"])
    if len(train) == 0:
        raise EchoCemError(f"{desc}: no training patches")
    if len(val) == 0:
        raise EchoCemError(f"{desc}: no validation patches to select the model on")
    with execution_mode(accel):
        base = unwrap(model).to(accel.device)
        if accel.channels_last:
            base = base.to(memory_format=torch.channels_last)
        net = torch.compile(base) if accel.compile else base
        opt, sched = make_optimizer(base, train_cfg, epochs * steps_per_epoch(len(train), batch), accel)
        gen = torch.Generator(device=accel.device)
        gen.manual_seed(int(seed))
        runner = StepRunner(net, opt, sched, train_cfg, profile["augment"], accel, gen)

        ck_path = checkpoint_dir / "last.pt" if checkpoint_dir is not None else None
        ck = _load_checkpoint(ck_path, fp) if ck_path is not None else None
        if ck is not None:
            base.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            gen.set_state(ck["generator"])
            torch.set_rng_state(ck["torch_rng"])
            history, best_state = list(ck["history"]), ck["best_state"]
            best_epoch, best_scores = int(ck["best_epoch"]), dict(ck["best_scores"])
            start = int(ck["epoch"]) + 1
            log.info("%s: resuming after epoch %d of %d (%s)", desc, start - 1, epochs, ck_path)
        else:
            history, best_state, best_epoch, best_scores, start = [], _cpu_state(base), 0, {}, 1
            if evaluate_start:
                scores = evaluate(base, val, accel, eval_batch)
                best_scores = scores
                history.append(_row(0, float("nan"), float("nan"), scores))

        bar = tqdm(range(start, epochs + 1), desc=desc, initial=start - 1, total=epochs, unit="epoch",
                   dynamic_ncols=True, leave=True)
        for epoch in bar:
            t0 = time.perf_counter()
            net.train()
            loss, seen = runner.epoch(train, batch)
            lr = float(sched.get_last_lr()[0])
            t_train = time.perf_counter() - t0
            # the eager module evaluates: a compiled one would recompile for eval mode and batch size
            scores = evaluate(base, val, accel, eval_batch)
            row = _row(epoch, loss, lr, scores)
            history.append(row)
            if not best_scores or scores["iou"] > best_scores["iou"]:
                best_state, best_epoch, best_scores = _cpu_state(base), epoch, scores
            # wall times go to the log only: outputs must not depend on them
            log.info("%s epoch %d/%d loss %.4f val IoU %.4f (%.0f img/s training, %.1f s)", desc, epoch,
                     epochs, loss, scores["iou"], seen / max(t_train, 1e-9), time.perf_counter() - t0)
            bar.set_postfix(loss=f"{loss:.3f}", val_iou=f"{scores['iou']:.3f}", best=f"{best_scores['iou']:.3f}")
            if ck_path is not None:
                _save_checkpoint(ck_path, {
                    "format": CHECKPOINT_FORMAT, "fingerprint": fp, "epoch": epoch,
                    "model": _cpu_state(base), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "history": history, "best_state": best_state, "best_epoch": best_epoch,
                    "best_scores": best_scores,
                })
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
        bar.close()
    return FitResult(best_state=best_state, best_epoch=best_epoch, best_scores=best_scores,
                     history=history, start_epoch=start)


def _row(epoch: int, loss: float, lr: float, scores: Mapping[str, Any]) -> dict:
    """One line of the training curves (rounded: stable, readable files)."""
    def r(v: float) -> float | None:
        return None if v != v else round(float(v), 6)

    return {"epoch": epoch, "train_loss": r(loss), "lr": r(lr), "val_iou": r(scores["iou"]),
            "val_iou_class1": r(scores["iou_class1"]), "val_iou_class2": r(scores["iou_class2"])}


def _save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


# --------------------------------------------------------------------------- out-of-fold


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


def derived_seed(seed: int, *parts: Any) -> int:
    """A per-task seed from the global one (stable across processes and machines)."""
    h = hashlib.sha256(json.dumps([int(seed), *map(str, parts)]).encode()).digest()
    return int.from_bytes(h[:4], "little")


# --------------------------------------------------------------------------- tasks


def active_profile(section: Mapping[str, Any], name: str = "unet") -> dict:
    """The profile a params section selects (`profile` names one entry of `profiles`)."""
    chosen = section["profile"]
    if chosen not in section["profiles"]:
        raise EchoCemError(f"params {name}.profile: {chosen!r} is not one of {sorted(section['profiles'])}")
    return section["profiles"][chosen]


def new_model(model_cfg: Mapping[str, Any], seed: int) -> nn.Module:
    """A freshly initialised network; its initial weights depend on `seed` only."""
    from echocem.seg.unet import build_model

    torch.manual_seed(int(seed))
    return build_model(model_cfg)


@dataclass
class Trained:
    """A trained network (best epoch's weights loaded, on the training device) and its run."""

    model: nn.Module
    fit: FitResult
    accel: Accel


def train_segmenter(
    x: torch.Tensor,
    masks: np.ndarray,
    widths: np.ndarray,
    wells: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    model_cfg: Mapping[str, Any],
    profile: Mapping[str, Any],
    epochs: int,
    seed: int,
    device: str,
    checkpoint_dir: Path | None = None,
    fp: str = "",
    desc: str = "unet",
    evaluate_start: bool = False,
    model: nn.Module | None = None,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> Trained:
    """Train a network on the `train_idx` patches of `x` (inputs on `device`), select on `val_idx`."""
    accel = Accel.from_profile(profile, device)
    train = make_dataset(x[torch.as_tensor(train_idx, device=x.device)], masks[train_idx], widths[train_idx],
                         wells[train_idx], device)
    val = make_dataset(x[torch.as_tensor(val_idx, device=x.device)], masks[val_idx], widths[val_idx],
                       wells[val_idx], device)
    model = model if model is not None else new_model(model_cfg, seed)
    result = fit(model, train, val, profile, epochs, derived_seed(seed, "fit"), accel, checkpoint_dir, fp, desc,
                 evaluate_start=evaluate_start, on_epoch_end=on_epoch_end)
    base = unwrap(model)
    base.load_state_dict(result.best_state)
    base.eval()
    return Trained(model=base, fit=result, accel=accel)


@dataclass
class OofResult:
    """Out-of-fold probabilities of the training patches and each fold's run."""

    idx: np.ndarray  # indices (into the split) of the predicted patches, ascending
    probs: np.ndarray  # float16 (len(idx), 3, H, W), as stored
    folds: list[dict]


def out_of_fold(
    x: torch.Tensor,
    masks: np.ndarray,
    widths: np.ndarray,
    wells: np.ndarray,
    plan: Sequence[Fold],
    val_idx: np.ndarray,
    model_cfg: Mapping[str, Any],
    profile: Mapping[str, Any],
    epochs: int,
    seed: int,
    device: str,
    checkpoint_root: Path | None = None,
    fp: str = "",
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> OofResult:
    """Train one network per fold on the other training wells and predict the fold's wells.

    Each fold's model is selected on the validation wells (never on the fold
    it predicts), so its predictions are honest stand-ins for test-time ones.
    """
    eval_batch = int(profile["train"]["eval_batch_size"])
    all_idx, all_probs, reports = [], [], []
    for fold in plan:
        fold_dir = checkpoint_root / f"fold_{fold.number}" if checkpoint_root is not None else None
        trained = train_segmenter(
            x, masks, widths, wells, fold.train_idx, val_idx, model_cfg, profile, epochs,
            derived_seed(seed, "oof", fold.number), device, fold_dir, f"{fp}-fold{fold.number}",
            desc=f"oof fold {fold.number} (wells {list(fold.wells)})", on_epoch_end=on_epoch_end)
        target = make_dataset(x[torch.as_tensor(fold.pred_idx, device=x.device)], masks[fold.pred_idx],
                              widths[fold.pred_idx], wells[fold.pred_idx], device)
        with execution_mode(trained.accel):
            # float16, as stored: the scores below are those of the file's labels
            probs = predict_dataset(trained.model, target, trained.accel, eval_batch).astype(np.float16)
        scores = score_probs(probs, target)
        all_idx.append(fold.pred_idx)
        all_probs.append(probs)
        reports.append({
            "fold": fold.number, "wells": list(fold.wells),
            "train_wells": sorted({int(w) for w in wells[fold.train_idx]}),
            "n_train": int(len(fold.train_idx)), "n_predicted": int(len(fold.pred_idx)),
            "best_epoch": trained.fit.best_epoch, "val_iou_at_best": trained.fit.best_scores["iou"],
            "oof": scores, "history": trained.fit.history,
        })
    idx = np.concatenate(all_idx)
    order = np.argsort(idx, kind="stable")
    return OofResult(idx=idx[order], probs=np.concatenate(all_probs)[order], folds=reports)


# --------------------------------------------------------------------------- curves


# one quantity per file: DVC plots the last column of each against `epoch`
CURVES = {
    "train_loss.tsv": ("train_loss",),
    "learning_rate.tsv": ("lr",),
    "val_iou.tsv": ("val_iou",),
    "val_iou_class1.tsv": ("val_iou_class1",),
    "val_iou_class2.tsv": ("val_iou_class2",),
}


def curves_tables(history: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """DVC plot files (TSV, one x column `epoch`): stable text, no timestamps."""
    tables = {}
    for name, cols in CURVES.items():
        lines = ["\t".join(("epoch", *cols))]
        for row in history:
            if any(row[c] is None for c in cols):
                continue
            lines.append("\t".join([str(row["epoch"]), *(f"{row[c]:.6f}" for c in cols)]))
        tables[name] = "\n".join(lines) + "\n"
    return tables


def curves_figure(history: Sequence[Mapping[str, Any]], title: str, best_epoch: int):
    """Loss and validation IoU against epochs, the selected epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(10, 3.6))
    rows = [r for r in history if r["train_loss"] is not None]
    ax_loss.plot([r["epoch"] for r in rows], [r["train_loss"] for r in rows], label="focal + Dice")
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss")
    ax_loss.legend()
    epochs = [r["epoch"] for r in history]
    for key, label in (("val_iou", "IoU (mean of classes 1, 2)"), ("val_iou_class1", "IoU class 1 (TIE)"),
                       ("val_iou_class2", "IoU class 2 (casing)")):
        ax_iou.plot(epochs, [r[key] for r in history], label=label)
    ax_iou.axvline(best_epoch, color="grey", linestyle="--", label=f"selected (epoch {best_epoch})")
    ax_iou.set(title="validation wells", xlabel="epoch", ylabel="challenge IoU", ylim=(0, 1))
    ax_iou.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
