"""Draw the pipeline DAG (from dvc.yaml, the one declaration) to docs/dag.png.

    .venv/bin/python scripts/draw_dag.py [--out docs/dag.png]

Layered layout: a stage sits one layer below its deepest upstream stage.
"""
from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from echocem.dag import edges, load_pipeline  # noqa: E402
from echocem.io import save_figure  # noqa: E402


def layers(names: list[str], graph: set[tuple[str, str]]) -> dict[str, int]:
    depth = {n: 0 for n in names}
    for _ in names:  # longest-path layering; the DAG is small
        for up, down in graph:
            depth[down] = max(depth[down], depth[up] + 1)
    return depth


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="docs/dag.png")
    args = parser.parse_args()
    stages = load_pipeline(".")
    graph = edges(stages)
    depth = layers(list(stages), graph)
    rows: dict[int, list[str]] = {}
    for name in stages:
        rows.setdefault(depth[name], []).append(name)
    pos = {}
    for d, members in rows.items():
        for i, name in enumerate(members):
            pos[name] = (i - (len(members) - 1) / 2, -d)
    width = max(len(m) for m in rows.values())
    fig, ax = plt.subplots(figsize=(2.1 * width + 1, 1.1 * len(rows) + 1))
    for up, down in sorted(graph):
        (x0, y0), (x1, y1) = pos[up], pos[down]
        ax.annotate("", xy=(x1, y1 + 0.18), xytext=(x0, y0 - 0.18),
                    arrowprops=dict(arrowstyle="->", color="#777", lw=1.2))
    for name, (x, y) in pos.items():
        color = "#cfe3f7" if name.startswith("gen_") else "#d9f0d3" if name in ("report", "submission") else "#fde8c8"
        ax.text(x, y, name, ha="center", va="center", fontsize=10,
                bbox=dict(boxstyle="round,pad=0.4", fc=color, ec="#555"))
    ax.set_xlim(-width / 2 - 0.2, width / 2 + 0.2)
    ax.set_ylim(-len(rows) + 0.4, 0.6)
    ax.axis("off")
    ax.set_title("Pipeline stages (dvc.yaml); arrows: output -> input", fontsize=11)
    save_figure(args.out, fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
