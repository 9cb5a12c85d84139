"""How a training or inference step runs on its device: precision, memory layout,
compilation, determinism."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import torch


@dataclass(frozen=True)
class Accel:
    """bf16 and torch.compile apply on CUDA only; on CPU, channels_last and determinism."""

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
