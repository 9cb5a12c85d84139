"""Figures of the generative tasks (matplotlib, Agg): each returns a Figure."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {"identity": "identity", "linear": "linear (Bures) map", "pot_mapping": "POT MappingTransport",
          "cmgn": "C-MGN", "mmgn": "M-MGN"}


def gradient_figure(grid: np.ndarray, g_true: np.ndarray, preds: dict, side: int):
    """True gradient field, and each model's absolute error map."""
    fig, axes = plt.subplots(1, 1 + len(preds), figsize=(4.6 * (1 + len(preds)), 4.2))
    step = max(side // 16, 1)
    sel = np.arange(len(grid)).reshape(side, side)[::step, ::step].ravel()
    axes[0].quiver(grid[sel, 0], grid[sel, 1], g_true[sel, 0], g_true[sel, 1], color="k", label="true grad f")
    for name, p in preds.items():
        axes[0].quiver(grid[sel, 0], grid[sel, 1], p[sel, 0], p[sel, 1], color="tab:red", alpha=0.5,
                       label=f"{LABELS[name]} (first)" if False else None)
    axes[0].set(title="gradient field: true (black), learned (red)", xlabel="x1", ylabel="x2")
    for ax, (name, p) in zip(axes[1:], preds.items()):
        err = np.abs(p - g_true).sum(1).reshape(side, side)
        im = ax.imshow(err, origin="lower", extent=(0, 1, 0, 1), cmap="viridis")
        ax.set(title=f"{LABELS[name]}: |error| (L1), MAE {np.abs(p - g_true).mean():.2e}", xlabel="x1", ylabel="x2")
        fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def uvp_figure(dims: list, table: dict):
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, values in table.items():
        ax.plot(dims, values, marker="o", label=LABELS.get(name, name))
    ax.axhline(1.0, color="grey", ls="--", label="1 % target")
    ax.set(xscale="log", yscale="log", xlabel="dimension d", ylabel="L2-UVP (%)",
           title="Gaussian -> Gaussian: L2-UVP vs the closed-form map")
    ax.set_xticks(dims, [str(d) for d in dims])
    ax.legend(fontsize=8)
    return fig


def transport_figure(x: np.ndarray, y: np.ndarray, mapped: dict, title: str):
    """Source, target and transported samples, with arrows x -> T(x) for a subset."""
    fig, axes = plt.subplots(1, len(mapped), figsize=(5 * len(mapped), 4.6), squeeze=False)
    for ax, (name, t) in zip(axes[0], mapped.items()):
        ax.scatter(*y.T, s=5, c="tab:grey", alpha=0.5, label="target samples")
        ax.scatter(*x.T, s=5, c="tab:blue", alpha=0.5, label="source samples")
        ax.scatter(*t.T, s=5, c="tab:red", alpha=0.6, label="transported T(x)")
        k = slice(0, 60)
        ax.quiver(x[k, 0], x[k, 1], t[k, 0] - x[k, 0], t[k, 1] - x[k, 1], angles="xy", scale_units="xy",
                  scale=1, width=0.003, alpha=0.6)
        ax.set(title=f"{title}: {LABELS.get(name, name)}", xlabel="x1", ylabel="x2")
        ax.legend(fontsize=7, markerscale=2)
    return fig


def samples_figure(mapped: dict, target: np.ndarray, title: str):
    fig, axes = plt.subplots(1, len(mapped), figsize=(3.8 * len(mapped), 3.8), sharex=True, sharey=True)
    for ax, (name, t) in zip(np.atleast_1d(axes), mapped.items()):
        ax.scatter(*target.T, s=4, c="tab:grey", alpha=0.5, label="held-out target")
        ax.scatter(*t.T, s=4, c="tab:red", alpha=0.5, label="transported")
        ax.set(title=LABELS.get(name, name), xlabel="y1", ylabel="y2")
        ax.legend(fontsize=7, markerscale=2, loc="lower right")
    fig.suptitle(title)
    return fig


def grid_figure(models: dict, ctx, target: np.ndarray):
    """Image of a square grid of the source domain under each learned map."""
    fig, axes = plt.subplots(1, len(models), figsize=(4.6 * len(models), 4.4), squeeze=False)
    u = np.linspace(-2.5, 2.5, 15)
    v = np.linspace(-2.5, 2.5, 200)
    for ax, (name, model) in zip(axes[0], models.items()):
        ax.scatter(*target.T, s=4, c="tab:grey", alpha=0.35, label="held-out target")
        for c in u:
            for line in (np.c_[np.full_like(v, c), v], np.c_[v, np.full_like(v, c)]):
                w = ctx.apply(model, line)
                ax.plot(w[:, 0], w[:, 1], color="tab:blue", lw=0.7)
        ax.set(title=f"{LABELS[name]}: image of the grid [-2.5, 2.5]^2", xlabel="y1", ylabel="y2")
        ax.legend(fontsize=7, loc="lower right")
    return fig


def digits_figure(rows: dict, n: int = 12):
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.05))
    for r, (name, imgs) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.clip(imgs[c], 0, 1).reshape(8, 8), cmap="gray_r", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
        axes[r, 0].set_ylabel(LABELS.get(name, name), rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("N(0, I_64) -> 8x8 digits: held-out digits and generated samples")
    return fig


def color_figure(images: dict):
    fig, axes = plt.subplots(1, len(images), figsize=(3.6 * len(images), 3.2))
    for ax, (name, img) in zip(axes, images.items()):
        ax.imshow(img)
        ax.set_title(LABELS.get(name, name) if name in LABELS else name)
        ax.axis("off")
    fig.suptitle("Colour transfer: source photo recoloured with the target photo's colours")
    return fig
