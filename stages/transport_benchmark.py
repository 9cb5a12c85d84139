"""Stages transport_d{D}: the W2 benchmark (Korotin et al. 2021, Mix3 -> Mix10) at one dimension.

Trains C-MGN, M-MGN and an ICNN on samples of P and Q, fits the linear (Bures) and entropic
maps, scores all against the known map over several seeds, and writes the metrics (.json),
the trained maps (a folder of map files, one per method and seed: `python -m echocem
transport-map apply FILE IN.npy OUT.npy`) and PNG figures (a folder), each atomically.
"""
from __future__ import annotations

import argparse
import sys
import time

from echocem.io import EchoCemError, atomic_path, save_figure, save_json
from echocem.runtime import resolve_device, stage_main, start_stage


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--dim", type=int, required=True, help="dimension D: 2, 4, 8, 16, 32, 64 or 128")
    p.add_argument("--metrics", required=True, help="output: metrics (.json)")
    p.add_argument("--models", required=True, help="output: folder of trained map files (.pt)")
    p.add_argument("--figures", required=True, help="output: folder of PNG figures")
    return p.parse_args()


@stage_main
def main() -> None:
    args = parse_args()
    import torch  # noqa: F401  (imported before seeding so torch's generator is seeded too)

    from echocem.transport.benchmark import DIMS, load_pair
    from echocem.transport.experiment import run_dimension
    from echocem.transport.maps import save_map

    if args.dim not in DIMS:
        raise EchoCemError(f"--dim {args.dim}: expected one of {', '.join(map(str, DIMS))}")
    params = start_stage(args.params, f"transport_d{args.dim}")
    bench = params["transport_benchmark"]
    cfg = bench["profiles"][bench["profile"]]
    device = resolve_device(bench["device"])
    pair = load_pair(bench["data_dir"], args.dim)

    start, cpu = time.perf_counter(), time.process_time()
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    metrics, blobs, figures = run_dimension(pair, cfg, params["seed"], device, int(bench["n_eval"]), log)
    metrics = {"profile": bench["profile"], "device": device, **metrics}
    with atomic_path(args.models, is_dir=True) as folder:
        folder.mkdir(parents=True, exist_ok=True)
        for name, blob in sorted(blobs.items()):
            save_map(folder / f"{name}.pt", blob)
    with atomic_path(args.figures, is_dir=True) as folder:
        folder.mkdir(parents=True, exist_ok=True)
        for stem, fig in sorted(figures.items()):
            save_figure(folder / f"{stem}.png", fig)
    save_json(args.metrics, metrics)
    summary = ", ".join(f"{m} {s['uvp']['mean']:.3g}±{s['uvp']['std']:.2g}%" for m, s in metrics["methods"].items())
    print(f"transport_d{args.dim} ({metrics['n_seeds']} seeds, {time.perf_counter() - start:.0f} s wall, "
          f"{time.process_time() - cpu:.0f} s CPU): {summary}")


if __name__ == "__main__":
    main()
