"""The five generative tasks. Each is a pure function
(cfg, common, seed, device) -> (metrics: flat dict, figures: {file stem: Figure}).

cfg is the task's settings for the chosen profile; common holds dtype, blur, scaling and
the architectures. Metrics put the MGNs and the baselines side by side, state the loss and
epsilon (= blur^2, cost |x-y|^2/2), and hold no timings (outputs stay byte-identical).
"""
from __future__ import annotations

import sys
import time
from typing import Callable

import numpy as np
import torch

from echocem.generative import data, plots
from echocem.generative.gaussians import (bures_map_matrix, fit_linear_map, l2_uvp, random_covariance,
                                          w2_gaussian)
from echocem.generative.losses import gaussian_logpdf, sinkhorn_divergence
from echocem.generative.mgn import build_model
from echocem.generative.train import train_likelihood, train_regression, train_sinkhorn

Result = tuple[dict, dict]
FLOOR_DRAWS = 5  # independent target samples behind the banana noise floor (mean +- std)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _r(value: float) -> float:
    """Six significant digits: stable JSON across BLAS thread counts."""
    return float(f"{float(value):.6g}")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class _Ctx:
    """Device, dtype and seeded generators shared by one task run."""

    def __init__(self, common: dict, seed: int, device: str, task_offset: int) -> None:
        self.device, self.dtype = device, DTYPES[common["dtype"]]
        self.blur, self.scaling = float(common["blur"]), float(common["scaling"])
        self.train_blur = float(common["train_blur"])
        self.archs = list(common["archs"])
        self.rng = np.random.default_rng([seed, task_offset])
        self.gen = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        torch.manual_seed(int(self.rng.integers(2**31)))

    def t(self, a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    def model(self, arch: str, dim: int, cfg: dict) -> torch.nn.Module:
        return build_model(arch, dim, cfg["width"], cfg["depth"]).to(self.device, self.dtype)

    def apply(self, model: torch.nn.Module, x: np.ndarray, chunk: int = 65536) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([model(self.t(x[i:i + chunk])).double().cpu().numpy()
                                   for i in range(0, len(x), chunk)])

    def sinkhorn(self, x: np.ndarray, y: np.ndarray) -> float:
        with torch.no_grad():
            xt = torch.as_tensor(x, dtype=torch.float64, device=self.device)
            yt = torch.as_tensor(y, dtype=torch.float64, device=self.device)
            return _r(sinkhorn_divergence(xt, yt, self.blur, 0.8))

    def sinkhorn_fields(self) -> dict:
        return {"loss": "debiased_sinkhorn_divergence", "train_blur": self.train_blur,
                "train_epsilon": _r(self.train_blur**2), "blur": self.blur, "epsilon": _r(self.blur**2),
                "cost": "squared_euclidean_over_2", "eval_loss": "debiased_sinkhorn_divergence"}


def _timed(label: str, fn: Callable[[], object]) -> object:
    start = time.perf_counter()
    out = fn()
    _log(f"{label}: {time.perf_counter() - start:.1f} s")
    return out


def _pot_mapping(xs: np.ndarray, xt: np.ndarray, n: int, rng: np.random.Generator) -> Callable:
    """POT's joint OT + kernel-map estimator (Perrot et al. 2016) on n source/target points.

    Points are drawn without repeats (quantised pixel colours repeat, and a repeated
    row makes the estimator's kernel system singular); the Gaussian kernel width is
    the median distance between the source points, so it follows the data's scale.
    """
    import ot

    xs_u, xt_u = np.unique(np.asarray(xs, dtype=np.float64), axis=0), np.unique(np.asarray(xt, dtype=np.float64), axis=0)
    a = xs_u[np.sort(rng.choice(len(xs_u), min(n, len(xs_u)), replace=False))]
    b = xt_u[np.sort(rng.choice(len(xt_u), min(n, len(xt_u)), replace=False))]
    dist = np.sqrt(((a[:, None, :] - a[None, :, :]) ** 2).sum(-1))
    sigma = float(np.median(dist[np.triu_indices(len(a), 1)]))
    mapping = ot.da.MappingTransport(kernel="gaussian", mu=1.0, eta=1e-3, sigma=sigma, bias=True,
                                     max_iter=10, max_inner_iter=10)
    mapping.fit(Xs=a, Xt=b)
    def apply(z: np.ndarray, chunk: int = 20000) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        return np.concatenate([np.asarray(mapping.transform(Xs=z[k:k + chunk])) for k in range(0, len(z), chunk)])

    return apply


def gradient_task(cfg: dict, common: dict, seed: int, device: str) -> Result:
    """Fit T ~ grad f for a known convex f on [0, 1]^2; MAE on a held-out grid."""
    ctx = _Ctx(common, seed, device, 1)
    x = ctx.rng.uniform(0, 1, (cfg["n_train"], 2))
    _, g = data.convex_test_function(x)
    side = cfg["test_grid"]
    u = np.linspace(0, 1, side)
    grid = np.stack(np.meshgrid(u, u, indexing="xy"), -1).reshape(-1, 2)
    _, g_true = data.convex_test_function(grid)
    metrics: dict = {"loss": "mse_on_gradient", "n_train": cfg["n_train"], "n_test": len(grid),
                     "mae_identity": _r(np.abs(grid - g_true).mean())}
    lin = np.linalg.lstsq(np.c_[x, np.ones(len(x))], g, rcond=None)[0]
    metrics["mae_affine_lstsq"] = _r(np.abs(np.c_[grid, np.ones(len(grid))] @ lin - g_true).mean())
    preds = {}
    for arch in ctx.archs:
        model = ctx.model(arch, 2, cfg)
        _timed(f"gradient/{arch}", lambda: train_regression(model, ctx.t(x), ctx.t(g), cfg["steps"], cfg["lr"],
                                                            cfg["lbfgs_steps"], desc=f"gradient {arch}"))
        preds[arch] = ctx.apply(model, grid)
        metrics[f"mae_{arch}"] = _r(np.abs(preds[arch] - g_true).mean())
    return metrics, {"gradient_field": plots.gradient_figure(grid, g_true, preds, side)}


def gaussian_task(cfg: dict, common: dict, seed: int, device: str) -> Result:
    """N(m1, S1) -> N(m2, S2), random covariances, trained with the likelihood loss;
    L2-UVP against the closed-form map and |W2_est - W2_true|, per dimension."""
    ctx = _Ctx(common, seed, device, 2)
    metrics: dict = {"loss": "likelihood_monge_ampere", "n_eval": cfg["n_eval"]}
    table: dict = {}
    scatter = None
    for d in cfg["dims"]:
        m1, m2 = ctx.rng.normal(size=d), ctx.rng.normal(size=d)
        S1, S2 = random_covariance(d, ctx.rng), random_covariance(d, ctx.rng)
        A = bures_map_matrix(S1, S2)
        L1 = np.linalg.cholesky(S1)
        x_eval = m1 + ctx.rng.standard_normal((cfg["n_eval"], d)) @ L1.T
        t_true = m2 + (x_eval - m1) @ A
        var_t, w2_true = float(np.trace(S2)), w2_gaussian(m1, S1, m2, S2)
        L1t, m1t = ctx.t(L1), ctx.t(m1)

        def source(n: int) -> torch.Tensor:
            z = torch.randn(n, d, generator=ctx.gen, dtype=torch.float64).to(ctx.device, ctx.dtype)
            return m1t + z @ L1t.T

        x_fit = m1 + ctx.rng.standard_normal((cfg["n_eval"], d)) @ L1.T
        y_fit = m2 + ctx.rng.standard_normal((cfg["n_eval"], d)) @ np.linalg.cholesky(S2).T
        maps = {"identity": x_eval, "linear": fit_linear_map(x_fit, y_fit)(x_eval)}
        logq = gaussian_logpdf(ctx.t(m2), ctx.t(S2))
        for arch in ctx.archs:
            model = ctx.model(arch, d, cfg)
            _timed(f"gaussian/d={d}/{arch}", lambda: train_likelihood(
                model, source, logq, cfg["steps"], cfg["batch"], cfg["lr"], desc=f"gaussian d={d} {arch}"))
            maps[arch] = ctx.apply(model, x_eval)
        w2_true_r = _r(w2_true)
        metrics[f"d{d}_w2_true"] = w2_true_r
        for name, y in maps.items():
            uvp = l2_uvp(y, t_true, var_t)
            w2_est = float(np.sqrt(np.mean(np.sum((y - x_eval) ** 2, 1))))
            metrics[f"d{d}_uvp_pct_{name}"] = _r(uvp)
            metrics[f"d{d}_w2_abs_err_{name}"] = _r(abs(w2_est - w2_true))
            table.setdefault(name, []).append(uvp)
        if d == 2:
            scatter = (x_eval[:400], y_fit[:400], {a: maps[a][:400] for a in ctx.archs})
    figures = {"uvp_by_dimension": plots.uvp_figure(cfg["dims"], table)}
    if scatter is not None:
        figures["map_2d"] = plots.transport_figure(*scatter, title="Gaussian -> Gaussian (d = 2)")
    return metrics, figures


def banana_task(cfg: dict, common: dict, seed: int, device: str) -> Result:
    """N(0, I) -> banana in 2-D, Sinkhorn loss; Sinkhorn divergence to held-out targets."""
    ctx = _Ctx(common, seed, device, 3)
    target = data.banana(cfg["n_train"], ctx.rng)
    held_out = data.banana(cfg["n_eval"], ctx.rng)
    x_eval = ctx.rng.standard_normal((cfg["n_eval"], 2))
    x_fit = ctx.rng.standard_normal((cfg["n_train"], 2))
    metrics: dict = {**ctx.sinkhorn_fields(), "n_eval": cfg["n_eval"], "n_train_target": cfg["n_train"]}
    maps = {"identity": x_eval, "linear": fit_linear_map(x_fit, target)(x_eval),
            "pot_mapping": _pot_mapping(x_fit, target, cfg["pot_n"], ctx.rng)(x_eval)}
    models = {}
    for arch in ctx.archs:
        models[arch] = model = ctx.model(arch, 2, cfg)
        source = lambda n: torch.randn(n, 2, generator=ctx.gen, dtype=torch.float64).to(ctx.device, ctx.dtype)
        _timed(f"banana/{arch}", lambda: train_sinkhorn(model, source, ctx.t(target), cfg["steps"], cfg["batch"],
                                                        cfg["lr"], ctx.train_blur, ctx.scaling, ctx.gen, f"banana {arch}"))
        maps[arch] = ctx.apply(model, x_eval)
    for name, y in maps.items():
        metrics[f"sinkhorn_{name}"] = ctx.sinkhorn(y, held_out)
    # The noise floor: the divergence between two independent banana samples of n_eval points.
    # One draw varies several-fold (0.009 to 0.072 seen), so it is a mean +- std over draws.
    floor = [ctx.sinkhorn(data.banana(cfg["n_eval"], ctx.rng), held_out) for _ in range(FLOOR_DRAWS)]
    metrics["sinkhorn_target_vs_target"] = _r(np.mean(floor))
    metrics["sinkhorn_target_vs_target_std"] = _r(np.std(floor, ddof=1))
    metrics["sinkhorn_target_vs_target_draws"] = FLOOR_DRAWS
    shown = {k: v[:600] for k, v in maps.items()}
    figures = {"samples": plots.samples_figure(shown, held_out[:600], "Gaussian -> banana: transported samples"),
               "warped_grid": plots.grid_figure({a: models[a] for a in ctx.archs}, ctx, held_out[:600])}
    return metrics, figures


def digits_task(cfg: dict, common: dict, seed: int, device: str) -> Result:
    """N(0, I_64) -> scikit-learn 8x8 digits, Sinkhorn loss; divergence to held-out digits."""
    ctx = _Ctx(common, seed, device, 4)
    X = data.digits()
    perm = ctx.rng.permutation(len(X))
    held_out, train = X[perm[:cfg["n_eval"]]], X[perm[cfg["n_eval"]:]]
    x_eval = ctx.rng.standard_normal((cfg["n_eval"], 64))
    x_fit = ctx.rng.standard_normal((len(train), 64))
    metrics: dict = {**ctx.sinkhorn_fields(), "n_eval": len(held_out), "n_train": len(train)}
    maps = {"identity": x_eval, "linear": fit_linear_map(x_fit, train, reg=1e-3)(x_eval),
            "pot_mapping": _pot_mapping(x_fit, train, cfg["pot_n"], ctx.rng)(x_eval)}
    for arch in ctx.archs:
        model = ctx.model(arch, 64, cfg)
        source = lambda n: torch.randn(n, 64, generator=ctx.gen, dtype=torch.float64).to(ctx.device, ctx.dtype)
        _timed(f"digits/{arch}", lambda: train_sinkhorn(model, source, ctx.t(train), cfg["steps"], cfg["batch"],
                                                        cfg["lr"], ctx.train_blur, ctx.scaling, ctx.gen, f"digits {arch}"))
        maps[arch] = ctx.apply(model, x_eval)
    for name, y in maps.items():
        metrics[f"sinkhorn_{name}"] = ctx.sinkhorn(y, held_out)
    metrics["sinkhorn_train_vs_held_out"] = ctx.sinkhorn(train[:cfg["n_eval"]], held_out)
    rows = {"held-out digits": held_out, **{k: maps[k] for k in ("linear", "pot_mapping", *ctx.archs)}}
    return metrics, {"generated_digits": plots.digits_figure(rows, n=12)}


def color_task(cfg: dict, common: dict, seed: int, device: str) -> Result:
    """Colour transfer between two scikit-image photos: map source pixel colours onto the
    target photo's colour distribution (Sinkhorn loss in RGB)."""
    ctx = _Ctx(common, seed, device, 5)
    src_img, tgt_img = data.photo_pixels(cfg["source_image"]), data.photo_pixels(cfg["target_image"])
    src, tgt = src_img.reshape(-1, 3), tgt_img.reshape(-1, 3)
    pick = lambda a, n: a[ctx.rng.choice(len(a), min(n, len(a)), replace=False)]
    tgt_train, tgt_eval = pick(tgt, cfg["n_train"]), pick(tgt, cfg["n_eval"])
    src_train, src_eval = pick(src, cfg["n_train"]), pick(src, cfg["n_eval"])
    metrics: dict = {**ctx.sinkhorn_fields(), "n_eval": len(src_eval), "source_image": cfg["source_image"],
                     "target_image": cfg["target_image"]}
    maps = {"identity": lambda z: z, "linear": fit_linear_map(src_train, tgt_train),
            "pot_mapping": _pot_mapping(src_train, tgt_train, cfg["pot_n"], ctx.rng)}
    src_t = ctx.t(src_train)
    for arch in ctx.archs:
        model = ctx.model(arch, 3, cfg)
        source = lambda n: src_t[torch.randint(len(src_t), (n,), generator=ctx.gen).to(ctx.device)]
        _timed(f"color/{arch}", lambda: train_sinkhorn(model, source, ctx.t(tgt_train), cfg["steps"], cfg["batch"],
                                                       cfg["lr"], ctx.train_blur, ctx.scaling, ctx.gen, f"color {arch}"))
        maps[arch] = lambda z, m=model: ctx.apply(m, z)
    images = {"source": src_img, "target": tgt_img}
    for name, fn in maps.items():
        metrics[f"sinkhorn_{name}"] = ctx.sinkhorn(np.clip(fn(src_eval), 0, 1), tgt_eval)
        if name != "identity":
            images[f"{name}"] = np.clip(fn(src), 0, 1).reshape(src_img.shape)
    return metrics, {"transfer": plots.color_figure(images)}


TASKS: dict[str, Callable[[dict, dict, int, str], Result]] = {
    "gradient": gradient_task, "gaussian": gaussian_task, "banana": banana_task,
    "digits": digits_task, "color": color_task,
}
