"""The generated background's texture against the real one's, on the same masks (issue 12).

The judge's amplitude descriptors divide every statistic by the background's
spread, so they cannot say whether a generated background is too smooth, too
rough or of the wrong spread. This script can: it draws generated patches
for the masks of real training patches and compares, per patch, the spread
of each class region (raw units) and the background's mean absolute
difference between neighbouring rows (depth). Real ultrasonic backgrounds
are correlated along depth: their row difference is well below that of
white noise of the same spread (2 / sqrt(pi) = 1.13 x the spread).

From the repository root, after a pipeline run (one core, about a minute
per setting):

    .venv/bin/python benchmarks/background_texture.py
    .venv/bin/python benchmarks/background_texture.py --guidance 1 2 --steps 6 12 --generator OTHER.pt
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np
import pandas as pd
import torch

from echocem.seg.ladder import CLASS_NAMES  # class c's name at index c

MIN_PIXELS = 50  # a class region smaller than this has no spread worth reporting


def texture_table(images: np.ndarray, masks: np.ndarray, widths: np.ndarray) -> pd.DataFrame:
    """One row per patch: each class region's standard deviation (NaN below MIN_PIXELS pixels) and
    the background's mean |row-to-row difference| over vertically adjacent background pixels."""
    rows = []
    for img, mask, width in zip(images, masks, widths):
        x, m = np.asarray(img, np.float64)[:, :int(width)], np.asarray(mask)[:, :int(width)]
        row = {}
        for c, name in enumerate(CLASS_NAMES):
            region = x[m == c]
            row[f"{name} std"] = float(region.std()) if region.size >= MIN_PIXELS else np.nan
        both = (m[1:] == 0) & (m[:-1] == 0)
        row["background row difference"] = float(np.abs(np.diff(x, axis=0))[both].mean()) if both.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def medians(table: pd.DataFrame) -> pd.Series:
    """Each column's median over the patches, and the row difference over the background std
    (about 1.13 for white noise, lower for a background correlated along depth)."""
    out = table.median()
    out["row difference / std"] = float((table["background row difference"] / table["background std"]).median())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--generator", default="models/gen_patches.pt")
    p.add_argument("--ingested", default="data/ingested")
    p.add_argument("--prepared", default="data/prepared")
    p.add_argument("--patches", type=int, default=32, help="real training patches whose masks are drawn")
    p.add_argument("--seed", type=int, default=0, help="draws the patches and the generator's noise")
    p.add_argument("--steps", type=int, nargs="+", default=None, help="sampling steps (default: the params')")
    p.add_argument("--guidance", type=float, nargs="+", default=None, help="guidance (default: the params')")
    args = p.parse_args()

    from echocem.params import load_params
    from echocem.patchgen.generate import load_generator
    from echocem.patchgen.workflow import draw
    from echocem.seg.inputs import load_labelled_inputs

    torch.set_num_threads(1)
    params = load_params(args.params)
    size = params["gen_patches"]["sizes"][params["gen_patches"]["size"]]
    inputs = load_labelled_inputs(args.ingested, args.prepared)
    gen = load_generator(args.generator)
    train_idx = np.asarray(inputs.train_idx)
    idx = np.sort(np.random.default_rng(args.seed).choice(train_idx, min(args.patches, len(train_idx)), replace=False))
    masks, widths = inputs.data["masks"][idx], inputs.data["widths"][idx]
    summary = {"real training patches": medians(texture_table(inputs.data["images"][idx], masks, widths))}
    for steps, guidance in itertools.product(args.steps or [int(size["sampling"]["steps"])],
                                             args.guidance or [float(size["sampling"]["guidance"])]):
        sampling = {**size["sampling"], "steps": steps, "guidance": guidance}
        generated = draw(gen, masks, widths, sampling, args.seed, "cpu")
        summary[f"generated, {steps} steps, guidance {guidance:g}"] = medians(texture_table(generated, masks, widths))
    print(f"Medians over {len(idx)} patches (raw units; generated on the real patches' masks, {args.generator}):")
    print(pd.DataFrame(summary).T.to_string(float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
