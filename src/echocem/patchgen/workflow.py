"""The generator end to end, as both stages use it: train on a set of labelled wells plus
unlabelled images, then draw (image, mask) pairs for mask proposals.

Seeds: every draw derives from params `seed` and a label naming the task
(`echocem.runtime.derived_seed`), so the study's generator for wells {1} and
the stage's generator never share random streams by accident.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from echocem.io import load_npz
from echocem.patchgen.denoiser import build_velocity_net, network_config
from echocem.patchgen.fit import GeneratorFit, fingerprint, fit_generator, generator_data
from echocem.patchgen.generate import PatchGenerator, generate_images, sampling_contrast
from echocem.patchgen.masks import MaskRanges, propose_masks
from echocem.runtime import derived_seed

# the splits whose images the generator learns without masks
UNLABELLED_SPLITS = ("unlabeled", "test")
PAIR_FIELDS = ("images", "masks", "widths", "ids", "well")


def unlabelled_images(ingested: str | Path) -> list[dict[str, np.ndarray]]:
    """The images (and widths) of UNLABELLED_SPLITS in an ingested folder, one block per split."""
    blocks = (load_npz(Path(ingested) / f"{name}.npz") for name in UNLABELLED_SPLITS)
    return [{"images": b["images"], "widths": b["widths"]} for b in blocks]


def training_pairs(data: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    """The labelled patches `idx` as the generator trains on them (PAIR_FIELDS)."""
    return {k: np.asarray(data[k])[idx] for k in PAIR_FIELDS}


def train_generator(labelled: Mapping[str, np.ndarray], unlabelled: Sequence[Mapping[str, np.ndarray]],
                    norm_spec: Mapping[str, Any], size_cfg: Mapping[str, Any], seed: int, device: str,
                    checkpoint_root: Path | None, task: str, meta: Mapping[str, Any] | None = None
                    ) -> tuple[PatchGenerator, GeneratorFit]:
    """A generator trained on `labelled` (images, masks, widths) and `unlabelled` (images, widths).

    `size_cfg` is one entry of params gen_patches.sizes (model, data_scale,
    train). Checkpoints go to checkpoint_root/<fingerprint>/ and a rerun
    resumes there; `task` names the run (seeds, progress bar).
    """
    cfg = network_config(size_cfg["model"])
    contrast_rows = float(size_cfg["model"]["contrast_rows"])
    train_cfg = dict(size_cfg["train"])
    data_scale = float(size_cfg["data_scale"])
    data = generator_data(labelled, unlabelled, norm_spec, data_scale, device, contrast_rows)
    fp = fingerprint({"task": task, "seed": int(seed), "model": cfg, "contrast_rows": contrast_rows,
                      "train": train_cfg, "data_scale": data_scale, "norm_spec": dict(norm_spec), "device": device},
                     data.arrays())
    torch.manual_seed(derived_seed(seed, task, "init"))
    net = build_velocity_net(cfg).to(device)
    ck_dir = checkpoint_root / fp if checkpoint_root is not None else None
    run = fit_generator(net, data, train_cfg, derived_seed(seed, task, "fit"), ck_dir, fp, desc=task)
    net.load_state_dict(run.ema_state)
    net.eval()
    info = {"task": task, "n_labelled": int(len(labelled["images"])),
            "n_unlabelled": int(sum(len(u["images"]) for u in unlabelled)), "steps": run.steps,
            "final_loss": run.history[-1]["loss"] if run.history else None, **(meta or {})}
    return PatchGenerator(net, cfg, data_scale, dict(norm_spec), info, str(train_cfg["prediction"]),
                          data.prior), run


def draw(gen: PatchGenerator, masks: np.ndarray, widths: np.ndarray, sampling: Mapping[str, Any], seed: int,
         device: str, desc: str = "sampling", contrast: np.ndarray | None = None) -> np.ndarray:
    """int16 raw patches for `masks` with the params `sampling` block (steps, method, guidance, batch_size);
    `contrast`: the profiles a contrast-conditioned generator draws with (None: from its prior)."""
    return generate_images(gen, masks, widths, int(sampling["steps"]), float(sampling["guidance"]),
                           str(sampling["method"]), seed, int(sampling["batch_size"]), device, desc=desc,
                           contrast=contrast)


def proposal_pairs(gen: PatchGenerator, train: Mapping[str, np.ndarray], n: int, proposals_cfg: Mapping[str, Any],
                   sampling: Mapping[str, Any], seed: int, device: str, task: str,
                   ranges: MaskRanges | None = None) -> dict[str, np.ndarray]:
    """`n` mask proposals from `train` (masks, widths, ids) and a patch drawn for each.

    The result is the generated-pairs contract: images int16, masks int8 (-1
    padding), widths int16, source_index/source_id (the training mask each
    proposal came from) and the modification fields of echocem.patchgen.masks;
    from a contrast-conditioned generator also contrast (N, 2, H) float32, the
    profiles each patch was drawn with (echocem.patchgen.contrast).
    """
    rng = np.random.default_rng(derived_seed(seed, task, "proposals"))
    pairs = propose_masks(train["masks"], train["widths"], train["ids"], n, proposals_cfg, rng, ranges)
    contrast = sampling_contrast(gen, n, derived_seed(seed, task, "contrast"))
    pairs["images"] = draw(gen, pairs["masks"], pairs["widths"], sampling, derived_seed(seed, task, "draw"), device,
                           desc=f"{task}: sampling", contrast=contrast)
    if contrast is not None:
        pairs["contrast"] = contrast
    return pairs
