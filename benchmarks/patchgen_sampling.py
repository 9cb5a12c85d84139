"""Sampling speed of the patch generator (issue 12): generated patches per second.

Times `echocem.patchgen.generate.generate_images` (the stages' sampling path:
ODE steps with classifier-free guidance, conversion to raw int16) on masks of
the shape the pipeline uses, for the settings of a params size, and the bare
network forward for reference. With --model it times a trained generator file
(models/gen_patches.pt); otherwise a freshly initialised network of the same
configuration (same cost: speed does not depend on the weights).

From the repository root, e.g.:

    .venv/bin/python benchmarks/patchgen_sampling.py                       # params gen_patches.size
    .venv/bin/python benchmarks/patchgen_sampling.py --size full --model models/gen_patches.pt
    .venv/bin/python benchmarks/patchgen_sampling.py --steps 4 8 16 --json patchgen_sampling.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from echocem.params import load_params
from echocem.runtime import configure_threads, resolve_device

H, W = 160, 272


def synthetic_masks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks like the real ones: a casing band, a wandering TIE, one patch in eight 160 wide."""
    rng = np.random.default_rng(seed)
    cols = np.arange(W)[None, :]
    masks = np.zeros((n, H, W), np.int8)
    widths = np.full(n, W, np.int16)
    widths[::8] = 160
    for i in range(n):
        tie = 80 + 25 * np.sin(np.arange(H) / rng.uniform(20, 60))[:, None]
        masks[i][np.abs(cols - tie) <= 10] = 1
        masks[i][:, 18:34] = 2
        masks[i][:, widths[i]:] = -1
    return masks, widths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--size", default=None, help="gen_patches size (default: params gen_patches.size)")
    ap.add_argument("--model", type=Path, default=None, help="a trained generator file (optional)")
    ap.add_argument("--device", default=None, help="auto | cpu | cuda (default: params execution.device)")
    ap.add_argument("--patches", type=int, default=32, help="patches drawn per timing")
    ap.add_argument("--steps", type=int, nargs="*", default=None, help="ODE steps to time (default: the size's)")
    ap.add_argument("--rounds", type=int, default=2, help="timings per setting; the best counts (shared machines)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the stages get 1 each by default)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()

    from echocem.patchgen.denoiser import build_velocity_net, condition, network_config, valid_columns
    from echocem.patchgen.generate import PatchGenerator, generate_images, load_generator

    params = load_params(args.params)
    configure_threads(args.threads)
    device = resolve_device(args.device or params["execution"]["device"])
    section = params["gen_patches"]
    size_name = args.size or section["size"]
    size = section["sizes"][size_name]
    sampling = size["sampling"]
    if args.model is not None:
        gen = load_generator(args.model)
    else:
        torch.manual_seed(0)
        cfg = network_config(size["model"])
        gen = PatchGenerator(build_velocity_net(cfg).eval(), cfg, float(size["data_scale"]), {
            "method": "global_robust_zscore", "center": 0.0, "scale": 27.0, "clip": 20.0}, {},
            str(size["train"]["prediction"]))
    masks, widths = synthetic_masks(args.patches, 0)
    batch = int(sampling["batch_size"])
    results = {"device": device if device == "cpu" else torch.cuda.get_device_name(), "threads": args.threads,
               "size": size_name, "encoder": gen.config["encoder"], "method": sampling["method"],
               "guidance": float(sampling["guidance"]), "batch_size": batch, "patches": args.patches,
               "parameters": int(sum(p.numel() for p in gen.net.parameters())), "trained": args.model is not None,
               "torch": torch.__version__, "settings": []}

    # the bare forward pass of one batch (two with guidance): the unit of sampling cost
    gen.net.to(device).eval()
    m = torch.from_numpy(masks[:batch].astype(np.int64)).to(device)
    wd = torch.from_numpy(widths[:batch].astype(np.int64)).to(device)
    x = torch.randn(len(m), 1, H, W, device=device)
    cond, t = condition(m, torch.ones(len(m), dtype=torch.bool, device=device)), torch.full((len(m),), 0.5, device=device)
    with torch.inference_mode():
        gen.net(x * valid_columns(wd, H, W), cond, t)
        start = time.perf_counter()
        gen.net(x, cond, t)
        forward = time.perf_counter() - start
    results["forward_patches_per_s"] = len(m) / forward

    calls_per_step = 2 if sampling["method"] == "heun" else 1
    for steps in args.steps or [int(sampling["steps"])]:
        generate_images(gen, masks[:2], widths[:2], steps, float(sampling["guidance"]), sampling["method"],
                        0, batch, device)  # warm-up (allocator, oneDNN kernels)
        best = float("inf")
        for r in range(args.rounds):
            start = time.perf_counter()
            generate_images(gen, masks, widths, steps, float(sampling["guidance"]), sampling["method"], r, batch,
                            device)
            best = min(best, time.perf_counter() - start)
        calls = (calls_per_step * steps - (calls_per_step - 1)) * (2 if float(sampling["guidance"]) != 1.0 else 1)
        row = {"steps": steps, "network_calls_per_patch": calls, "seconds": best,
               "patches_per_s": args.patches / best}
        results["settings"].append(row)
        print(f"{results['device']}, {args.threads} thread(s), size {size_name} ({gen.config['encoder']}, "
              f"{results['parameters']:,} parameters), {sampling['method']} {steps} steps, guidance "
              f"{sampling['guidance']}: {row['patches_per_s']:.2f} patches/s ({calls} forward passes per patch; "
              f"bare forward {results['forward_patches_per_s']:.1f} patches/s)")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
