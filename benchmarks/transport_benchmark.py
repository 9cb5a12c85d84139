"""Run the W2 benchmark (Korotin et al. 2021, Mix3 -> Mix10) over several D and print the table.

Usage (from the repository root, one thread):
    python benchmarks/transport_benchmark.py --profile full --dims 2 4 8 16 32 64 128    # the GPU setting
    python benchmarks/transport_benchmark.py --profile small --dims 2 --steps 1000 --pool 65536 --out /tmp/w2
--dims / --steps / --pool / --seeds override the profile (--steps, --pool: every network; a longer
run wants a larger pool of Q samples, each then visited as often as in the default run). Prints, per D, the
wall time, then the Markdown table (L2-UVP mean ± std over the seeds, cosine, the paper's
best and linear figures); with --out, writes each D's metrics JSON and the L2-UVP-vs-D figure.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

from echocem.io import save_figure, save_json
from echocem.params import load_params
from echocem.runtime import configure_threads, resolve_device
from echocem.transport.benchmark import load_pair
from echocem.transport.experiment import NETWORKS, run_dimension
from echocem.transport.figures import uvp_vs_dim_figure
from echocem.transport.table import markdown_table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", choices=["small", "full"], default=None, help="default: params' profile")
    p.add_argument("--dims", type=int, nargs="+", default=None)
    p.add_argument("--steps", type=int, default=None, help="training steps of every network")
    p.add_argument("--pool", type=int, default=None, help="Q samples of every network's conjugate pool")
    p.add_argument("--seeds", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="folder for the metrics JSONs and the figure")
    args = p.parse_args()
    configure_threads(args.threads)
    params = load_params(args.params)
    bench = params["transport_benchmark"]
    profile = args.profile or bench["profile"]
    cfg = copy.deepcopy(bench["profiles"][profile])
    for key, value in (("steps", args.steps), ("pool", args.pool)):
        if value is not None:
            for name in NETWORKS:
                cfg[name][key] = value
    if args.seeds is not None:
        cfg["seeds"] = args.seeds
    dims = args.dims or bench["dims"]
    device = resolve_device(bench["device"])
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    results = []
    for dim in dims:
        start, cpu = time.perf_counter(), time.process_time()
        metrics, _, _ = run_dimension(load_pair(bench["data_dir"], dim), cfg, params["seed"], device,
                                      int(bench["n_eval"]), log)
        metrics = {"profile": profile, "device": device, **metrics}
        results.append(metrics)
        steps = ", ".join(f"{n} {cfg[n]['steps']} (pool {cfg[n]['pool']})" for n in NETWORKS)
        print(f"D={dim}: {time.perf_counter() - start:.0f} s wall, {time.process_time() - cpu:.0f} s CPU "
              f"({device}, {torch.get_num_threads()} thread(s), steps {steps}, {cfg['seeds']} seeds)", flush=True)
        if args.out:
            save_json(Path(args.out) / f"w2_d{dim}.json", metrics)
    print(markdown_table(results))
    if args.out:
        save_figure(Path(args.out) / "uvp_vs_dim.png", uvp_vs_dim_figure(results))


if __name__ == "__main__":
    main()
