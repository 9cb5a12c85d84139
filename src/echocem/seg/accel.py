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
    """How a network trains on its device. bf16 autocast applies on CUDA (profile `bf16`) and, when
    the profile's `cpu_bf16` asks for it, on CPUs with native bf16 (`cpu_has_native_bf16`);
    torch.compile on CUDA only; channels_last and determinism on both."""

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
        bf16 = bool(a["bf16"]) if cuda else bool(a["cpu_bf16"]) and cpu_has_native_bf16()
        return Accel(device=device, bf16=bf16,
                     channels_last=bool(a["channels_last"]), compile=bool(a["compile"]) and cuda,
                     deterministic=bool(a["deterministic"]) or not cuda)

    @property
    def precision(self) -> str:
        """What the training step computes in: "bf16" (autocast) or "fp32"; recorded with the results."""
        return "bf16" if self.bf16 else "fp32"


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512_BF16 or AMX). On an AVX512_BF16 CPU the
    `small` training step ran 1.11 to 1.22 x faster in bf16 than in fp32 (docs/performance.md);
    without native bf16, oneDNN emulates it 12 to 70 x slower than fp32 (benchmarks/cpu_ceiling.py
    measures both)."""
    cpu = torch.cpu
    return any(bool(getattr(cpu, probe, lambda: False)()) for probe in
               ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


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
    """bf16 autocast of the training step's forward pass where `accel` asks for it."""
    if not accel.bf16:
        return contextlib.nullcontext()
    return torch.autocast("cuda" if accel.cuda else "cpu", dtype=torch.bfloat16)
