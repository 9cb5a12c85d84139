"""Time one forward+backward of the debiased Sinkhorn divergence: geomloss vs POT (torch backend).

Usage: python benchmarks/sinkhorn_backends.py [--sizes 128 256 512] [--blur 0.2] [--dim 2]
The training code (echocem.generative.losses) uses geomloss: on this CPU it was the faster
of the two at every size measured, and its log-domain epsilon-scaling stays stable at small eps.
"""
from __future__ import annotations

import argparse
import time

import ot
import torch
from geomloss import SamplesLoss


def pot_divergence(x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """POT's debiased Sinkhorn divergence for geomloss's problem (cost |x-y|^2/2, epsilon eps).

    POT's `reg` multiplies the entropy against the cost |x-y|^2 ("sqeuclidean"), geomloss's
    epsilon against |x-y|^2/2. Dividing POT's whole objective by 2 gives geomloss's cost, and
    its entropy term then carries reg/2: the same plans need reg = 2 eps, and POT's value is
    halved. (POT reports the transport cost of its plans, without the entropy term that
    geomloss's dual value includes, so the two values agree only to O(eps).)
    """
    return ot.bregman.empirical_sinkhorn_divergence(x, y, reg=2 * eps, metric="sqeuclidean", numIterMax=200,
                                                    method="sinkhorn_log") / 2


def timed(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    p.add_argument("--blur", type=float, default=0.2)
    p.add_argument("--dim", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    geom = SamplesLoss("sinkhorn", p=2, blur=args.blur, scaling=0.7, debias=True, backend="tensorized")
    print(f"{'n':>6} {'geomloss s':>11} {'POT s':>9}  (forward+backward, 1 thread, eps={args.blur**2:g})")
    for n in args.sizes:
        x = torch.randn(n, args.dim, requires_grad=True)
        y = torch.randn(n, args.dim) + 0.5

        def run_geom() -> None:
            geom(x, y).backward()

        def run_pot() -> None:
            pot_divergence(x, y, args.blur**2).backward()

        print(f"{n:>6} {timed(run_geom):>11.4f} {timed(run_pot):>9.4f}")
    print("echocem.generative.losses uses geomloss (tensorized backend).")


if __name__ == "__main__":
    main()
