"""The segmentation loss: focal + soft Dice over the labelled pixels."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from echocem.seg.unet import N_CLASSES


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
