"""One benchmark dimension end to end: every solver, every seed, scored against T*.

`run_dimension(pair, cfg, seed, device, n_eval)` is a pure function of its inputs (all
randomness derives from `seed`, the dimension and the replicate index) returning the
metrics (a JSON-ready dict), the trained maps (map-file blobs, echocem.transport.maps) and
the figures. Solvers see fresh samples of P and Q only; T* is used for the scores alone.

Per replicate r (its own seed): the linear (Bures) map and the entropic map are fitted on
the same n_fit samples of P and Q (the entropic map on the first entropic.n of them); the
C-MGN, M-MGN and ICNN start from that linear map and train on endless fresh batches of P and
on a pool of Q samples drawn once (each network its own, `pool` points); all are scored on
2^14 (n_eval) fresh samples of P drawn from a separate stream.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from echocem.io import EchoCemError
from echocem.transport import figures, maps
from echocem.transport.benchmark import Samplers, TrueMap, W2Pair
from echocem.transport.entropic import fit_entropic
from echocem.transport.fit_mgn import apply_model, fit_mgn
from echocem.transport.icnn import fit_icnn
from echocem.transport.linear import LinearMap, fit_bures
from echocem.transport.metrics import cosine, diverged, l2_uvp
from echocem.transport.semidual import TrainingDiverged

# Korotin et al. (NeurIPS 2021), Mix3 -> Mix10, forward map, L2-UVP (%): the best solver per D
# (no single solver) and the moment-fitted linear map. D = 128 has no "best" entry in the notes.
PAPER_BEST_UVP = {2: 0.1, 4: 0.3, 8: 0.7, 16: 1.4, 32: 2.8, 64: 3.2, 128: None}
PAPER_LINEAR_UVP = {2: 14.1, 4: 14.9, 8: 27.3, 16: 41.6, 32: 55.3, 64: 63.9, 128: 63.6}
NETWORKS = ("cmgn", "mmgn", "icnn")
METHODS = ("linear", "entropic", *NETWORKS)
OBJECTIVE = ("semi-dual with exact conjugate (damped Newton, warm-started from a pool of Q samples), "
             "fresh batches of P")


def _r(value: float) -> float | None:
    """Six significant digits (stable JSON across BLAS thread counts); NaN -> None."""
    value = float(value)
    return float(f"{value:.6g}") if np.isfinite(value) else None


def _summary(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {"mean": _r(a.mean()), "std": _r(a.std(ddof=1) if len(a) > 1 else 0.0), "n": len(a),
            "per_seed": [_r(v) for v in a]}


def replicate_seeds(seed: int, dim: int, replicate: int) -> dict[str, int]:
    """Independent integer seeds of one replicate: training stream, evaluation stream, init."""
    train, evaluation, init = np.random.SeedSequence([seed, 13, dim, replicate]).generate_state(3)
    return {"train": int(train), "eval": int(evaluation), "init": int(init)}


@dataclass(frozen=True)
class Replicate:
    """The start of one replicate: its training stream, the evaluation points with T* on them, the
    n_fit samples of P and Q and the Bures map fitted on them (every network's starting point)."""

    gen: torch.Generator
    samplers: Samplers
    x_eval: np.ndarray
    t_eval: np.ndarray
    x_fit: np.ndarray
    y_fit: np.ndarray
    linear: LinearMap


def start_replicate(pair: W2Pair, true_map: TrueMap, n_fit: int, seed: int, replicate: int, n_eval: int,
                    dtype: torch.dtype = torch.float32, device: str = "cpu") -> Replicate:
    """Seed replicate `replicate` (torch's global seed for the networks' init, the training stream), draw
    its evaluation points from their own stream and its n_fit samples, fit the Bures map."""
    seeds = replicate_seeds(seed, pair.dim, replicate)
    torch.manual_seed(seeds["init"])
    gen = torch.Generator().manual_seed(seeds["train"])
    samplers = Samplers(pair, gen, dtype, device)
    x_eval = Samplers(pair, torch.Generator().manual_seed(seeds["eval"]), torch.float64).sample_p(n_eval)
    t_eval = true_map(x_eval).numpy()
    x_fit = samplers.sample_p(n_fit).double().cpu().numpy()
    y_fit = samplers.sample_q(n_fit).double().cpu().numpy()
    return Replicate(gen, samplers, x_eval.numpy(), t_eval, x_fit, y_fit, fit_bures(x_fit, y_fit))


def fit_network(name: str, net_cfg: dict, r: Replicate, dtype: torch.dtype = torch.float32, device: str = "cpu",
                log: Callable[[str], None] | None = None) -> tuple[torch.nn.Module, dict]:
    """Train network `name` (one of NETWORKS) of a replicate, from its Bures map, on its training stream."""
    dim = r.x_eval.shape[1]
    if name == "icnn":
        model, config, _ = fit_icnn(dim, net_cfg, r.samplers.sample_p, r.samplers.sample_q, r.linear, dtype, device,
                                    log, generator=r.gen)
    else:
        model, config, _ = fit_mgn(name, dim, net_cfg, r.samplers.sample_p, r.samplers.sample_q, r.linear, r.gen,
                                   dtype, device, log)
    return model, config


def run_dimension(pair: W2Pair, cfg: dict, seed: int, device: str = "cpu", n_eval: int = 16384,
                  log: Callable[[str], None] = lambda _: None) -> tuple[dict, dict, dict]:
    """Train and score every method on one pair; returns (metrics, {map name: blob}, {stem: Figure})."""
    dim, dtype = pair.dim, torch.float32
    check_budgets(cfg)
    true_map = TrueMap(pair)
    scores: dict[str, dict[str, list[float]]] = {m: {"uvp": [], "cos": []} for m in METHODS}
    stopped: dict[str, list[dict]] = {m: [] for m in NETWORKS}
    blobs: dict[str, dict] = {}
    identity_uvp: list[float] = []
    shown: dict = {}
    for rep in range(int(cfg["seeds"])):
        r = start_replicate(pair, true_map, int(cfg["n_fit"]), seed, rep, n_eval, dtype, device)
        x_eval, t_eval, x_fit, y_fit, linear = r.x_eval, r.t_eval, r.x_fit, r.y_fit, r.linear
        identity_uvp.append(l2_uvp(x_eval, t_eval, pair.var_q))
        ent_cfg = cfg["entropic"]
        n_ent = min(int(ent_cfg["n"]), len(x_fit))
        entropic = fit_entropic(x_fit[:n_ent], y_fit[:n_ent], float(ent_cfg["blur"]), float(ent_cfg["scaling"]),
                                dtype, device)
        mapped = {"linear": linear(x_eval), "entropic": entropic(x_eval)}
        meta = {"benchmark": f"w2 mix3_to_mix10 d{dim}", "replicate": rep, "seed": seed}
        blobs[f"linear_seed{rep}"] = maps.linear_blob(linear, {**meta, "n_fit": len(x_fit)})
        blobs[f"entropic_seed{rep}"] = maps.entropic_blob(entropic, {**meta, "n": n_ent,
                                                                     "blur": float(ent_cfg["blur"])})
        for name in NETWORKS:
            start = time.perf_counter()
            try:
                model, config = fit_network(name, cfg[name], r, dtype, device, log)
            except TrainingDiverged as err:
                # stopped early: scored as diverged (no figure), no map file
                log(f"d={dim} seed#{rep} {name}: {err} ({time.perf_counter() - start:.1f} s)")
                stopped[name].append({"seed": rep, "step": err.step, "reason": err.reason})
                mapped[name] = np.full_like(x_eval, np.nan)
                continue
            log(f"d={dim} seed#{rep} {name}: trained in {time.perf_counter() - start:.1f} s")
            mapped[name] = apply_model(model, x_eval)
            budget = {k: cfg[name][k] for k in ("steps", "batch", "lr", "warmup", "pool") if k in cfg[name]}
            blobs[f"{name}_seed{rep}"] = maps.network_blob(name, model, config,
                                                           {**meta, **budget, "objective": OBJECTIVE})
        for name, y in mapped.items():
            scores[name]["uvp"].append(l2_uvp(y, t_eval, pair.var_q))
            scores[name]["cos"].append(cosine(y, t_eval, x_eval))
        log(f"d={dim} seed#{rep}: " + ", ".join(f"{m} {scores[m]['uvp'][-1]:.3g}%" for m in METHODS))
        if rep == 0:
            shown = {"x": x_eval[:1000], "truth": t_eval[:1000], **{m: y[:1000] for m, y in mapped.items()}}

    metrics = build_metrics(pair, cfg, seed, n_eval, scores, identity_uvp, stopped)
    figs = {"uvp_by_method": figures.uvp_bars_figure(metrics), "transported": figures.transported_figure(shown, dim)}
    return metrics, blobs, figs


def check_budgets(cfg: dict) -> None:
    """Settings the schema cannot check alone: a network's pool of Q samples must hold a batch."""
    for name in NETWORKS:
        pool, batch = int(cfg[name].get("pool", 0)), int(cfg[name]["batch"])
        if 0 < pool < batch:
            raise EchoCemError(f"transport_benchmark: {name}.pool ({pool}) is smaller than its batch ({batch})")


def build_metrics(pair: W2Pair, cfg: dict, seed: int, n_eval: int, scores: dict, identity_uvp: list[float],
                  stopped: dict[str, list[dict]] | None = None) -> dict:
    """The metrics of one dimension. `stopped`: per network, the seeds whose training was stopped as
    diverged (seed, step, reason); their scores are NaN, so they count as diverged."""
    dim = pair.dim
    methods = {m: {"uvp": {**_summary(s["uvp"]), "n_diverged": sum(map(diverged, s["uvp"]))},
                   "cos": _summary(s["cos"])} for m, s in scores.items()}
    for m, runs in (stopped or {}).items():
        methods[m]["stopped_diverged"] = runs
    best = PAPER_BEST_UVP[dim]
    mgn_means = {m: methods[m]["uvp"]["mean"] for m in ("cmgn", "mmgn")}
    # an MGN that diverged on a seed is the best only if the other diverged too
    best_mgn = min(mgn_means, key=lambda m: (methods[m]["uvp"]["n_diverged"] > 0,
                                             np.inf if mgn_means[m] is None else mgn_means[m]))
    best_ok = methods[best_mgn]["uvp"]["n_diverged"] == 0
    budgets = {m: {k: cfg[m][k] for k in sorted(cfg[m])} for m in NETWORKS}
    return {
        "benchmark": "Korotin et al. 2021 W2 benchmark, Mix3 -> Mix10",
        "dim": dim,
        "seed": seed,
        "n_seeds": int(cfg["seeds"]),
        "n_eval": n_eval,
        "var_q": _r(pair.var_q),
        "objective": OBJECTIVE,
        "uvp_definition": "100 E|T(x) - T*(x)|^2 / Var(Q), %, fresh samples of P",
        "cos_definition": "<T - id, T* - id>_L2(P) / (|T - id| |T* - id|)",
        "methods": methods,
        "identity_uvp": _r(np.mean(identity_uvp)),
        "paper": {"best_uvp": best, "linear_uvp": PAPER_LINEAR_UVP[dim],
                  "linear_uvp_from_arrays": _r(pair.uvp_linear_reference)},
        "best_mgn": best_mgn,
        "best_mgn_beats_paper_best": None if best is None else bool(best_ok and mgn_means[best_mgn] < best),
        "mgn_vs_linear_uvp_ratio": _r(mgn_means[best_mgn] / methods["linear"]["uvp"]["mean"]) if best_ok else None,
        "budget": {**budgets, "n_fit": cfg["n_fit"],
                   "entropic": {k: cfg["entropic"][k] for k in sorted(cfg["entropic"])},
                   "entropic_epsilon": _r(float(cfg["entropic"]["blur"]) ** 2)},
    }
