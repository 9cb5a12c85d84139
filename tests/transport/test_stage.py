"""stages/transport_benchmark.py runs as the pipeline runs it, on tiny settings, in a tmp dir;
the report's table and figure come out of its metrics."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from echocem.transport.figures import uvp_vs_dim_figure
from echocem.transport.maps import load_map
from echocem.transport.table import benchmark_table, formatted_table, markdown_table
from tests.pipeline import REPO, run, tiny_params, write_params


def stage(root: Path, dim: int, check: bool = True):
    return run([sys.executable, str(REPO / "stages" / "transport_benchmark.py"), "--params", "params.yaml",
                "--dim", str(dim), "--metrics", f"reports/metrics/transport/w2_d{dim}.json",
                "--models", f"models/transport/w2_d{dim}", "--figures", f"reports/figures/transport/w2_d{dim}"],
               root, check=check)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("transport")
    # the arrays stay in the checkout; everything the stage writes goes to the tmp dir
    write_params(root, tiny_params({"transport_benchmark": {"data_dir": str(REPO / "third_party" / "w2bench")}}))
    stage(root, 2)
    return root


def test_stage_writes_metrics_maps_and_figures(workspace: Path) -> None:
    metrics = json.loads((workspace / "reports/metrics/transport/w2_d2.json").read_text())
    assert metrics["dim"] == 2 and metrics["n_seeds"] == 2 and metrics["n_eval"] == 512
    for method in ("linear", "entropic", "cmgn", "mmgn", "icnn"):
        uvp = metrics["methods"][method]["uvp"]
        assert uvp["n"] == 2 and len(uvp["per_seed"]) == 2 and uvp["std"] >= 0
        assert 0 < uvp["mean"] < metrics["identity_uvp"]   # every solver beats the identity
        assert -1 <= metrics["methods"][method]["cos"]["mean"] <= 1
    assert metrics["paper"] == {"best_uvp": 0.1, "linear_uvp": 14.1, "linear_uvp_from_arrays": pytest.approx(13.9114)}
    figures = sorted((workspace / "reports/figures/transport/w2_d2").glob("*.png"))
    assert [f.name for f in figures] == ["transported.png", "uvp_by_method.png"]
    assert all(f.stat().st_size > 5000 for f in figures)
    files = sorted(p.name for p in (workspace / "models/transport/w2_d2").glob("*.pt"))
    assert files == sorted(f"{m}_seed{s}.pt" for m in ("linear", "entropic", "cmgn", "mmgn", "icnn") for s in (0, 1))
    # a saved map reproduces the score the stage reported for it
    from echocem.transport.benchmark import Samplers, load_pair
    from echocem.transport.experiment import replicate_seeds
    from echocem.transport.metrics import l2_uvp
    import torch

    pair = load_pair(REPO / "third_party" / "w2bench", 2)
    seeds = replicate_seeds(metrics["seed"], 2, 1)
    x = Samplers(pair, torch.Generator().manual_seed(seeds["eval"]), torch.float64).sample_p(512)
    truth = Samplers(pair, torch.Generator()).true_map(x).numpy()
    mapped = load_map(workspace / "models/transport/w2_d2/cmgn_seed1.pt")(x.numpy())
    assert l2_uvp(mapped, truth, pair.var_q) == pytest.approx(metrics["methods"]["cmgn"]["uvp"]["per_seed"][1], rel=1e-4)


def test_stage_is_deterministic(workspace: Path) -> None:
    path = workspace / "reports/metrics/transport/w2_d2.json"
    first = path.read_bytes()
    model = (workspace / "models/transport/w2_d2/mmgn_seed0.pt").read_bytes()
    stage(workspace, 2)
    assert path.read_bytes() == first
    assert (workspace / "models/transport/w2_d2/mmgn_seed0.pt").read_bytes() == model


def test_report_table_and_figure_from_metrics(workspace: Path) -> None:
    m2 = json.loads((workspace / "reports/metrics/transport/w2_d2.json").read_text())
    m8 = json.loads(json.dumps(m2))  # a second dimension for the figure: the same scores, relabelled
    m8.update(dim=8, paper={"best_uvp": 0.7, "linear_uvp": 27.3, "linear_uvp_from_arrays": 26.7})
    long = benchmark_table([m8, m2])
    assert list(long["D"].unique()) == [2, 8] and len(long) == 10
    row = long[(long.D == 2) & (long.method == "cmgn")].iloc[0]
    assert row.uvp_mean == m2["methods"]["cmgn"]["uvp"]["mean"] and row.n_seeds == 2 and row.paper_best == 0.1
    wide = formatted_table([m2, m8])
    assert list(wide.columns) == ["D", "seeds", "linear (Bures)", "entropic (Sinkhorn)", "ICNN", "C-MGN",
                                  "M-MGN", "paper best", "paper linear"]
    assert "±" in wide.loc[0, "C-MGN"] and wide.loc[0, "paper best"] == "0.1"
    assert markdown_table([m2]).count("\n") == 3
    fig = uvp_vs_dim_figure([m2, m8])
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log"
    assert len(ax.get_legend().get_texts()) == 7  # five methods + the paper's best and linear
    assert np.isfinite(ax.get_ylim()).all()


def test_bad_dimension_fails_cleanly(workspace: Path) -> None:
    proc = stage(workspace, 3, check=False)
    assert proc.returncode == 2 and "--dim 3" in proc.stderr


def test_a_diverged_seed_is_reported_as_such_not_averaged(workspace: Path) -> None:
    """A run-away seed (the semi-dual ICNN scored 9e13 % at D = 64) shows as diverged in the table and
    as a gap in the figures, and an MGN that diverged is not picked as the best one."""
    from echocem.params import load_params
    from echocem.transport.benchmark import load_pair
    from echocem.transport.experiment import build_metrics
    from echocem.transport.figures import uvp_bars_figure

    params = load_params(workspace / "params.yaml")["transport_benchmark"]
    cfg = params["profiles"][params["profile"]]
    scores = {m: {"uvp": [3.0, 3.2], "cos": [0.9, 0.91]} for m in ("linear", "entropic", "mmgn")}
    scores["cmgn"] = {"uvp": [0.5, 150.0], "cos": [0.99, 0.1]}   # one seed above 100 %: diverged
    scores["icnn"] = {"uvp": [1.0, 9e13], "cos": [0.95, -0.2]}
    metrics = build_metrics(load_pair(REPO / "third_party" / "w2bench", 2), cfg, 0, 512, scores, [200.0, 200.0])
    assert [metrics["methods"][m]["uvp"]["n_diverged"] for m in ("linear", "cmgn", "mmgn", "icnn")] == [0, 1, 0, 1]
    assert metrics["best_mgn"] == "mmgn" and metrics["mgn_vs_linear_uvp_ratio"] == 1.0

    wide = formatted_table([metrics]).iloc[0]
    assert wide["ICNN"] == "diverged on 1 of 2 seeds" and wide["C-MGN"] == "diverged on 1 of 2 seeds"
    assert wide["M-MGN"].startswith("3.10 ± 0.14")
    legacy = json.loads(json.dumps(metrics))        # a metrics file without the count: taken from per_seed
    del legacy["methods"]["icnn"]["uvp"]["n_diverged"]
    assert benchmark_table([legacy]).set_index("method").loc["icnn", "n_diverged"] == 1

    for fig in (uvp_vs_dim_figure([metrics]), uvp_bars_figure(metrics)):
        ax = fig.axes[0]
        assert np.isfinite(ax.get_ylim()).all() and ax.get_ylim()[1] < 1e3   # the 9e13 % is not drawn
    labels = [t.get_text() for t in uvp_vs_dim_figure([metrics]).axes[0].get_legend().get_texts()]
    assert "ICNN (diverged at D = 2)" in labels and "M-MGN" in labels
    assert [t.get_text() for t in uvp_bars_figure(metrics).axes[0].texts] == ["diverged", "diverged"]


def test_a_run_stopped_as_diverged_is_scored_as_diverged(workspace: Path, monkeypatch) -> None:
    """A network whose training stops as diverged (semidual.TrainingDiverged) on one seed: that seed
    scores NaN and counts as diverged, the stop is recorded with its step, the other seeds and
    methods train and score as usual, and no map is kept for it."""
    from echocem.params import load_params
    from echocem.transport import experiment
    from echocem.transport.benchmark import load_pair
    from echocem.transport.semidual import TrainingDiverged

    params = load_params(workspace / "params.yaml")["transport_benchmark"]
    cfg = params["profiles"][params["profile"]]
    real, icnn_calls = experiment.fit_network, []

    def fit_network(name, net_cfg, r, *args, **kwargs):
        if name == "icnn":
            icnn_calls.append(r)
            if len(icnn_calls) == 1:   # replicate 0 (replicates run in order)
                raise TrainingDiverged("icnn d=2", 17, "the semi-dual J is nan")
        return real(name, net_cfg, r, *args, **kwargs)

    pair = load_pair(REPO / "third_party" / "w2bench", 2)
    monkeypatch.setattr(experiment, "fit_network", fit_network)
    logged = []
    metrics, blobs, _ = experiment.run_dimension(pair, cfg, 0, n_eval=512, log=logged.append)
    icnn = metrics["methods"]["icnn"]
    assert icnn["uvp"]["n_diverged"] == 1 and icnn["uvp"]["per_seed"][0] is None
    assert icnn["uvp"]["per_seed"][1] is not None and icnn["uvp"]["per_seed"][1] < 100
    assert icnn["stopped_diverged"] == [{"seed": 0, "step": 17, "reason": "the semi-dual J is nan"}]
    assert metrics["methods"]["cmgn"]["stopped_diverged"] == [] and metrics["methods"]["cmgn"]["uvp"]["n_diverged"] == 0
    assert "icnn_seed0" not in blobs and "icnn_seed1" in blobs and "cmgn_seed0" in blobs
    assert any("icnn d=2: diverged at step 17" in line for line in logged)
    assert formatted_table([metrics]).iloc[0]["ICNN"] == f"diverged on 1 of {cfg['seeds']} seeds"
