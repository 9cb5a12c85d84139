"""The segmentation network: an smp U-Net at the native 160 x 272 size.

Three things live here: building the network from its config (`build_model`),
its file on disk (`save_model` / `load_model`: weights plus everything needed
to rebuild it, so a checkpoint is self-describing), and batched inference
(`predict_proba`), which on a GPU runs in bf16 autocast with channels_last.

Patches keep their native size: no resize. The encoder needs sides divisible by
2**depth (272 = 17 x 16 is not a multiple of 32), so `PaddedUnet` zero-pads the
input on the bottom/right up to that multiple and crops the logits back.
Narrow patches (160 wide) arrive zero-padded to 272 columns; their padding
columns get background probability 1 in every output.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from echocem.io import EchoCemError, atomic_path

N_CLASSES = 3
MODEL_FORMAT = "echocem-unet/1"


def model_config(model_section: Mapping[str, Any], in_channels: int = 1) -> dict:
    """Canonical, JSON-able network config from a params `model` block."""
    return {
        "encoder": str(model_section["encoder"]),
        "encoder_depth": int(model_section["encoder_depth"]),
        "decoder_channels": [int(c) for c in model_section["decoder_channels"]],
        "encoder_weights_path": model_section.get("encoder_weights_path"),
        "in_channels": int(in_channels),
        "classes": N_CLASSES,
    }


class PaddedUnet(nn.Module):
    """An smp U-Net accepting any input size: pad to the encoder stride, crop back."""

    def __init__(self, unet: nn.Module, multiple: int) -> None:
        super().__init__()
        self.unet = unet
        self.multiple = int(multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = (-h) % self.multiple, (-w) % self.multiple
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        out = self.unet(x)
        return out[..., :h, :w] if (pad_h or pad_w) else out


def build_model(cfg: Mapping[str, Any], load_encoder_weights: bool = True) -> PaddedUnet:
    """A fresh network from `model_config(...)` output.

    Encoder weights are never downloaded; `encoder_weights_path` (a local file
    of encoder weights, e.g. ImageNet resnet34) is loaded when set and
    `load_encoder_weights` is True (not needed when a full state dict follows).
    """
    import segmentation_models_pytorch as smp

    depth = int(cfg["encoder_depth"])
    decoder = list(cfg["decoder_channels"])
    if len(decoder) != depth:
        raise EchoCemError(
            f"model: decoder_channels has {len(decoder)} entries but encoder_depth is {depth}; "
            "give one decoder width per encoder stage"
        )
    try:
        unet = smp.Unet(
            encoder_name=cfg["encoder"],
            encoder_depth=depth,
            encoder_weights=None,
            decoder_channels=decoder,
            in_channels=int(cfg["in_channels"]),
            classes=int(cfg["classes"]),
        )
    except (KeyError, ValueError, RuntimeError) as exc:
        raise EchoCemError(f"model: cannot build encoder {cfg['encoder']!r} ({exc})") from exc
    path = cfg.get("encoder_weights_path")
    if path and load_encoder_weights:
        load_encoder_weights_file(unet.encoder, Path(path), int(cfg["in_channels"]))
    return PaddedUnet(unet, 2**depth)


def load_encoder_weights_file(encoder: nn.Module, path: Path, in_channels: int) -> None:
    """Load a local state dict into `encoder`, adapting a 3-channel first conv.

    RGB weights of the first convolution are summed over their input channels
    (an RGB image of a grey picture gives the same response) and repeated to
    `in_channels`, scaled to keep the response.
    """
    if not path.is_file():
        raise EchoCemError(f"model.encoder_weights_path: {path}: file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise EchoCemError(f"model.encoder_weights_path: {path}: not a torch state dict ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = encoder.state_dict()
    adapted = {}
    for key, value in state.items():
        if key not in own:
            continue
        if value.shape != own[key].shape and value.ndim == 4 and value.shape[0] == own[key].shape[0]:
            value = value.sum(dim=1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
        if value.shape == own[key].shape:
            adapted[key] = value
    if not adapted:
        raise EchoCemError(f"model.encoder_weights_path: {path}: no key matches the {type(encoder).__name__} encoder")
    encoder.load_state_dict(adapted, strict=False)


def save_model(path: str | os.PathLike, model: nn.Module, cfg: Mapping[str, Any], meta: Mapping[str, Any],
               kind: str = MODEL_FORMAT) -> None:
    """Write a self-describing model file (atomic; same weights -> same bytes)."""
    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"format": kind, "config": dict(cfg), "meta": dict(meta), "state_dict": state}, tmp)


def read_model_file(path: str | os.PathLike, kind: str = MODEL_FORMAT) -> dict:
    """The dict written by `save_model`; a clear error for a missing or foreign file."""
    p = Path(path)
    if not p.is_file():
        raise EchoCemError(f"{p}: model file not found (has the stage that trains it run?)")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EchoCemError(f"{p}: not a readable model file ({exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != kind:
        found = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise EchoCemError(f"{p}: expected a {kind!r} model file, found {found!r}")
    return blob


def load_model(path: str | os.PathLike) -> tuple[PaddedUnet, dict]:
    """(model in eval mode on CPU, meta) from a file written by the `unet` stage."""
    blob = read_model_file(path, MODEL_FORMAT)
    model = build_model(blob["config"], load_encoder_weights=False)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model, {**blob["meta"], "config": blob["config"]}


def unwrap(model: nn.Module) -> nn.Module:
    """The module under a torch.compile wrapper (its state_dict has clean keys)."""
    return getattr(model, "_orig_mod", model)


def valid_columns(widths: torch.Tensor, width: int) -> torch.Tensor:
    """(N, 1, 1, width) bool: True on each patch's real (non-padding) columns."""
    cols = torch.arange(width, device=widths.device)
    return (cols[None, :] < widths[:, None]).view(-1, 1, 1, width)


