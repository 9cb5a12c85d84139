"""Speed of section inference: windows batched strip by strip against windows of all strips sharing batches.

`echocem.seg.sections.predict_runs` predicts every run (the depth-adjacent
patches of a section) over overlapping windows. Batching the windows of one
strip at a time leaves a batch of 1 to 3 windows on the embedded default
(sections of 4 patches; a batch of 1 for patch-by-patch prediction); the
windows of all strips now share batches of `eval_batch_size` patches' worth of
rows. This script measures both, in one run, with the network of a params
profile (fresh weights: the speed does not depend on them), on a split of
`--sections` sections of `--patches` patches, one thread:

  - patches/s of sections + depth-flip TTA (what the ladder and the submission
    run) and of patch-by-patch prediction with TTA, strip by strip;
  - the same with shared batches, for each batch size in `--batch-sizes`, as a
    ratio to strip by strip; and the largest difference of the probabilities.

From the repository root:

    .venv/bin/python benchmarks/section_inference.py
    .venv/bin/python benchmarks/section_inference.py --sections 40 --patches 4 --batch-sizes 4 8 16 32
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from echocem.params import active_profile, load_params
from echocem.seg.context import patch_runs
from echocem.seg.sections import (PATCH_ROWS, cut_all, flip_tta, model_predictor, predict_runs, section_runs,
                                  stitch, windowed_predict)
from echocem.seg.segmenter import new_model
from echocem.seg.unet import model_config

W = 272


def strip_by_strip(x, widths, runs, predict, window, stride, batch_size):
    """The former path: one `windowed_predict` call (its own batches) per run."""
    strips = [windowed_predict(stitch(x, run), predict, window, stride, batch_size) for run in runs]
    return cut_all(strips, runs, len(widths))


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", default=None, help="unet profile (default: the active one)")
    p.add_argument("--sections", type=int, default=40)
    p.add_argument("--patches", type=int, default=4, help="patches per section")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    params = load_params(args.params)
    unet = params["unet"]
    profile = unet["profiles"][args.profile] if args.profile else active_profile(unet, "unet")
    model = new_model(model_config(profile["model"]), seed=0)
    context = profile["context"]
    window, stride = int(context["window_rows"]), int(context["stride_rows"])
    own_batch = int(profile["train"]["eval_batch_size"])

    n = args.sections * args.patches
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 1, PATCH_ROWS, W)).astype(np.float32)
    widths = np.full(n, W)
    section = np.repeat(np.arange(args.sections), args.patches)
    patch = np.tile(np.arange(args.patches), args.sections)
    modes = {"sections + TTA": (section_runs(np.zeros(n, int), section, patch, widths), window, stride),
             "patch by patch + TTA": (patch_runs(n, widths), PATCH_ROWS, PATCH_ROWS)}
    predict = flip_tta(model_predictor(model, "cpu"))
    predict(torch.from_numpy(x[:2]))  # warm-up

    print(f"{n} patches ({args.sections} sections of {args.patches}), window {window} rows every {stride}, "
          f"{args.threads} thread(s); profile eval_batch_size {own_batch}; best of {args.repeats}")
    for mode, (runs, win, st) in modes.items():
        base_t, base = timed(lambda: strip_by_strip(x, widths, runs, predict, win, st, own_batch), args.repeats)
        print(f"\n{mode}: strip by strip (batch {own_batch} windows) {n / base_t:6.1f} patches/s")
        for bs in args.batch_sizes:
            t, out = timed(lambda: predict_runs(x, widths, runs, predict, win, st, bs), args.repeats)
            print(f"  shared batches of {bs:3d} patches' rows: {n / t:6.1f} patches/s  "
                  f"{base_t / t:4.2f} x   max |difference| {float(np.abs(out - base).max()):.1e}")


if __name__ == "__main__":
    main()
