"""Train one network of the W2 benchmark at one D, alone, with its settings overridden: what limits it?

Usage (from the repository root, one thread):
    python benchmarks/transport_one_network.py --dim 2 --network cmgn --set steps=4000 pool=262144
    python benchmarks/transport_one_network.py --dim 32 --network mmgn --seeds 0 1 2 --set steps=2000 pool=131072

Each seed starts as a replicate of `benchmarks/transport_benchmark.py` does (same seed derivation, the
Bures map fitted on n_fit samples as the start, 2^14 fresh evaluation samples of P), but only the named
network trains, so its training stream differs from the full benchmark's (there the networks share one
stream, one after the other) and its figures are seeds of their own. --set overrides the network's
entries of the params profile (steps, pool, batch, width, lr, newton_iter, newton_tol, ...).
Prints one JSON line per seed (L2-UVP %, cosine, training seconds), then the mean ± std.
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np

from echocem.params import load_params
from echocem.runtime import configure_threads
from echocem.transport.benchmark import TrueMap, load_pair
from echocem.transport.experiment import NETWORKS, fit_network, start_replicate
from echocem.transport.fit_mgn import apply_model
from echocem.transport.metrics import cosine, l2_uvp
from echocem.transport.semidual import TrainingDiverged


def parse_overrides(pairs: list[str], cfg: dict) -> dict:
    """KEY=VALUE strings onto a copy of a network's settings, each value cast to the type it replaces."""
    out = copy.deepcopy(cfg)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in out:
            raise SystemExit(f"--set {pair!r}: expected KEY=VALUE with KEY one of {sorted(out)}")
        out[key] = type(out[key])(float(value)) if isinstance(out[key], (int, float)) else value
    return out


def train_one(pair, network: str, cfg: dict, n_fit: int, seed: int, replicate: int, n_eval: int) -> dict:
    r = start_replicate(pair, TrueMap(pair), n_fit, seed, replicate, n_eval)
    t0 = time.perf_counter()
    try:
        model, _ = fit_network(network, cfg, r)
    except TrainingDiverged as err:  # scored as diverged (NaN), like the stage does
        return {"dim": pair.dim, "network": network, "replicate": replicate, "uvp": float("nan"),
                "cos": float("nan"), "train_seconds": round(time.perf_counter() - t0, 1), "settings": cfg,
                "stopped": str(err)}
    seconds = time.perf_counter() - t0
    mapped = apply_model(model, r.x_eval)
    return {"dim": pair.dim, "network": network, "replicate": replicate, "uvp": l2_uvp(mapped, r.t_eval, pair.var_q),
            "cos": cosine(mapped, r.t_eval, r.x_eval), "train_seconds": round(seconds, 1), "settings": cfg}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--profile", choices=["small", "full"], default="small")
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--network", choices=NETWORKS, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="replicate indices")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    configure_threads(args.threads)
    params = load_params(args.params)
    bench = params["transport_benchmark"]
    profile = bench["profiles"][args.profile]
    cfg = parse_overrides(args.set, profile[args.network])
    pair = load_pair(bench["data_dir"], args.dim)
    uvps = []
    for rep in args.seeds:
        row = train_one(pair, args.network, cfg, int(profile["n_fit"]), int(params["seed"]), rep, int(bench["n_eval"]))
        uvps.append(row["uvp"])
        print(json.dumps(row), flush=True)
    a = np.asarray(uvps)
    print(f"D={args.dim} {args.network}: L2-UVP {a.mean():.3f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.3f} % "
          f"over {len(a)} seed(s)")


if __name__ == "__main__":
    main()
