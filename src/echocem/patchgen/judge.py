"""Judging generated patches: how far they are from real held-out ones, and whether
they follow the masks they were conditioned on.

Distance: the debiased Sinkhorn divergence (geomloss, cost |x - y|^2 / 2)
between descriptor clouds (echocem.patchgen.descriptors). Every candidate set
is compared with the same reference, the real patches of the held-out wells,
and has the same number of patches:

- "real (training wells)": real patches the generator was trained on, a set
  disjoint from the reference: the floor, what a perfect generator of the
  training wells would score (it includes the real shift between wells);
- "generated": patches drawn for those same training masks;
- naive baselines: the same training images with shuffled masks (right
  images, wrong masks), and noise with each class's amplitude spread.

Descriptors are standardised with the mean and std of the real sets (never of
the candidates), and each block is divided by the square root of its
dimension so that "amplitude" and "encoder" weigh the same in "combined".

Faithfulness: the first U-Net's challenge IoU on generated patches against the
masks they were conditioned on, beside its IoU on real held-out patches.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch

from echocem.io import EchoCemError
from echocem.patchgen import unet_adapter
from echocem.stats import ratio_of_means

COMBINED = "combined"


def standardiser(real_blocks: list[Mapping[str, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per block (mean, std) over the pooled real descriptor sets; a constant feature gets std 1."""
    out = {}
    for name in real_blocks[0]:
        pooled = np.concatenate([b[name] for b in real_blocks])
        std = pooled.std(axis=0)
        out[name] = (pooled.mean(axis=0), np.where(std > 1e-12, std, 1.0))
    return out


def standardise(blocks: Mapping[str, np.ndarray], scale: Mapping[str, tuple[np.ndarray, np.ndarray]]
                ) -> dict[str, np.ndarray]:
    """z-scored blocks, each divided by sqrt(dim), plus their concatenation ("combined")."""
    out = {}
    for name, (mean, std) in scale.items():
        out[name] = (blocks[name] - mean) / std / np.sqrt(blocks[name].shape[1])
    out[COMBINED] = np.concatenate([out[n] for n in scale], axis=1) / np.sqrt(len(scale))
    return out


def sinkhorn_divergence(a: np.ndarray, b: np.ndarray, blur: float, scaling: float = 0.9) -> float:
    """Debiased Sinkhorn divergence between two point clouds with uniform weights."""
    from geomloss import SamplesLoss

    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise EchoCemError(f"sinkhorn: point clouds must be (n, d) and (m, d); got {a.shape} and {b.shape}")
    loss = SamplesLoss("sinkhorn", p=2, blur=float(blur), scaling=float(scaling), debias=True, backend="tensorized")
    value = loss(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)),
                 torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64)))
    return float(value.item())


def distances(reference: Mapping[str, np.ndarray], candidates: Mapping[str, Mapping[str, np.ndarray]],
              real_sets: list[Mapping[str, np.ndarray]], blur: float) -> dict[str, dict[str, float]]:
    """{candidate: {block: Sinkhorn divergence to the reference}} on standardised descriptors.

    `real_sets` (raw descriptor blocks of real patches, the reference included)
    fix the standardisation.
    """
    scale = standardiser(real_sets)
    ref = standardise(reference, scale)
    return {name: {block: sinkhorn_divergence(std_blocks, ref[block], blur)
                   for block, std_blocks in standardise(cand, scale).items()}
            for name, cand in candidates.items()}


# --------------------------------------------------------------------------- naive baselines


