"""A whole pipeline run (tiny settings) and what both tools say afterwards.

A copy of the session's tiny run is shared by the tests of this module:
afterwards Snakemake and DVC both have nothing to do, and an edit of one params
key or one code file outdates exactly the stages that read it and their
descendants.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

from echocem.dag import descendants_and_self, load_pipeline
from tests.pipeline import dry_run_stages, dvc, dvc_stale_stages, snakemake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tiny_copy) -> Path:
    return tiny_copy


def test_every_declared_output_exists_with_log_and_benchmark(finished_run):
    stages = load_pipeline(finished_run)
    for stage in stages.values():
        for out in stage.outs:
            assert (finished_run / out).exists(), f"{stage.name}: {out}"
        assert (finished_run / "logs" / f"{stage.name}.log").is_file()
        bench = (finished_run / "logs" / "benchmarks" / f"{stage.name}.tsv").read_text()
        assert bench.splitlines()[0].startswith("s\t")


def test_epochs_chosen_on_the_selection_and_every_validation_patch_scored(finished_run):
    """tests/tiny_params.yaml: validation well 4 has 2 sections of 3 patches, selection_patches 3.
    The networks choose their epoch on one section; the ladder scores both; the refit takes as
    many patches of well 4 as the largest training well has (3: one whole section)."""
    metrics = finished_run / "reports" / "metrics"
    unet = json.loads((metrics / "unet.json").read_text())
    assert unet["n_selection_patches"] == 3 and unet["n_patches"] == 6
    ladder = json.loads((metrics / "ladder.json").read_text())
    assert {rung["n_patches"] for rung in ladder["rungs"].values()} == {6}
    refit = json.loads((metrics / "unet_final.json").read_text())
    assert refit["patches_per_well"] == {"1": 3, "2": 3, "3": 3, "4": 3} and refit["n_labelled_patches"] == 15


def test_after_a_run_nothing_is_left_to_do(finished_run):
    assert dry_run_stages(finished_run) == set()
    assert dvc_stale_stages(finished_run) == set()
    proc = dvc(finished_run, "repro")
    assert "Running stage" not in proc.stdout
    lock = yaml.safe_load((finished_run / "dvc.lock").read_text())
    assert set(lock["stages"]) == set(load_pipeline(finished_run))


@pytest.mark.parametrize(
    "key, expected",
    [
        ("rf", {"rf_baseline", "evaluate", "report"}),
        ("submission", {"submission", "report"}),
        ("generative.banana", {"gen@banana", "report"}),
    ],
)
def test_params_edit_outdates_exactly_the_readers_and_descendants(finished_run, key, expected):
    path = finished_run / "params.yaml"
    params = yaml.safe_load(path.read_text())
    node = params
    for part in key.split("."):
        node = node[part]
    # the first numeric leaf under the key (sections may nest, e.g. small/full settings)
    while True:
        first = next(k for k, v in node.items()
                     if isinstance(v, dict) or (isinstance(v, (int, float)) and not isinstance(v, bool)))
        if not isinstance(node[first], dict):
            break
        node = node[first]
    original = path.read_text()
    node[first] = node[first] + 1
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        stages = load_pipeline(finished_run)
        readers = {s.name for s in stages.values() if any(key == p or key.startswith(p + ".") for p in s.params)}
        assert descendants_and_self(stages, readers) == expected
        assert dry_run_stages(finished_run) == expected
        # DVC marks the stages whose own deps changed; the rest follow when they rerun
        assert dvc_stale_stages(finished_run) == readers
    finally:
        path.write_text(original)
    assert dry_run_stages(finished_run) == set()


@pytest.mark.parametrize(
    "code_file, expected",
    [
        ("src/echocem/seg/rf.py", {"rf_baseline", "evaluate", "report"}),
        ("stages/ingest.py", None),  # ingest and everything below it
    ],
)
def test_code_edit_outdates_exactly_the_stage_and_descendants(finished_run, code_file, expected):
    stages = load_pipeline(finished_run)
    users = {s.name for s in stages.values() if code_file in s.deps}
    if expected is None:
        expected = descendants_and_self(stages, users)
        assert "simulate" not in expected and "gen@banana" not in expected
    path = finished_run / code_file
    original, stat = path.read_text(), path.stat()
    path.write_text(original + "\n# an edit\n")
    try:
        assert dry_run_stages(finished_run) == expected
        assert dvc_stale_stages(finished_run) == users
    finally:
        # restore content and mtime: Snakemake judges code files by mtime
        path.write_text(original)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert dry_run_stages(finished_run) == set()


def test_snakemake_report_is_produced(finished_run):
    snakemake(finished_run, "--report", "snakemake_report.html")
    html = (finished_run / "snakemake_report.html").read_text(errors="replace")
    assert "ladder" in html


def test_metrics_are_visible_to_dvc(finished_run):
    shown = json.loads(dvc(finished_run, "metrics", "show", "--json").stdout)
    flat = json.dumps(shown)
    assert "ladder.json" in flat and "data_card.json" in flat


def test_dvc_experiment_with_a_changed_param(finished_run):
    """`dvc exp run -S` reruns only the affected stages and records the experiment.

    Last in this module: it changes the workspace (params and the rf outputs)."""
    params = yaml.safe_load((finished_run / "params.yaml").read_text())
    trees = params["rf"]["n_estimators"]
    proc = dvc(finished_run, "exp", "run", "-n", "fewer-trees", "-S", f"rf.n_estimators={trees + 2}")
    ran = set(re.findall(r"Running stage '([a-z_]+)'", proc.stdout))
    assert ran == {"rf_baseline", "evaluate", "report"}
    shown = dvc(finished_run, "exp", "show", "--json").stdout
    assert "fewer-trees" in shown
    assert dvc_stale_stages(finished_run) == set()


def test_rerun_that_rebuilds_cached_bytes_leaves_nothing_to_do(finished_run):
    """A stage rerun that writes bytes DVC's cache already holds (a comment-only
    code edit; the stages are deterministic): DVC links the output to the cache
    object, the stages downstream find their inputs unchanged and run nothing,
    and both tools are left with nothing to do (file times play no part).

    After the experiment above: it needs that run's results in the cache."""
    code = finished_run / "stages" / "rf_baseline.py"
    code.write_text(code.read_text() + "\n# a comment: same behaviour, same outputs\n")
    before = (finished_run / "models" / "rf.joblib").read_bytes()
    snakemake(finished_run, "--cores", "2")
    assert (finished_run / "models" / "rf.joblib").read_bytes() == before, "the rerun rebuilt the same bytes"
    assert (finished_run / "models" / "rf.joblib").stat().st_nlink >= 2, "the output is a link into the cache"
    assert dry_run_stages(finished_run) == set()
    assert dvc_stale_stages(finished_run) == set()
