"""A trained patch generator: its file on disk and batched sampling into raw patches.

The model file holds the network config, the averaged weights, the data scale
and the normalisation it was trained under, and the contrast prior of a
generator conditioned on echo contrast (echocem.patchgen.contrast), so sampling
needs nothing else.
Generated patches come back like data/ingested: int16 raw amplitudes (the
inverse of the robust z-score, rounded), 0 on the padding columns.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from echocem.io import EchoCemError
from echocem.patchgen import unet_adapter
from echocem.patchgen.contrast import ContrastPrior, scale_condition
from echocem.patchgen.denoiser import (GENERATOR_FORMAT, VelocityNet, build_velocity_net, condition,
                                       from_generator_units, valid_columns)
from echocem.patchgen.flow import PREDICTIONS, sample

RAW_LIMIT = 1000  # |raw amplitude| cap, as the simulator's and the real data's range


@dataclass
class PatchGenerator:
    """A sampling-ready generator: network (eval mode), its config, scale and normalisation."""

    net: VelocityNet
    config: dict
    data_scale: float
    norm_spec: dict
    meta: dict
    prediction: str = "velocity"  # what the network outputs (echocem.patchgen.flow)
    contrast: ContrastPrior | None = None  # conditioned on echo contrast when set


def save_generator(path: str | os.PathLike, gen: PatchGenerator) -> None:
    cfg = {**gen.config, "data_scale": gen.data_scale, "norm_spec": dict(gen.norm_spec),
           "prediction": gen.prediction}
    if gen.contrast is not None:
        cfg["contrast"] = {"rows": gen.contrast.rows, "median": [float(v) for v in gen.contrast.median],
                           "bank": torch.from_numpy(np.ascontiguousarray(gen.contrast.bank))}
    unet_adapter.save_network(path, gen.net, cfg, gen.meta, kind=GENERATOR_FORMAT)


def load_generator(path: str | os.PathLike) -> PatchGenerator:
    blob = unet_adapter.read_network_file(path, GENERATOR_FORMAT)
    cfg = dict(blob["config"])
    data_scale, norm_spec = float(cfg.pop("data_scale")), dict(cfg.pop("norm_spec"))
    prediction = str(cfg.pop("prediction"))
    if prediction not in PREDICTIONS:
        raise EchoCemError(f"{path}: the generator's prediction {prediction!r} is not one of {list(PREDICTIONS)}")
    saved = cfg.pop("contrast", None)  # absent: a generator of the mask alone
    contrast = None if saved is None else ContrastPrior(float(saved["rows"]), np.asarray(saved["median"], np.float64),
                                                        saved["bank"].numpy().astype(np.float32))
    net = build_velocity_net(cfg)
    net.load_state_dict(blob["state_dict"])
    net.eval()
    return PatchGenerator(net, cfg, data_scale, norm_spec, dict(blob["meta"]), prediction, contrast)


def to_raw(x_norm: np.ndarray, norm_spec: Mapping[str, Any]) -> np.ndarray:
    """Inverse of the robust z-score (values beyond the clip stay at the clip), as int16."""
    raw = x_norm.astype(np.float64) * float(norm_spec["scale"]) + float(norm_spec["center"])
    return np.clip(np.rint(raw), -RAW_LIMIT, RAW_LIMIT).astype(np.int16)


def sampling_contrast(gen: PatchGenerator, n: int, seed: int) -> np.ndarray | None:
    """(n, 2, H) contrast profiles drawn from the generator's prior with `seed`; None without one."""
    return None if gen.contrast is None else gen.contrast.draw(n, np.random.default_rng(int(seed)))


def generate_images(gen: PatchGenerator, masks: np.ndarray, widths: np.ndarray, steps: int, guidance: float,
                    method: str, seed: int, batch_size: int, device: str = "cpu",
                    conditional: bool = True, desc: str = "sampling", contrast: np.ndarray | None = None
                    ) -> np.ndarray:
    """int16 (N, H, W) raw patches drawn for the given masks (-1 padding), 0 on padding.

    `conditional=False` draws from the unconditional model (only the masks'
    padding is used; no guidance). Batches draw their noise in order from one
    generator seeded with `seed`. A generator conditioned on echo contrast
    takes `contrast` (N, 2, H) profiles; None draws them from its prior
    (`sampling_contrast` with `seed`). A generator without one refuses them.
    """
    masks = np.asarray(masks)
    widths = np.asarray(widths, dtype=np.int64)
    if masks.ndim != 3 or widths.shape != (len(masks),):
        raise EchoCemError(f"generate: masks must be (N, H, W) with N widths; got {masks.shape}, {widths.shape}")
    if gen.contrast is None and contrast is not None:
        raise EchoCemError("generate: contrast profiles given to a generator not conditioned on contrast")
    if gen.contrast is not None and contrast is None:
        contrast = sampling_contrast(gen, len(masks), seed)
    if contrast is not None and np.shape(contrast) != (len(masks), gen.contrast.bank.shape[1], masks.shape[1]):
        raise EchoCemError(f"generate: contrast profiles must be (N, {gen.contrast.bank.shape[1]}, H) = "
                           f"({len(masks)}, {gen.contrast.bank.shape[1]}, {masks.shape[1]}); got {np.shape(contrast)}")
    net = gen.net.to(device)
    rng = torch.Generator(device=device)
    rng.manual_seed(int(seed))
    out = np.zeros(masks.shape, dtype=np.int16)
    h, w = masks.shape[-2:]
    for lo in tqdm(range(0, len(masks), batch_size), desc=desc, unit="batch", leave=False, dynamic_ncols=True):
        hi = min(len(masks), lo + batch_size)
        m = torch.from_numpy(masks[lo:hi].astype(np.int64)).to(device)
        wd = torch.from_numpy(widths[lo:hi]).to(device)
        has = torch.full((hi - lo,), conditional, dtype=torch.bool, device=device)
        cond, valid = condition(m, has), valid_columns(wd, h, w)
        if contrast is not None and conditional:
            cond = scale_condition(cond, torch.from_numpy(np.asarray(contrast[lo:hi], np.float32)).to(device))
        # guidance applies to conditional draws; the unconditional model is used as it is
        x = sample(net, cond, valid, steps, guidance if conditional else 1.0, rng, method, gen.prediction)
        x_norm = from_generator_units(x, gen.data_scale)[:, 0].cpu().numpy()
        clip = float(gen.norm_spec["clip"])
        out[lo:hi] = to_raw(np.clip(x_norm, -clip, clip), gen.norm_spec)
        out[lo:hi][np.broadcast_to(np.arange(w)[None, None, :] >= widths[lo:hi, None, None], x_norm.shape)] = 0
    return out