def shuffled_masks(masks: np.ndarray, widths: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each patch gets another patch's mask (a derangement: no patch keeps its own), cut to
    its own width so padding stays padding."""
    n = len(masks)
    if n < 2:
        raise EchoCemError("naive baseline: shuffling masks needs at least two patches")
    order = rng.permutation(n)
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, -1)  # one random cycle through all patches: nobody keeps its own mask
    out = masks[perm]
    cols = np.arange(masks.shape[2])[None, None, :]
    out = np.where(cols < np.asarray(widths)[:, None, None], np.where(out < 0, 0, out), -1).astype(np.int8)
    return out


def class_noise(masks: np.ndarray, widths: np.ndarray, class_std: Mapping[int, float], norm_spec: Mapping[str, Any],
                rng: np.random.Generator) -> np.ndarray:
    """int16 raw patches of Gaussian noise whose std in each class region is that class's
    std in the real patches (normalised units): the class-mean amplitude, no structure."""
    from echocem.patchgen.generate import to_raw

    std = np.zeros(masks.shape, dtype=np.float64)
    for c, s in class_std.items():
        std[masks == c] = s
    x = rng.standard_normal(masks.shape) * std
    x[np.broadcast_to(np.arange(masks.shape[2])[None, None, :] >= np.asarray(widths)[:, None, None], x.shape)] = 0.0
    return to_raw(x, norm_spec)


def class_std(images: np.ndarray, masks: np.ndarray, widths: np.ndarray, norm_spec: Mapping[str, Any]
              ) -> dict[int, float]:
    """Std of the normalised amplitude in each class region of real patches."""
    from echocem.data.preprocess import normalize

    x = normalize(np.asarray(images), np.asarray(widths), norm_spec)
    return {c: float(x[masks == c].std()) if (masks == c).any() else 0.0 for c in (0, 1, 2)}


# --------------------------------------------------------------------------- faithfulness


PredictFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def faithfulness(predict: PredictFn, images: np.ndarray, masks: np.ndarray, widths: np.ndarray) -> dict:
    """Challenge IoU of `predict(images, widths)` (int8 labels) against `masks`, with the
    per-patch scores (for intervals)."""
    pred = predict(images, widths)
    scores = unet_adapter.challenge_iou(masks, pred, widths)
    per_patch = unet_adapter.patch_scores(masks, pred, widths)
    return {**scores, "per_patch": per_patch, "pred": pred}


# --------------------------------------------------------------------------- the whole judgement


DescribeFn = Callable[[np.ndarray, np.ndarray, np.ndarray], dict]


def assess(reference: Mapping[str, np.ndarray], floor_sets: list[Mapping[str, np.ndarray]],
           generated: Mapping[str, Mapping[str, np.ndarray]], naive: Mapping[str, Mapping[str, np.ndarray]],
           describe: DescribeFn, predict: PredictFn, blur: float, floor_factor: float = 2.0,
           faithfulness_factor: float = 0.9, reference_sections: np.ndarray | None = None,
           seed: int = 0) -> dict:
    """Distances, faithfulness and the issue's checks for a generator.

    Each set is a mapping with images (int16 raw), masks and widths.
    `reference`: real held-out patches. `floor_sets`: disjoint draws of real
    training patches of the reference's size; the first one is "the" floor
    (the generated and naive sets are built on its masks), the others give
    the floor's spread. `describe(images, masks, widths)` returns descriptor
    blocks; `predict(images, widths)` the first U-Net's labels.

    The faithfulness ratio comes with a 95 % interval (`stats.ratio_of_means`:
    generated patches and real held-out patches resampled independently, the
    latter by whole `reference_sections` where given, since a section's
    patches err together). Its check compares the estimate; the interval says
    whether the verdict is inside the noise.
    """
    def blocks(s: Mapping[str, np.ndarray]) -> dict:
        return describe(s["images"], s["masks"], s["widths"])

    ref = blocks(reference)
    floors = [blocks(s) for s in floor_sets]
    candidates = {"real (training wells)": floors[0], **{k: blocks(s) for k, s in generated.items()},
                  **{k: blocks(s) for k, s in naive.items()}}
    dist = distances(ref, candidates, [ref, *floors], blur)
    floor_draws = [distances(ref, {"floor": f}, [ref, *floors], blur)["floor"] for f in floors]
    block_names = list(dist["real (training wells)"])
    floor_spread = {b: {"mean": float(np.mean([d[b] for d in floor_draws])),
                        "std": float(np.std([d[b] for d in floor_draws], ddof=1)) if len(floors) > 1 else None,
                        "n": len(floors)} for b in block_names}

    real_iou = faithfulness(predict, reference["images"], reference["masks"], reference["widths"])
    faith = {k: faithfulness(predict, s["images"], s["masks"], s["widths"]) for k, s in generated.items()}
    # the ratio of mean per-patch scores is the ratio of the IoUs; none when the real IoU is 0
    ratio = {k: (ratio_of_means(f["per_patch"], real_iou["per_patch"], denominator_clusters=reference_sections,
                                seed=seed) if real_iou["iou"] > 0 else None) for k, f in faith.items()}
    checks = {}
    for name in generated:
        for b in block_names:
            d, fl = dist[name][b], dist["real (training wells)"][b]
            best_naive = min(dist[k][b] for k in naive)
            checks[f"{name} | {b}: beats every naive baseline"] = bool(d < best_naive)
            checks[f"{name} | {b}: within {floor_factor:g} x the floor"] = bool(d <= floor_factor * fl)
        checks[f"{name}: faithfulness >= {faithfulness_factor:g} x real IoU"] = bool(
            ratio[name] is not None and ratio[name].estimate >= faithfulness_factor)
    strip = ("per_patch", "pred")
    return {
        "sinkhorn": dist,
        "floor_draws": floor_spread,
        "faithfulness": {k: {kk: v for kk, v in f.items() if kk not in strip} for k, f in faith.items()},
        "faithfulness_ratio": {k: r.estimate if r else None for k, r in ratio.items()},
        "faithfulness_ratio_interval": {k: r.as_dict() if r else None for k, r in ratio.items()},
        "unet_real_heldout": {k: v for k, v in real_iou.items() if k not in strip},
        "checks": checks,
        "n_patches": {"reference": int(len(reference["images"])), "floor": int(len(floor_sets[0]["images"])),
                      **{k: int(len(s["images"])) for k, s in generated.items()}},
        "n_points": int(len(ref["amplitude"])),
        "predictions": {k: f["pred"] for k, f in faith.items()},
    }
