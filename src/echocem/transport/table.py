"""The benchmark table: one row per (D, method), the paper's figures beside.

Input: the metrics dicts of the transport_d{D} stages (read from their JSONs). `benchmark_table`
is numeric (for tests and plots); `formatted_table` is the one the report shows
("mean ± std" strings, one row per D, one column per method).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from echocem.io import EchoCemError
from echocem.transport.figures import LABELS
from echocem.transport.metrics import diverged_seeds


def benchmark_table(all_metrics: Sequence[Mapping]) -> pd.DataFrame:
    """Long table: D, method, uvp_mean, uvp_std, cos_mean, cos_std, n_seeds, n_diverged, paper_best, paper_linear.

    n_diverged: the seeds whose map scored above echocem.transport.metrics.DIVERGED_UVP (worse than the
    constant map); recomputed from per_seed where a metrics file predates the count."""
    rows = []
    for metrics in all_metrics:
        try:
            for method in (m for m in LABELS if m in metrics["methods"]):
                score = metrics["methods"][method]
                rows.append({"D": int(metrics["dim"]), "method": method,
                             "uvp_mean": score["uvp"]["mean"], "uvp_std": score["uvp"]["std"],
                             "cos_mean": score["cos"]["mean"], "cos_std": score["cos"]["std"],
                             "n_seeds": int(score["uvp"]["n"]),
                             "n_diverged": diverged_seeds(score["uvp"]),
                             "paper_best": metrics["paper"]["best_uvp"], "paper_linear": metrics["paper"]["linear_uvp"]})
        except (KeyError, TypeError) as exc:
            raise EchoCemError(f"transport benchmark metrics (D={metrics.get('dim')!r}): missing key {exc}") from exc
    if not rows:
        raise EchoCemError("transport benchmark: no metrics to tabulate")
    order = {m: i for i, m in enumerate(LABELS)}  # baselines first, then the networks
    df = pd.DataFrame(rows)
    return df.sort_values(["D", "method"], key=lambda c: c.map(order) if c.name == "method" else c,
                          kind="stable").reset_index(drop=True)


def _pm(mean, std, digits: int) -> str:
    if mean is None or pd.isna(mean):
        return "—"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def formatted_table(all_metrics: Sequence[Mapping]) -> pd.DataFrame:
    """One row per D: each method's 'L2-UVP mean ± std (cos mean)' and the paper's best / linear.

    A method that diverged on any seed shows 'diverged on k of n seeds' instead: a mean over a
    run-away seed says nothing (the per-seed figures stay in the metrics JSON)."""
    long = benchmark_table(all_metrics)
    out = []
    for dim, group in long.groupby("D", sort=True):
        row = {"D": dim, "seeds": int(group["n_seeds"].min())}
        for r in group.itertuples():
            if r.n_diverged:
                row[LABELS[r.method]] = f"diverged on {r.n_diverged} of {r.n_seeds} seeds"
                continue
            uvp = _pm(r.uvp_mean, r.uvp_std, 3 if r.uvp_mean < 1 else 2)
            cos = "—" if r.cos_mean is None or pd.isna(r.cos_mean) else f"{r.cos_mean:.3f}"
            row[LABELS[r.method]] = f"{uvp} (cos {cos})"
        first = group.iloc[0]
        row["paper best"] = "—" if first["paper_best"] is None or pd.isna(first["paper_best"]) else f"{first['paper_best']:g}"
        row["paper linear"] = f"{first['paper_linear']:g}"
        out.append(row)
    return pd.DataFrame(out)


def markdown_table(all_metrics: Sequence[Mapping]) -> str:
    """The formatted table as GitHub Markdown (for summaries and the closing note)."""
    df = formatted_table(all_metrics)
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