def background_outside(probs: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """Set padding columns to background probability 1, so every pixel sums to 1."""
    valid = valid_columns(widths, probs.shape[-1])
    background = torch.zeros_like(probs)
    background[:, 0] = 1.0
    return torch.where(valid, probs, background)


def labels_from_proba(probs: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """int8 (N, H, W) argmax classes with -1 in each patch's padding columns.

    The class axis is reduced one class at a time (ties go to the lower class, as
    np.argmax): contiguous comparisons, about 5 x faster than np.argmax over the strided
    class axis of a ladder-sized array (1,200 patches).
    """
    best = probs[:, 0].copy()
    pred = np.zeros(best.shape, dtype=np.int8)
    for k in range(1, probs.shape[1]):
        higher = probs[:, k] > best
        pred[higher] = k
        np.maximum(best, probs[:, k], out=best)
    padding = np.arange(pred.shape[-1])[None, :] >= np.asarray(widths)[:, None]
    np.copyto(pred, np.int8(-1), where=padding[:, None, :])
    return pred


@contextlib.contextmanager
def inference_context(device: str, bf16: bool = True) -> Iterator[None]:
    """Inference mode, plus bf16 autocast on CUDA (CPU stays float32: exact and portable)."""
    with torch.inference_mode():
        if device.startswith("cuda") and bf16:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                yield
        else:
            yield


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()


def batched_predict(
    model: nn.Module,
    make_batch: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
    n: int,
    device: str,
    batch_size: int,
    channels_last: bool = True,
    output: str = "probs",
) -> np.ndarray:
    """Run `model` over n inputs in batches; float32 (n, 3, H, W) probabilities, or with
    output="labels" int8 (n, H, W) classes with -1 padding (argmax on the device: only
    a byte a pixel crosses the bus).

    `make_batch(lo, hi)` returns (normalised input on `device`, widths on
    `device`) for items lo..hi-1: the caller decides how inputs are assembled,
    this function owns precision, memory layout and batching. channels_last is
    the default: measured faster on CPU (oneDNN) and on GPU (cuDNN) alike.
    """
    if batch_size < 1:
        raise EchoCemError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    chunks = []
    with inference_context(device):
        for lo in range(0, n, batch_size):
            x, widths = make_batch(lo, min(n, lo + batch_size))
            logits = model(to_memory_format(x, channels_last)).float()
            if output == "labels":
                labels = logits.argmax(dim=1).to(torch.int8)
                valid = valid_columns(widths, labels.shape[-1])[:, 0]
                out = torch.where(valid, labels, torch.full_like(labels, -1))
            else:
                out = background_outside(torch.softmax(logits, dim=1), widths)
            chunks.append(out.cpu().numpy())
    if not chunks:
        raise EchoCemError("nothing to predict: no patches given")
    return np.concatenate(chunks)


def image_batch_maker(
    images: np.ndarray, widths: np.ndarray, norm_spec: Mapping[str, Any], device: str
) -> Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]:
    """Batches of normalised one-channel images: raw int16 moves to the device, is
    normalised there (the GPU does the arithmetic, the bus carries 2 bytes a pixel)."""
    from echocem.data.preprocess import normalize

    images_t = torch.from_numpy(np.ascontiguousarray(images))
    widths_t = torch.from_numpy(np.asarray(widths, dtype=np.int64))
    pin = device.startswith("cuda")

    def make(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
        raw = images_t[lo:hi]
        raw = raw.pin_memory() if pin else raw
        raw = raw.to(device, non_blocking=pin)
        w = widths_t[lo:hi].to(device)
        x = normalize(raw, w, norm_spec)
        return x.float().unsqueeze(1), w

    return make


def check_images(images: np.ndarray, widths: np.ndarray) -> None:
    """Shapes the networks expect: (N, H, W) images and (N,) widths within 1..W."""
    if images.ndim != 3:
        raise EchoCemError(f"images must be (N, H, W); got shape {images.shape}")
    widths = np.asarray(widths)
    if widths.shape != (images.shape[0],):
        raise EchoCemError(f"widths must be ({images.shape[0]},); got shape {widths.shape}")
    if widths.size and (widths.min() < 1 or widths.max() > images.shape[2]):
        raise EchoCemError(f"widths must lie in 1..{images.shape[2]}; got {widths.min()}..{widths.max()}")


def predict_proba(
    model: nn.Module,
    images: np.ndarray,
    widths: np.ndarray,
    norm_spec: Mapping[str, Any],
    device: str,
    batch_size: int,
) -> np.ndarray:
    """Float32 (N, 3, H, W) softmax of `model` on raw int16 images (N, H, W).

    Batched on `device`; bf16 autocast and channels_last on CUDA, float32 on
    CPU; inference mode. Padding columns (beyond `widths`) are background 1.
    """
    check_images(images, widths)
    model = model.to(device)
    model = model.to(memory_format=torch.channels_last)
    make = image_batch_maker(images, widths, norm_spec, device)
    return batched_predict(model, make, len(images), device, batch_size)
