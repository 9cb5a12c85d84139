"""The training loop of the segmentation networks: steps, epochs, model selection,
checkpoints and resume, shared by every network of the pipeline.

The data path is never the bottleneck: the whole training set sits on the
training device (echocem.seg.dataset.SegSet), each step indexes a batch out of
it and augments it there (echocem.seg.augment). The same code runs on CPU
(float32, or bf16 autocast where the profile's cpu_bf16 asks and the CPU has it
natively; deterministic algorithms) and on CUDA (bf16 autocast, channels_last,
optional torch.compile).

Every epoch ends with a checkpoint (model, optimizer, scheduler, RNG state,
epoch, best score, best weights, curves) in a scratch folder; a rerun with the
same fingerprint resumes after the last finished epoch and ends with exactly
the weights an uninterrupted run gives. Model selection: the epoch with the
best challenge IoU on the validation wells.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from echocem.checkpoints import cpu_state, load_checkpoint, save_checkpoint
from echocem.io import EchoCemError
from echocem.seg.accel import Accel, autocast, execution_mode
from echocem.seg.augment import augment_batch
from echocem.seg.dataset import SegSet
from echocem.seg.loss import focal_dice_loss
from echocem.seg.metric import challenge_iou
from echocem.seg.optim import make_optimizer
from echocem.seg.unet import batched_predict, labels_from_proba, to_memory_format, unwrap

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "echocem-train-checkpoint/2"


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

    def epoch(self, data: SegSet, batch_size: int) -> tuple[float, int]:
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


def evaluate(model: nn.Module, data: SegSet, accel: Accel, batch_size: int) -> dict:
    """Challenge IoU (with per-well breakdown) of `model` on `data`; labels computed on the device."""
    pred = batched_predict(model, data.batch_maker(), len(data), accel.device, batch_size, accel.channels_last,
                           output="labels")
    return challenge_iou(data.masks(), pred, data.host_widths(), data.wells)


def predict_dataset(model: nn.Module, data: SegSet, accel: Accel, batch_size: int) -> np.ndarray:
    """Float32 (N, 3, H, W) probabilities of `model` on `data`."""
    return batched_predict(model, data.batch_maker(), len(data), accel.device, batch_size, accel.channels_last)


def score_probs(probs: np.ndarray, data: SegSet) -> dict:
    """Challenge IoU of the argmax of `probs` against `data`'s labels."""
    widths = data.host_widths()
    return challenge_iou(data.masks(), labels_from_proba(probs, widths), widths, data.wells)


# --------------------------------------------------------------------------- fit


@dataclass
class FitResult:
    """What a training run leaves: the selected weights and how it got there."""

    best_state: dict[str, torch.Tensor]
    best_epoch: int
    best_scores: dict
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 1  # first epoch this process ran (> 1 after a resume)


def history_row(epoch: int, loss: float, lr: float, scores: Mapping[str, Any] | None) -> dict:
    """One line of the training curves (rounded: stable, readable files); no validation
    scores when the run trains without a validation set."""
    def r(v: float | None) -> float | None:
        return None if v is None or v != v else round(float(v), 6)

    scores = scores or {}
    return {"epoch": epoch, "train_loss": r(loss), "lr": r(lr), "val_iou": r(scores.get("iou")),
            "val_iou_class1": r(scores.get("iou_class1")), "val_iou_class2": r(scores.get("iou_class2"))}


def fit(
    model: nn.Module,
    train: SegSet,
    val: SegSet | None,
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

    Without `val` (a refit on every labelled well, its epoch count chosen before),
    nothing is scored and the last epoch is the result. `profile` holds the `train`, `augment` and `accel` blocks of a params
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
    if val is not None and len(val) == 0:
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
        # the precision is resumed too: callers key the folder on params and device, and whether a CPU
        # trains in bf16 also depends on the CPU (a folder moved to another machine starts over)
        resume_fp = f"{fp}/{accel.precision}"
        ck = load_checkpoint(ck_path, CHECKPOINT_FORMAT, resume_fp) if ck_path is not None else None
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
            history, best_state, best_epoch, best_scores, start = [], cpu_state(base), 0, {}, 1
            if evaluate_start and val is not None:
                scores = evaluate(base, val, accel, eval_batch)
                best_scores = scores
                history.append(history_row(0, float("nan"), float("nan"), scores))

        bar = tqdm(range(start, epochs + 1), desc=desc, initial=start - 1, total=epochs, unit="epoch",
                   dynamic_ncols=True, leave=True)
        for epoch in bar:
            t0 = time.perf_counter()
            net.train()
            loss, seen = runner.epoch(train, batch)
            lr = float(sched.get_last_lr()[0])
            t_train = time.perf_counter() - t0
            # the eager module evaluates: a compiled one would recompile for eval mode and batch size
            scores = evaluate(base, val, accel, eval_batch) if val is not None else None
            row = history_row(epoch, loss, lr, scores)
            history.append(row)
            if scores is None:
                best_state, best_epoch = cpu_state(base), epoch  # no selection: the last epoch
            elif not best_scores or scores["iou"] > best_scores["iou"]:
                best_state, best_epoch, best_scores = cpu_state(base), epoch, scores
            # wall times go to the log only: outputs must not depend on them
            log.info("%s epoch %d/%d loss %.4f val IoU %s (%.0f img/s training, %.1f s)", desc, epoch, epochs, loss,
                     "-" if scores is None else f"{scores['iou']:.4f}", seen / max(t_train, 1e-9),
                     time.perf_counter() - t0)
            bar.set_postfix(loss=f"{loss:.3f}", val_iou="-" if scores is None else f"{scores['iou']:.3f}")
            if ck_path is not None:
                save_checkpoint(ck_path, CHECKPOINT_FORMAT, resume_fp, {
                    "epoch": epoch,
                    "model": cpu_state(base), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "history": history, "best_state": best_state, "best_epoch": best_epoch,
                    "best_scores": best_scores,
                })
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
        bar.close()
    return FitResult(best_state=best_state, best_epoch=best_epoch, best_scores=best_scores,
                     history=history, start_epoch=start)
