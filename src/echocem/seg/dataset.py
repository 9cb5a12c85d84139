"""The labelled patches a network trains or is scored on, resident on its device.

One object instead of loose (x, masks, widths, wells, ids) arrays: the whole
set sits on the training device as tensors, a step indexes a batch out of it
(no per-sample Python loader), and `subset` takes the wells a task needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch


@dataclass
class SegSet:
    """x: (N, C, H, W) float32, normalised image in channel 0; y: (N, H, W) int8 labels,
    -1 on padding; widths: (N,) int64 (device); wells, ids: (N,) on the host."""

    x: torch.Tensor
    y: torch.Tensor
    widths: torch.Tensor
    wells: np.ndarray
    ids: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def subset(self, idx: np.ndarray) -> "SegSet":
        idx = np.asarray(idx, dtype=np.int64)
        t = torch.as_tensor(idx, device=self.x.device)
        return SegSet(self.x[t], self.y[t], self.widths[t], self.wells[idx], self.ids[idx])

    def with_inputs(self, x: torch.Tensor) -> "SegSet":
        """The same patches and labels with other network inputs (e.g. image + probabilities)."""
        return SegSet(x, self.y, self.widths, self.wells, self.ids)

    def batch_maker(self) -> Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]:
        return lambda lo, hi: (self.x[lo:hi], self.widths[lo:hi])

    def masks(self) -> np.ndarray:
        return self.y.cpu().numpy()

    def host_widths(self) -> np.ndarray:
        return self.widths.cpu().numpy()


def normalised_images(images: np.ndarray, widths: np.ndarray, norm_spec: Mapping[str, Any],
                      device: str) -> torch.Tensor:
    """(N, 1, H, W) float32 on `device`: raw int16 goes to the device, is normalised there."""
    from echocem.data.preprocess import normalize

    raw = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    w = torch.from_numpy(np.asarray(widths, dtype=np.int64)).to(device)
    return normalize(raw, w, norm_spec).float().unsqueeze(1)


def labelled_set(data: Mapping[str, np.ndarray], norm_spec: Mapping[str, Any], device: str) -> SegSet:
    """A split of data/ingested (images, masks, widths, well, ids) on `device`, normalised;
    labels as int8 (an eighth of int64 memory)."""
    return SegSet(
        x=normalised_images(data["images"], data["widths"], norm_spec, device),
        y=torch.from_numpy(np.asarray(data["masks"], dtype=np.int8)).to(device),
        widths=torch.from_numpy(np.asarray(data["widths"], dtype=np.int64)).to(device),
        wells=np.asarray(data["well"]),
        ids=np.asarray(data["ids"]),
    )
