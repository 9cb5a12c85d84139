"""This CPU's own ceiling, and the U-Net training step measured against it, in one run.

The ceiling: a dense 3 x 3 convolution (64 -> 64 channels on 80 x 136, the kind of
layer the U-Net spends its time in) and a 1024 x 1024 matmul, in float32 and bfloat16,
on one thread and on all threads. The training step: the `small` profile's U-Net, one
optimiser step (forward, focal + Dice loss, backward, AdamW) on a batch, eager and
compiled (torch.compile on the CPU: the compile time is reported and not part of the
step time) in float32, and eager under bf16 autocast (how the stages train with params
accel.cpu_bf16 on a CPU with native bf16). Its GFLOP/s (counted with
torch.utils.flop_counter) divided by the conv ceiling at the same thread count is the
fraction the issue asks for.

    .venv/bin/python benchmarks/cpu_ceiling.py                 # 1 thread and all threads
    .venv/bin/python benchmarks/cpu_ceiling.py --threads 1 --json cpu.json

Run it on a quiet machine: every figure is the best of `--rounds` timed rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def best_seconds(fn, rounds: int, inner: int) -> float:
    """Best wall time per call over `rounds` rounds of `inner` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def conv_gflops(dtype: torch.dtype, rounds: int) -> float:
    x = torch.randn(8, 64, 80, 136).to(dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(64, 64, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last)
    flops = 2 * 8 * 64 * 64 * 9 * 80 * 136
    with torch.inference_mode():
        s = best_seconds(lambda: F.conv2d(x, w, padding=1), rounds, 3)
    return flops / s / 1e9


def matmul_gflops(dtype: torch.dtype, rounds: int) -> float:
    a, b = torch.randn(1024, 1024).to(dtype), torch.randn(1024, 1024).to(dtype)
    with torch.inference_mode():
        s = best_seconds(lambda: a @ b, rounds, 5)
    return 2 * 1024**3 / s / 1e9


def training_step(params: dict, compiled: bool, rounds: int, batch: int, bf16: bool = False) -> dict:
    """img/s and GFLOP/s of the small profile's training step, eager or compiled, fp32 or bf16 autocast."""
    from torch.utils.flop_counter import FlopCounterMode

    from echocem.seg.accel import Accel, execution_mode
    from echocem.seg.loop import StepRunner
    from echocem.seg.optim import make_optimizer
    from echocem.seg.segmenter import new_model
    from echocem.seg.unet import model_config

    profile = params["unet"]["profiles"]["small"]
    accel = Accel("cpu", bf16=bf16, channels_last=True, compile=False, deterministic=True)
    with execution_mode(accel):
        model = new_model(model_config(profile["model"]), 0).to(memory_format=torch.channels_last)
        opt, sched = make_optimizer(model, profile["train"], 10**6, accel)
        net = torch.compile(model) if compiled else model
        runner = StepRunner(net, opt, sched, profile["train"], None, accel, torch.Generator().manual_seed(0))
        x = torch.randn(batch, 1, 160, 272)
        y = torch.randint(0, 3, (batch, 160, 272), dtype=torch.int8)
        start = time.perf_counter()
        runner.step(x, y)  # the first step compiles
        first = time.perf_counter() - start
        with FlopCounterMode(display=False) as counter:
            model_step = StepRunner(model, opt, sched, profile["train"], None, accel, torch.Generator())
            model_step.step(x, y)
        flops = counter.get_total_flops()
        s = best_seconds(lambda: runner.step(x, y), rounds, 2)
    return {"img_s": batch / s, "gflop_s": flops / s / 1e9, "gflop_per_image": flops / batch / 1e9,
            "first_step_s": first}


MODES = ("eager", "compiled", "eager_bf16")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--threads", type=int, nargs="*", default=None, help="thread counts (default: 1 and all)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from echocem.params import load_params

    params = load_params(args.params)
    counts = args.threads or sorted({1, os.cpu_count() or 1})
    results = {"cpu_count": os.cpu_count(), "torch": torch.__version__, "rows": []}
    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores; best of {args.rounds} rounds")
    for n in counts:
        torch.set_num_threads(n)
        row = {"threads": n}
        for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            row[f"conv_{name}_gflop_s"] = conv_gflops(dtype, args.rounds)
            row[f"matmul_{name}_gflop_s"] = matmul_gflops(dtype, args.rounds)
        for mode in MODES:
            step = training_step(params, mode == "compiled", args.rounds, args.batch, bf16=mode == "eager_bf16")
            row[f"step_{mode}"] = {**step, "fraction_of_conv_fp32": step["gflop_s"] / row["conv_fp32_gflop_s"],
                                   "fraction_of_conv_bf16": step["gflop_s"] / row["conv_bf16_gflop_s"]}
        results["rows"].append(row)
        print(f"\n{n} thread(s)")
        print(f"  ceiling  conv 3x3 fp32 {row['conv_fp32_gflop_s']:7.1f} GFLOP/s   bf16 {row['conv_bf16_gflop_s']:7.1f}")
        print(f"           matmul   fp32 {row['matmul_fp32_gflop_s']:7.1f} GFLOP/s   bf16 "
              f"{row['matmul_bf16_gflop_s']:7.1f}")
        for mode in MODES:
            st = row[f"step_{mode}"]
            print(f"  step {mode:<11}{st['img_s']:7.1f} img/s {st['gflop_s']:7.1f} GFLOP/s = "
                  f"{st['fraction_of_conv_fp32']:.2f} of the fp32 conv ceiling, {st['fraction_of_conv_bf16']:.2f} "
                  f"of the bf16 one (first step {st['first_step_s']:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
