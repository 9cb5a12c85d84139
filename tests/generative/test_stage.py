"""stages/generative.py runs as dvc.yaml runs it, on tiny settings, and rejects bad input."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.pipeline import REPO, run, tiny_params, write_params


def stage(root: Path, task: str, check: bool = True):
    return run([sys.executable, str(REPO / "stages" / "generative.py"), "--params", "params.yaml", "--task", task,
                "--metrics", f"reports/metrics/generative/{task}.json",
                "--figures", f"reports/figures/generative/{task}"], root, check=check)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gen")
    write_params(root, tiny_params())
    return root


@pytest.mark.parametrize("task", ["gradient", "banana"])
def test_stage_writes_metrics_and_figures(workspace: Path, task: str) -> None:
    stage(workspace, task)
    metrics = json.loads((workspace / f"reports/metrics/generative/{task}.json").read_text())
    figures = sorted((workspace / f"reports/figures/generative/{task}").glob("*.png"))
    assert figures and all(f.stat().st_size > 1000 for f in figures)
    assert metrics["task"] == task
    if task == "gradient":
        assert metrics["mae_cmgn"] < metrics["mae_identity"] and metrics["mae_mmgn"] < metrics["mae_identity"]
    else:
        assert metrics["epsilon"] == pytest.approx(metrics["blur"] ** 2)
        for key in ("sinkhorn_identity", "sinkhorn_linear", "sinkhorn_pot_mapping", "sinkhorn_cmgn", "sinkhorn_mmgn"):
            assert metrics[key] >= 0


def test_stage_is_deterministic(workspace: Path) -> None:
    path = workspace / "reports/metrics/generative/gradient.json"  # written by the test above
    first = path.read_bytes()
    stage(workspace, "gradient")
    assert path.read_bytes() == first


def test_unknown_task_fails_cleanly(workspace: Path) -> None:
    proc = stage(workspace, "nonsense", check=False)
    assert proc.returncode == 2 and "nonsense" in proc.stderr
    assert not (workspace / "reports/metrics/generative/nonsense.json").exists()
