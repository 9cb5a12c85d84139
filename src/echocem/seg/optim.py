"""Optimiser and learning-rate schedule of the segmentation networks (torch.optim)."""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from echocem.io import EchoCemError
from echocem.seg.accel import Accel

# The schedules' floors and starts, as fractions of the peak learning rate.
START_FRACTION = 0.1  # onecycle: the warm-up starts at lr / 10
FLOOR_FRACTION = 0.01  # onecycle and cosine decay to lr / 100


def make_optimizer(model: nn.Module, train_cfg: Mapping[str, Any], total_steps: int, accel: Accel):
    """AdamW and a per-step schedule from torch.optim.lr_scheduler.

    onecycle: warm-up from lr/10 over `warmup_fraction` of the steps, then cosine decay
    to lr/100 (OneCycleLR, momentum left alone); cosine: the decay alone
    (CosineAnnealingLR); constant: lr throughout.
    """
    lr = float(train_cfg["lr"])
    total = max(1, int(total_steps))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=float(train_cfg["weight_decay"]),
                            fused=accel.cuda)
    kind = str(train_cfg["schedule"])
    if kind == "onecycle":
        # OneCycleLR needs each phase to span more than one of its steps (a run of one or
        # two steps, as in the tests, is otherwise a division by zero)
        steps = total + 1  # the schedule is stepped after every optimiser step
        pct = min(max(float(train_cfg["warmup_fraction"]), 1.5 / steps), 1.0 - 0.5 / steps)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=lr, total_steps=steps, pct_start=pct, anneal_strategy="cos", cycle_momentum=False,
            div_factor=1.0 / START_FRACTION, final_div_factor=START_FRACTION / FLOOR_FRACTION)
    elif kind == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=lr * FLOOR_FRACTION)
    elif kind == "constant":
        sched = torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    else:
        raise EchoCemError(f"params train.schedule: unknown schedule {kind!r} (onecycle, cosine, constant)")
    return opt, sched
