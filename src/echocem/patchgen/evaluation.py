"""The gen_patches judgement end to end: build the judged patch sets, run the judge.

Sets, all of the same size n = min(held-out, training, judge.max_patches):
the reference (n real held-out patches), `floor_draws` disjoint draws of n
real training patches (the first is the floor, the rest its spread), the
generator's patches for the floor's masks ("same masks") and for n mask
proposals, and the two naive baselines built on the floor's patches. Every
random choice derives from params `seed`.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from torch import nn

from echocem.patchgen import descriptors, judge, unet_adapter
from echocem.patchgen.generate import PatchGenerator
from echocem.patchgen.workflow import draw
from echocem.runtime import derived_seed
from echocem.seg.intervals import section_codes

STAGE = "gen_patches"
SAME, PROPOSED = "generated: same masks", "generated: proposed masks"
SHUFFLED, NOISE = "naive: training images, shuffled masks", "naive: class-std noise"


def _patch_set(data: Mapping[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {"images": data["images"][idx], "masks": data["masks"][idx], "widths": data["widths"][idx]}


def judge_generator(gen: PatchGenerator, data: Mapping[str, np.ndarray], train_idx: np.ndarray,
                    heldout_idx: np.ndarray, pairs: Mapping[str, np.ndarray], judge_cfg: Mapping[str, Any],
                    sampling: Mapping[str, Any], norm_spec: Mapping[str, Any], unet: nn.Module, seed: int,
                    device: str) -> tuple[dict, dict]:
    """(metrics of echocem.patchgen.judge.assess, the sets and predictions the figures show).

    `data`: the labelled split (images, masks, widths, ids); `pairs`: the
    generated proposal pairs (their first n are judged); `unet`: the first
    U-Net, trained on real pairs of the training wells only.
    """
    rng = np.random.default_rng(derived_seed(seed, STAGE, "judge"))
    n = min(len(heldout_idx), len(train_idx), int(judge_cfg["max_patches"]))
    ref_idx = np.sort(rng.choice(heldout_idx, n, replace=False))
    order = rng.permutation(train_idx)
    draws = max(1, min(int(judge_cfg["floor_draws"]), len(train_idx) // n))
    floor_idx = [np.sort(order[d * n:(d + 1) * n]) for d in range(draws)]
    reference, floors = _patch_set(data, ref_idx), [_patch_set(data, i) for i in floor_idx]

    same = dict(floors[0])
    same["images"] = draw(gen, same["masks"], same["widths"], sampling, derived_seed(seed, STAGE, "same"), device,
                          desc="sampling: same masks")
    proposed = {"images": pairs["images"][:n], "masks": pairs["masks"][:n], "widths": pairs["widths"][:n]}
    naive_rng = np.random.default_rng(derived_seed(seed, STAGE, "naive"))
    train = _patch_set(data, train_idx)
    spread = judge.class_std(train["images"], train["masks"], train["widths"], norm_spec)
    naive = {
        SHUFFLED: {**floors[0], "masks": judge.shuffled_masks(floors[0]["masks"], floors[0]["widths"], naive_rng)},
        NOISE: {**floors[0], "images": judge.class_noise(floors[0]["masks"], floors[0]["widths"], spread, norm_spec,
                                                          naive_rng)},
    }
    strip = int(judge_cfg["strip_rows"])

    def describe(images: np.ndarray, masks: np.ndarray, widths: np.ndarray) -> dict:
        return descriptors.describe(images, masks, widths, norm_spec, strip, unet)

    def predict(images: np.ndarray, widths: np.ndarray) -> np.ndarray:
        return unet_adapter.predict_labels(unet, images, widths, norm_spec, device, 16)

    verdict = judge.assess(reference, floors, {SAME: same, PROPOSED: proposed}, naive, describe, predict,
                           float(judge_cfg["blur"]),
                           reference_sections=section_codes(data["well"][ref_idx], data["section"][ref_idx]),
                           seed=derived_seed(seed, STAGE, "faithfulness interval"))
    shown = {"same": same, "floor": floors[0], "floor_ids": data["ids"][floor_idx[0]],
             "predictions": verdict.pop("predictions")}
    return verdict, shown
