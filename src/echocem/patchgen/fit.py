"""Training loop of the patch generator: flow matching with mask dropout, EMA weights,
a checkpoint after every epoch and resume from it.

An epoch is one shuffled pass over every training image (labelled and
unlabelled; the last partial batch is dropped). Each step takes a random band
of `crop_rows` consecutive rows of every patch of the batch: the network is
fully convolutional, depth structure is local, and a 64-row band costs 2.5x
less than the whole patch, so more steps fit the CPU budget; sampling then runs
on whole 160-row patches. Patches are flipped along depth with probability
`depth_flip` (never along time: echoes arrive in time order). A labelled
patch's mask is dropped with probability `mask_dropout`; unlabelled patches
never have one: both teach the unconditional model that guidance needs.
With a contrast prior (`contrast_rows` > 0, echocem.patchgen.contrast) the
mask's casing and TIE channels carry each labelled patch's echo contrast, row
by row, cropped and flipped with its patch.

Weights are averaged along training (EMA, torch.optim.swa_utils.AveragedModel);
the averaged network is the one that samples. The learning rate follows
torch.optim.lr_scheduler.OneCycleLR. Every draw comes from one torch.Generator
whose state is checkpointed, so an interrupted run resumes to exactly the
weights of an uninterrupted one. The checkpoint is keyed on a fingerprint of
the configuration and of the training arrays: a different run never resumes it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from echocem.checkpoints import cpu_state, load_checkpoint, save_checkpoint
from echocem.io import EchoCemError
from echocem.patchgen.contrast import ContrastPrior, scale_condition
from echocem.patchgen.denoiser import condition, to_generator_units, valid_columns
from echocem.patchgen.flow import flow_matching_loss
from echocem.patchgen.unet_adapter import normalised_images

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "echocem-gen-checkpoint/1"


# --------------------------------------------------------------------------- fingerprint


def fingerprint(config: Mapping[str, Any], arrays: Sequence[np.ndarray | torch.Tensor]) -> str:
    """Short hash of a training config and the exact training arrays: names a checkpoint."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for a in arrays:
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- data


@dataclass
class GeneratorData:
    """Training images on the device: x (N, 1, H, W) generator units, masks (N, H, W)
    int8 with -1 padding (all -1 where there is no mask), has_mask (N,) bool, widths (N,);
    with a contrast prior, contrast (N, 2, H) each patch's normalised profiles (1 where
    there is no mask) and the prior itself, made from the labelled patches."""

    x: torch.Tensor
    masks: torch.Tensor
    has_mask: torch.Tensor
    widths: torch.Tensor
    contrast: torch.Tensor | None = None
    prior: ContrastPrior | None = None

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def arrays(self) -> list[torch.Tensor]:
        return [self.x, self.masks, self.has_mask, self.widths] + ([self.contrast] if self.contrast is not None else [])


def generator_data(labelled: Mapping[str, np.ndarray], unlabelled: Sequence[Mapping[str, np.ndarray]],
                   norm_spec: Mapping[str, Any], data_scale: float, device: str,
                   contrast_rows: float = 0.0) -> GeneratorData:
    """Stack labelled (images, masks, widths) and unlabelled (images, widths) patches; with
    `contrast_rows` > 0, the labelled patches' contrast prior smoothed over that many rows."""
    parts_x, parts_m, parts_h, parts_w = [], [], [], []
    for block, has in [(labelled, True)] + [(u, False) for u in unlabelled]:
        n = len(block["images"])
        if n == 0:
            continue
        widths = np.asarray(block["widths"], dtype=np.int64)
        parts_x.append(to_generator_units(normalised_images(block["images"], widths, norm_spec, device), data_scale))
        masks = np.asarray(block["masks"], dtype=np.int8) if has else np.full(block["images"].shape, -1, np.int8)
        parts_m.append(torch.from_numpy(masks).to(device))
        parts_h.append(torch.full((n,), has, dtype=torch.bool, device=device))
        parts_w.append(torch.from_numpy(widths).to(device))
    if not parts_x:
        raise EchoCemError("gen_patches: no training images (labelled or unlabelled)")
    data = GeneratorData(torch.cat(parts_x), torch.cat(parts_m), torch.cat(parts_h), torch.cat(parts_w))
    if contrast_rows > 0:
        n_labelled = len(labelled["images"])
        data.prior = ContrastPrior.fit(data.x[:n_labelled, 0].cpu().numpy(), np.asarray(labelled["masks"]),
                                       np.asarray(labelled["widths"]), contrast_rows)
        data.contrast = torch.ones((len(data), data.prior.bank.shape[1], data.x.shape[-2]), device=device)
        data.contrast[:n_labelled] = torch.from_numpy(data.prior.bank).to(device)
    return data


# --------------------------------------------------------------------------- one step


