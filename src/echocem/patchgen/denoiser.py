"""The generator's network: a velocity field v(x_t, mask, t) on 160 x 272 patches.

An smp U-Net (built by the project's builder, padded to its encoder stride)
whose input channels are

    0      the noisy image x_t (generator units, see `to_generator_units`)
    1..3   the conditioning mask, one-hot over classes 0/1/2 (all zero when the
           mask is dropped, and on the padding columns of narrow patches); a
           generator conditioned on echo contrast scales the TIE and casing
           channels row by row (echocem.patchgen.contrast)
    4      the "no mask" flag: 1 everywhere when the mask is dropped, else 0
    5      the time t in [0, 1], constant over the patch

and whose one output channel is the velocity. One network is both p(image | mask)
and p(image) (mask dropout while training), which is what classifier-free
guidance needs. Padding columns (beyond a patch's width) are zero in every
input, so the network sees where a narrow patch ends.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from echocem.patchgen import unet_adapter

N_CLASSES = 3
IN_CHANNELS = 1 + N_CLASSES + 1 + 1
GENERATOR_FORMAT = "echocem-gen-patches/1"


def network_config(model_section: Mapping[str, Any]) -> dict:
    """Canonical, JSON-able config of the network from a params `model` block."""
    return {"encoder": str(model_section["encoder"]), "encoder_depth": int(model_section["encoder_depth"]),
            "decoder_channels": [int(c) for c in model_section["decoder_channels"]]}


class VelocityNet(nn.Module):
    """Assembles the input channels and runs the U-Net; returns (B, 1, H, W) velocities."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, x_t: torch.Tensor, cond: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x_t.shape
        t_map = t.to(x_t.dtype).view(b, 1, 1, 1).expand(b, 1, h, w)
        return self.unet(torch.cat([x_t, cond.to(x_t.dtype), t_map], dim=1))


def build_velocity_net(cfg: Mapping[str, Any]) -> VelocityNet:
    """A freshly initialised network (seed torch before calling for reproducible weights)."""
    unet = unet_adapter.build_unet(cfg["encoder"], cfg["encoder_depth"], cfg["decoder_channels"],
                                   in_channels=IN_CHANNELS, out_channels=1)
    return VelocityNet(unet)


def valid_columns(widths: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) float: 1 on each patch's real columns, 0 on its padding."""
    cols = torch.arange(width, device=widths.device)
    return (cols[None, :] < widths[:, None]).to(torch.float32).view(-1, 1, 1, width).expand(-1, 1, height, width)


def condition(masks: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
    """(B, 4, H, W) conditioning channels from int masks (-1 = padding) and a per-patch flag.

    Where `has_mask` is False the one-hot channels are zero and the flag channel
    is 1: the unconditional model.
    """
    m = masks.long()
    onehot = F.one_hot(m.clamp_min(0), N_CLASSES).permute(0, 3, 1, 2).to(torch.float32)
    keep = ((m >= 0).unsqueeze(1) & has_mask.view(-1, 1, 1, 1)).to(torch.float32)
    flag = (~has_mask).to(torch.float32).view(-1, 1, 1, 1).expand(-1, 1, *m.shape[-2:])
    return torch.cat([onehot * keep, flag], dim=1)


def to_generator_units(x_norm: torch.Tensor, data_scale: float) -> torch.Tensor:
    """Normalised image (robust z-score) -> generator units (divided by `data_scale`)."""
    return x_norm / float(data_scale)


def from_generator_units(x_gen: torch.Tensor, data_scale: float) -> torch.Tensor:
    return x_gen * float(data_scale)
