"""The figures the report draws itself, as PNG bytes (no pyplot state, no time stamps)."""
from __future__ import annotations

import io
import math
from typing import Any, Mapping, Sequence

from matplotlib.figure import Figure

from echocem.report.load import CurveTable

_PNG_META = {"Software": None}


def png_bytes(fig: Figure, dpi: int = 100, close: bool = False) -> bytes:
    """Render a matplotlib Figure to PNG bytes; the same figure always gives the same bytes.
    `close`: the figure came from pyplot (a library's plotting function): release it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata=_PNG_META)
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return buf.getvalue()


def _label(column: str) -> str:
    return column.replace("_", " ")


def curve_figure(curve: CurveTable) -> bytes:
    """One training-curve table: every series against its x column.

    IoU-like series (values within [0, 1]) share one axis; a loss on another
    scale gets a log axis when it spans more than a decade.
    """
    fig = Figure(figsize=(6.4, 3.4))
    ax = fig.subplots()
    for name, values in curve.series.items():
        points = [(x, y) for x, y in zip(curve.x, values) if not (math.isnan(x) or math.isnan(y))]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=2.5, label=_label(name))
    finite = [y for values in curve.series.values() for y in values if not math.isnan(y)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 10 and max(finite) > 1:
        ax.set_yscale("log")
    ax.set(title=_label(curve.name), xlabel=_label(curve.x_label),
           ylabel=_label(next(iter(curve.series))) if len(curve.series) == 1 else "value")
    ax.grid(alpha=0.3)
    if curve.series:
        ax.legend(fontsize=8)
    return png_bytes(fig)


def runtime_figure(benchmarks: Mapping[str, Mapping[str, Any]], order: Sequence[str]) -> bytes:
    """Horizontal bars: wall-clock seconds of each stage, in pipeline order."""
    names = [s for s in order if s in benchmarks]
    secs = [float(benchmarks[s]["s"]) for s in names]
    fig = Figure(figsize=(6.4, 0.35 * len(names) + 1.2))
    ax = fig.subplots()
    ax.barh(range(len(names)), secs, color="#3b6ea5")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    for k, s in enumerate(secs):
        ax.text(s, k, f" {s:.1f} s", va="center", fontsize=8)
    ax.set(title="wall-clock time per stage (Snakemake benchmarks)", xlabel="seconds")
    ax.set_xlim(0, max(secs + [1.0]) * 1.2)
    return png_bytes(fig)
