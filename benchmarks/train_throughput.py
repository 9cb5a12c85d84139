"""U-Net training and inference throughput on whatever device is present (issue 7).

Measures, at the same batch size and with the settings of a params profile:
  (a) the isolated model step: forward + focal/Dice loss + backward + AdamW on
      one random batch already on the device;
  (b) the real training loop: `StepRunner.epoch` of echocem.seg.loop over a
      dataset resident on the device (batch gather, augmentation on the device,
      step), exactly the code the stages run;
  (c) inference: `predict_proba` from raw int16 host arrays (transfer, on-device
      normalisation, softmax, copy back) and the bare forward pass.
Prints images/s, model TFLOP/s (FLOPs counted with torch.utils.flop_counter)
and the ratio (b)/(a). With --stage-times, also prints the wall time of each
stage from a finished run's Snakemake benchmark files.

From the repository root, e.g.:

    .venv/bin/python benchmarks/train_throughput.py                     # CPU default (profile small)
    .venv/bin/python benchmarks/train_throughput.py --profile full      # GPU setting (resnet34, bf16, compile)
    .venv/bin/python benchmarks/train_throughput.py --stage-times logs/benchmarks
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from echocem.data.preprocess import fit_normalization
from echocem.params import load_params
from echocem.runtime import configure_threads, resolve_device
from echocem.seg.accel import Accel, execution_mode
from echocem.seg.dataset import SegSet, labelled_set
from echocem.seg.loop import StepRunner, steps_per_epoch
from echocem.seg.optim import make_optimizer
from echocem.seg.segmenter import new_model
from echocem.seg.unet import model_config, predict_proba, to_memory_format

H, W = 160, 272


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: str) -> float:
    """Seconds per call of `fn` (after the caller's warm-up)."""
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def count_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def synthetic_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random int16 images and masks shaped like the real ones (one in eight 160 wide, padded)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 30, (n, H, W)).clip(-700, 700).astype(np.int16)
    masks = rng.integers(0, 3, (n, H, W)).astype(np.int8)
    widths = np.full(n, W, dtype=np.int16)
    widths[::8] = 160
    images[::8, :, 160:] = 0
    masks[::8, :, 160:] = -1
    return images, masks, widths


