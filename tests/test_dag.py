"""The DAG is declared once (dvc.yaml); Snakemake and DVC must see the same one."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from echocem.dag import (
    descendants_and_self,
    edges,
    interpolate,
    load_pipeline,
    lock_is_current,
    snakemake_inputs,
)
from echocem.io import EchoCemError
from echocem.params import load_params
from tests.pipeline import make_pipeline_copy, snakemake

# --- unit level: the reader of dvc.yaml ---------------------------------------------

TOY = """
stages:
  make:
    cmd: python make.py --out ${data.raw_dir}
    deps: [make.py, code]
    params: [seed]
    outs: ["${data.raw_dir}"]
  use:
    cmd: python use.py
    deps: [use.py, data/raw/synthetic/x.npy]
    params:
      - params.yaml:
          - data.source
    metrics:
      - m.json:
          cache: false
"""


def _toy(tmp_path: Path) -> Path:
    (tmp_path / "dvc.yaml").write_text(TOY)
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "a.py").write_text("x = 1\n")
    (tmp_path / "code" / "__pycache__").mkdir()
    (tmp_path / "code" / "__pycache__" / "a.pyc").write_text("")
    return tmp_path


PARAMS = {"seed": 1, "data": {"source": "synthetic", "raw_dir": "data/raw/synthetic"}}


def test_reader_resolves_interpolation_params_and_edges(tmp_path):
    stages = load_pipeline(_toy(tmp_path), PARAMS)
    assert list(stages) == ["make", "use"]
    assert stages["make"].cmd == "python make.py --out data/raw/synthetic"
    assert stages["make"].outs == ("data/raw/synthetic",)
    assert stages["use"].params == ("data.source",)
    assert stages["use"].metrics == ("m.json",)
    # a file inside another stage's output folder makes an edge
    assert edges(stages) == {("make", "use")}
    assert descendants_and_self(stages, ["make"]) == {"make", "use"}


def test_code_folders_expand_to_files_for_snakemake(tmp_path):
    root = _toy(tmp_path)
    stages = load_pipeline(root, PARAMS)
    assert snakemake_inputs(stages["make"], stages, root) == ["make.py", "code/a.py"]
    # outputs of other stages stay as declared
    assert snakemake_inputs(stages["use"], stages, root) == ["use.py", "data/raw/synthetic/x.npy"]


def test_reader_rejects_what_it_does_not_understand(tmp_path):
    (tmp_path / "dvc.yaml").write_text("stages:\n  a:\n    foreach: [1]\n    do: {cmd: x}\n")
    with pytest.raises(EchoCemError, match="stage a: needs a cmd"):
        load_pipeline(tmp_path, PARAMS)
    with pytest.raises(EchoCemError, match=r"\$\{data.nothing\}"):
        interpolate("x ${data.nothing}", PARAMS, "stage a")
    (tmp_path / "dvc.yaml").write_text("stages:\n  a: {cmd: x, outs: [o.txt]}\n  b: {cmd: y, outs: [o.txt]}\n")
    with pytest.raises(EchoCemError, match="o.txt is declared by a and b"):
        load_pipeline(tmp_path, PARAMS)


def test_lock_is_current_compares_mtimes(tmp_path):
    root = _toy(tmp_path)
    stages = load_pipeline(root, PARAMS)
    assert not lock_is_current(stages, root)  # no lock, no outputs
    (root / "data/raw/synthetic").mkdir(parents=True)
    (root / "data/raw/synthetic/x.npy").write_text("1")
    (root / "m.json").write_text("{}")
    (root / "dvc.lock").write_text("schema: '2.0'\n")
    future = time.time() + 10
    os.utime(root / "dvc.lock", (future, future))
    assert lock_is_current(stages, root)
    os.utime(root / "m.json", (future + 5, future + 5))
    assert not lock_is_current(stages, root)


# --- the real pipeline: both tools, one DAG -----------------------------------------


def _dvc_view(root: Path):
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = {}
        for stage in repo.index.stages:
            deps = sorted(d.def_path for d in stage.deps if type(d).__name__ != "ParamsDependency")
            params = sorted(k for d in stage.deps if type(d).__name__ == "ParamsDependency" for k in d.params)
            stages[stage.name] = {"cmd": " ".join(stage.cmd.split()), "deps": deps, "params": params,
                                  "outs": sorted(o.def_path for o in stage.outs)}
        graph = {(up.name, down.name) for down, up in repo.index.graph.edges()}
    return stages, graph


def _snakemake_view(root: Path):
    dot = snakemake(root, "all", "--rulegraph").stdout
    labels = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, flags=re.M))
    graph = {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M)}
    graph = {(a, b) for a, b in graph if "all" not in (a, b)}
    summary = snakemake(root, "all", "--summary").stdout.splitlines()
    outs: dict[str, list[str]] = {}
    header = next(i for i, line in enumerate(summary) if line.startswith("output_file"))
    for line in summary[header + 1:]:
        cols = line.split("\t")
        if len(cols) >= 3:
            outs.setdefault(cols[2], []).append(cols[0])
    return {k: sorted(v) for k, v in outs.items()}, graph


@pytest.fixture(scope="module")
def pipeline_copy(tmp_path_factory) -> Path:
    return make_pipeline_copy(tmp_path_factory.mktemp("dag"))


def test_snakemake_and_dvc_see_the_identical_dag(pipeline_copy):
    dvc_stages, dvc_graph = _dvc_view(pipeline_copy)
    smk_outs, smk_graph = _snakemake_view(pipeline_copy)
    ours = load_pipeline(pipeline_copy)

    assert set(dvc_stages) == set(smk_outs) == set(ours), "same stages"
    assert dvc_graph == smk_graph == edges(ours), "same edges"
    for name, spec in dvc_stages.items():
        assert smk_outs[name] == spec["outs"], f"{name}: same outputs"
        assert spec["cmd"] == ours[name].cmd, f"{name}: same command"
        assert spec["deps"] == sorted(ours[name].deps), f"{name}: same deps"
        assert spec["params"] == sorted(ours[name].params), f"{name}: same params keys"


def test_every_stage_lists_its_entry_script_and_existing_code(pipeline_copy):
    stages = load_pipeline(pipeline_copy)
    for stage in stages.values():
        script = f"stages/{stage.name}.py" if not stage.name.startswith("gen_") else "stages/generative.py"
        assert script in stage.deps, f"{stage.name} lists {script}"
        assert stage.cmd.startswith(f"python {script}")
        for dep in stage.deps:
            if dep.startswith(("stages/", "src/")):
                assert (pipeline_copy / dep).exists(), f"{stage.name}: code dep {dep} exists"


def test_invalid_params_stop_snakemake_before_any_stage(pipeline_copy, tmp_path):
    params_file = pipeline_copy / "params.yaml"
    good = params_file.read_text()
    try:
        params_file.write_text(good.replace("device: cpu", "device: quantum", 1))
        proc = snakemake(pipeline_copy, "--cores", "1", check=False)
        assert proc.returncode != 0
        assert "key execution.device: 'quantum' is not one of" in proc.stdout + proc.stderr
        assert not (pipeline_copy / "logs").exists(), "no stage ran"
        assert not (pipeline_copy / "data").exists()
    finally:
        params_file.write_text(good)
    assert load_params(params_file)