def make_batch(data: GeneratorData, idx: torch.Tensor, cfg: Mapping[str, Any], gen: torch.Generator
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x1, cond, valid) of a training batch: row band, depth flips, mask dropout, contrast."""
    x, masks, has, widths = data.x[idx], data.masks[idx], data.has_mask[idx], data.widths[idx]
    b, _, h, w = x.shape
    crop = min(int(cfg["crop_rows"]), h)
    top = int(torch.randint(0, h - crop + 1, (1,), generator=gen, device=gen.device).item())
    x, masks = x[:, :, top:top + crop], masks[:, top:top + crop]
    flip = torch.rand(b, generator=gen, device=gen.device) < float(cfg["depth_flip"])
    x = torch.where(flip.view(b, 1, 1, 1), x.flip(-2), x)
    masks = torch.where(flip.view(b, 1, 1), masks.flip(-2), masks)
    keep = torch.rand(b, generator=gen, device=gen.device) >= float(cfg["mask_dropout"])
    cond = condition(masks, has & keep)
    if data.contrast is not None:
        profiles = data.contrast[idx][:, :, top:top + crop]
        cond = scale_condition(cond, torch.where(flip.view(b, 1, 1), profiles.flip(-1), profiles))
    return x, cond, valid_columns(widths, crop, w)


# --------------------------------------------------------------------------- fit


@dataclass
class GeneratorFit:
    """What a training run leaves: the averaged (sampling) weights and the loss curve."""

    ema_state: dict[str, torch.Tensor]
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    start_epoch: int = 1  # first epoch this process ran (> 1 after a resume)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return n // min(batch_size, n) if n else 0


def fit_generator(net: nn.Module, data: GeneratorData, cfg: Mapping[str, Any], seed: int,
                  checkpoint_dir: str | Path | None = None, fp: str = "", desc: str = "gen_patches",
                  on_epoch_end: Callable[[int, dict], None] | None = None) -> GeneratorFit:
    """Train `net` (a VelocityNet on data's device) by flow matching for cfg["epochs"] epochs.

    `cfg` is a params `train` block: epochs, batch_size, lr, weight_decay,
    warmup_fraction, crop_rows, depth_flip, mask_dropout, tie_weight, time_sampling,
    prediction, data_space, ema_decay. With `checkpoint_dir`, state is saved after every epoch and a
    rerun with the same fingerprint `fp` resumes after the last saved epoch.
    `on_epoch_end(epoch, row)` runs after each epoch's checkpoint (tests use it
    to interrupt a run).
    """
    epochs, batch = int(cfg["epochs"]), int(cfg["batch_size"])
    per_epoch = steps_per_epoch(len(data), batch)
    if per_epoch < 1:
        raise EchoCemError(f"{desc}: no training images")
    device = data.x.device
    opt = torch.optim.AdamW(net.parameters(), lr=float(cfg["lr"]), weight_decay=float(cfg["weight_decay"]))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=float(cfg["lr"]), total_steps=epochs * per_epoch, pct_start=float(cfg["warmup_fraction"]),
        anneal_strategy="cos", cycle_momentum=False, div_factor=10.0, final_div_factor=100.0)
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(float(cfg["ema_decay"])), use_buffers=True)
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))

    ck_path = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    ck = load_checkpoint(ck_path, CHECKPOINT_FORMAT, fp) if ck_path is not None else None
    if ck is not None:
        net.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["generator"])
        history, start = list(ck["history"]), int(ck["epoch"]) + 1
        log.info("%s: resuming after epoch %d of %d (%s)", desc, start - 1, epochs, ck_path)
    else:
        history, start = [], 1

    bar = tqdm(range(start, epochs + 1), desc=desc, initial=start - 1, total=epochs, unit="epoch",
               dynamic_ncols=True, leave=True)
    for epoch in bar:
        net.train()
        perm = torch.randperm(len(data), generator=gen, device=device)
        total = torch.zeros((), device=device)
        for s in range(per_epoch):
            x1, cond, valid = make_batch(data, perm[s * batch:(s + 1) * batch], cfg, gen)
            loss = flow_matching_loss(net, x1, cond, valid, str(cfg["time_sampling"]), str(cfg["prediction"]), gen,
                                      float(cfg["tie_weight"]), float(cfg["data_space"]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            ema.update_parameters(net)
            total += loss.detach()
        row = {"epoch": epoch, "loss": round(float(total.item()) / per_epoch, 6),
               "lr": round(float(sched.get_last_lr()[0]), 8)}
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.4f}")
        if ck_path is not None:
            save_checkpoint(ck_path, CHECKPOINT_FORMAT, fp, {
                "epoch": epoch, "model": cpu_state(net), "ema": cpu_state(ema), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "generator": gen.get_state(), "history": history})
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    bar.close()
    ema.module.eval()
    return GeneratorFit(ema_state=cpu_state(ema.module), history=history, steps=epochs * per_epoch,
                        start_epoch=start)
