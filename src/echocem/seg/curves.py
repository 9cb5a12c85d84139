"""Training curves: written with dvclive (so `dvc plots` and `dvc exp show` read them
as DVC users expect) and drawn as one PNG beside them."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

# history column -> dvclive metric name (plots/metrics/<name>.tsv, x column `step` = epoch)
METRICS = {
    "train_loss": "train/loss",
    "lr": "train/lr",
    "val_iou": "val/iou",
    "val_iou_class1": "val/iou_class1",
    "val_iou_class2": "val/iou_class2",
}


def write_curves(folder: str | Path, history: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> None:
    """dvclive files of a finished training run: one step per epoch (epoch 0, the untrained
    network, where it was scored), and `summary` (e.g. the selected epoch) in metrics.json.

    Written from the whole history at the end (not live), so a resumed run writes
    exactly what an uninterrupted one does; the caller writes `folder` atomically.
    """
    from dvclive import Live

    with Live(str(folder), save_dvc_exp=False, dvcyaml=None, report=None) as live:
        for row in history:
            live.step = int(row["epoch"])
            for column, name in METRICS.items():
                if row.get(column) is not None:
                    live.log_metric(name, float(row[column]))
        for key, value in summary.items():
            live.summary[key] = value


def save_curves(folder: str | Path, history: Sequence[Mapping[str, Any]], summary: Mapping[str, Any],
                title: str | None = None) -> None:
    """The curves folder of a training stage, written atomically: dvclive's files and, with a
    `title`, the PNG of `curves_figure` (the summary's best_epoch marked)."""
    from echocem.io import atomic_path, save_figure

    with atomic_path(folder, is_dir=True) as tmp:
        write_curves(tmp, history, summary)
        if title is not None:
            save_figure(tmp / "curves.png", curves_figure(history, title, int(summary.get("best_epoch", 0))))


def curves_figure(history: Sequence[Mapping[str, Any]], title: str, best_epoch: int):
    """Loss and validation IoU against epochs, the selected epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(10, 3.6))
    rows = [r for r in history if r["train_loss"] is not None]
    scored = [r for r in history if r["val_iou"] is not None]
    ax_loss.plot([r["epoch"] for r in rows], [r["train_loss"] for r in rows], label="focal + Dice")
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss")
    ax_loss.legend()
    epochs = [r["epoch"] for r in scored]
    for key, label in (("val_iou", "IoU (mean of classes 1, 2)"), ("val_iou_class1", "IoU class 1 (TIE)"),
                       ("val_iou_class2", "IoU class 2 (casing)")):
        ax_iou.plot(epochs, [r[key] for r in scored], label=label)
    ax_iou.axvline(best_epoch, color="grey", linestyle="--", label=f"selected (epoch {best_epoch})")
    ax_iou.set(title="validation wells", xlabel="epoch", ylabel="challenge IoU", ylim=(0, 1))
    ax_iou.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