def stage_times(folder: Path) -> None:
    rows = []
    for f in sorted(folder.glob("*.tsv")):
        with f.open() as fh:
            first = next(csv.DictReader(fh, delimiter="\t"), None)
        if first is not None:
            rows.append((f.stem, float(first["s"])))
    total = sum(s for _, s in rows)
    for name, s in sorted(rows, key=lambda r: -r[1]):
        print(f"  {name:16s} {s:8.1f} s")
    print(f"  {'sum':16s} {total:8.1f} s (stages overlap when run in parallel)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", default=None, help="unet profile (default: params unet.profile)")
    ap.add_argument("--device", default=None, help="auto | cpu | cuda (default: params execution.device)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the profile's train.batch_size")
    ap.add_argument("--images", type=int, default=None, help="resident dataset size (default 8 batches)")
    ap.add_argument("--epochs", type=int, default=1, help="timed passes of the real loop (b) per round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating (a)/(b) rounds; the best of each counts")
    ap.add_argument("--steps", type=int, default=None, help="timed isolated steps (a) per round (default: one epoch's)")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the stages get 1 each by default)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--stage-times", type=Path, default=None, help="folder of Snakemake benchmark .tsv files")
    args = ap.parse_args()

    params = load_params(args.params)
    configure_threads(args.threads)
    device = resolve_device(args.device or params["execution"]["device"])
    name = args.profile or params["unet"]["profile"]
    profile = params["unet"]["profiles"][name]
    batch = args.batch_size or int(profile["train"]["batch_size"])
    n = args.images or 8 * batch
    accel = Accel.from_profile(profile, device)
    cfg = model_config(profile["model"], in_channels=1)
    seed = int(params["seed"])

    images, masks, widths = synthetic_data(n, seed)
    norm_spec = fit_normalization(images, widths)
    results: dict = {"device": device if device == "cpu" else torch.cuda.get_device_name(),
                     "profile": name, "encoder": cfg["encoder"], "batch_size": batch, "resident_images": n,
                     "threads": args.threads, "bf16": accel.bf16, "channels_last": accel.channels_last,
                     "compile": accel.compile, "torch": torch.__version__}

    with execution_mode(accel):
        model = new_model(cfg, seed).to(device)
        if accel.channels_last:
            model = model.to(memory_format=torch.channels_last)
        net = torch.compile(model) if accel.compile else model
        steps = steps_per_epoch(n, batch)
        opt, sched = make_optimizer(model, profile["train"], 10**6, accel)
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
        runner = StepRunner(net, opt, sched, profile["train"], profile["augment"], accel, gen)

        # (a) isolated step on one random batch on the device
        xa = torch.randn(batch, 1, H, W, device=device)
        ya = torch.randint(0, 3, (batch, H, W), device=device, dtype=torch.int8)
        net.train()
        for _ in range(3):
            runner.step(xa, ya)
        flops_train = count_flops(lambda: runner.step(xa, ya)) / batch

        # (b) the real loop over a resident dataset: gather + augmentation + step
        data: SegSet = labelled_set({"images": images, "masks": masks, "widths": widths,
                                     "well": np.zeros(n, dtype=np.int32), "ids": np.arange(n).astype(str)},
                                    norm_spec, device)
        runner.epoch(data, batch)  # warm-up (compile, allocator)

        # (a) and (b) alternate, `rounds` times, and the best of each counts: on a shared
        # machine this keeps other people's load out of the ratio
        ips_a, ips_b = [], []
        for _ in range(args.rounds):
            t_a = timed(lambda: runner.step(xa, ya), args.steps or steps, device)
            ips_a.append(batch / t_a)
            seen = [0]

            def one_epoch() -> None:
                seen[0] += runner.epoch(data, batch)[1]

            t_b = timed(one_epoch, args.epochs, device)
            ips_b.append(seen[0] / args.epochs / t_b)
        ips_a, ips_b = max(ips_a), max(ips_b)

        # (c) inference: bare forward on a resident batch, and predict_proba from host int16
        eval_batch = int(profile["train"]["eval_batch_size"])
        net.eval()
        xc = to_memory_format(torch.randn(eval_batch, 1, H, W, device=device), accel.channels_last)

        def forward() -> None:
            with torch.inference_mode(), (torch.autocast("cuda", dtype=torch.bfloat16) if accel.bf16
                                          else torch.autocast("cpu", enabled=False)):
                net(xc)

        forward()
        flops_infer = count_flops(forward) / eval_batch
        t_f = timed(forward, max(2, steps // 2), device)
        ips_f = eval_batch / t_f
        predict_proba(model, images[:eval_batch], widths[:eval_batch], norm_spec, device, eval_batch)
        t_p = timed(lambda: predict_proba(model, images, widths, norm_spec, device, eval_batch), 1, device)
        ips_p = n / t_p

    results.update({
        "train_gflop_per_image": flops_train / 1e9, "infer_gflop_per_image": flops_infer / 1e9,
        "a_isolated_step_img_s": ips_a, "a_tflop_s": ips_a * flops_train / 1e12,
        "b_real_loop_img_s": ips_b, "b_tflop_s": ips_b * flops_train / 1e12,
        "ratio_b_over_a": ips_b / ips_a,
        "c_forward_img_s": ips_f, "c_forward_tflop_s": ips_f * flops_infer / 1e12,
        "c_predict_proba_img_s": ips_p,
    })
    print(f"device {results['device']}, profile {name} ({cfg['encoder']}), batch {batch}, "
          f"{n} resident images, {args.threads} thread(s), bf16 {accel.bf16}, channels_last "
          f"{accel.channels_last}, compile {accel.compile}")
    print(f"  model: {flops_train / 1e9:.2f} GFLOP per training image, {flops_infer / 1e9:.2f} GFLOP per inference")
    print(f"  (a) isolated step     {ips_a:10.1f} images/s  {results['a_tflop_s']:.4f} TFLOP/s")
    print(f"  (b) real training loop {ips_b:9.1f} images/s  {results['b_tflop_s']:.4f} TFLOP/s")
    print(f"  (b)/(a)               {ips_b / ips_a:10.3f}")
    print(f"  (c) inference forward {ips_f:10.1f} images/s  {results['c_forward_tflop_s']:.4f} TFLOP/s")
    print(f"  (c) predict_proba     {ips_p:10.1f} images/s  (host int16 in, float32 probabilities out)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    if args.stage_times:
        print(f"wall time per stage ({args.stage_times}):")
        stage_times(args.stage_times)


if __name__ == "__main__":
    sys.exit(main())
