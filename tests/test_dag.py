"""The DAG is declared once (dvc.yaml) and resolved by DVC; Snakemake and DVC see the same one."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from echocem.dag import descendants_and_self, edges, load_pipeline, resolve_with_dvc, rule_name, stages_by_rule
from echocem.params import load_params
from tests.pipeline import BIN, make_pipeline_copy, snakemake, tool_env

# --- unit level: DVC's resolution, memoised --------------------------------------------

TOY = """
vars:
  - outdir: results
stages:
  make:
    cmd: python make.py --out ${data.raw_dir}
    deps: [make.py]
    params: [seed]
    outs: ["${data.raw_dir}"]
  per_task:
    matrix:
      task: [a, b]
    cmd: python use.py ${item.task} > ${outdir}/${item.task}.txt
    deps: [use.py, data/raw/synthetic/x.npy]
    params:
      - params.yaml:
          - tasks.${item.task}
    outs:
      - ${outdir}/${item.task}.txt
  per_dim:
    foreach: [2, 8]
    do:
      cmd: python dim.py ${item}
      deps: [results/a.txt]
      metrics:
        - m${item}.json:
            cache: false
"""


@pytest.fixture()
def toy(tmp_path: Path) -> Path:
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=tool_env())
    (tmp_path / "dvc.yaml").write_text(TOY)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"seed": 1, "data": {"raw_dir": "data/raw/synthetic"}, "tasks": {"a": 1, "b": 2}}))
    return tmp_path


def test_dvc_resolves_templating_matrix_foreach_and_vars(toy):
    stages = load_pipeline(toy)
    assert list(stages) == ["make", "per_task@a", "per_task@b", "per_dim@2", "per_dim@8"]
    assert stages["make"].cmd == "python make.py --out data/raw/synthetic"
    assert stages["make"].outs == ("data/raw/synthetic",)
    assert stages["per_task@b"].cmd == "python use.py b > results/b.txt"
    assert stages["per_task@b"].params == ("tasks.b",)
    assert stages["per_task@b"].outs == ("results/b.txt",)
    assert stages["per_dim@8"].metrics == stages["per_dim@8"].uncached == ("m8.json",)
    # a file inside another stage's output folder makes an edge
    assert edges(stages) == {("make", "per_task@a"), ("make", "per_task@b"),
                             ("per_task@a", "per_dim@2"), ("per_task@a", "per_dim@8")}
    assert descendants_and_self(stages, ["per_task@a"]) == {"per_task@a", "per_dim@2", "per_dim@8"}
    assert stages_by_rule(stages)["per_task__a"] == "per_task@a"
    assert rule_name("gen@banana") == "gen__banana"


def test_the_memo_is_dvcs_answer_until_a_file_it_read_changes(toy):
    first = load_pipeline(toy)
    assert (toy / ".dvc" / "tmp" / "echocem" / "pipeline.json").is_file()
    assert load_pipeline(toy) == first == resolve_with_dvc(toy)
    params = yaml.safe_load((toy / "params.yaml").read_text())
    params["data"]["raw_dir"] = "data/raw/other"
    (toy / "params.yaml").write_text(yaml.safe_dump(params))
    assert load_pipeline(toy)["make"].outs == ("data/raw/other",)
    (toy / "dvc.yaml").write_text(TOY.replace("[a, b]", "[a, b, c]"))
    assert "per_task@c" in load_pipeline(toy)


def test_a_raw_dir_with_a_space_or_a_semicolon_stays_one_argument_of_ingest(tmp_path):
    """DVC puts data.raw_dir into ingest's shell command: quoted, it can neither split nor inject."""
    import shlex
    import shutil

    from tests.pipeline import REPO

    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=tool_env())
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"] = {"source": "real", "raw_dir": "data/raw/echo cem; touch injected"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    ingest = load_pipeline(tmp_path)["ingest"]
    argv = shlex.split(ingest.cmd)
    assert argv[argv.index("--raw") + 1] == "data/raw/echo cem; touch injected"
    assert "data/raw/echo cem; touch injected" in ingest.deps


def test_a_broken_dvc_yaml_is_named(toy):
    from echocem.io import EchoCemError

    (toy / "dvc.yaml").write_text("stages:\n  a: {cmd: x, outs: [o.txt]}\n  b: {cmd: y, outs: [o.txt]}\n")
    with pytest.raises(EchoCemError, match="dvc.yaml: DVC cannot read the pipeline"):
        load_pipeline(toy)


# --- the real pipeline: both tools, one DAG -------------------------------------------


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


def _snakemake_view(root: Path, by_rule: dict[str, str]):
    dot = snakemake(root, "all", "--rulegraph").stdout
    labels = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, flags=re.M))
    graph = {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M)}
    graph = {(by_rule[a], by_rule[b]) for a, b in graph if "all" not in (a, b)}
    summary = snakemake(root, "all", "--summary").stdout.splitlines()
    outs: dict[str, list[str]] = {}
    header = next(i for i, line in enumerate(summary) if line.startswith("output_file"))
    for line in summary[header + 1:]:
        cols = line.split("\t")
        if len(cols) >= 3:
            outs.setdefault(by_rule[cols[2]], []).append(cols[0])
    return {k: sorted(v) for k, v in outs.items()}, graph


@pytest.fixture(scope="module")
def pipeline_copy(tmp_path_factory) -> Path:
    return make_pipeline_copy(tmp_path_factory.mktemp("dag"))


def test_snakemake_and_dvc_see_the_identical_dag(pipeline_copy):
    dvc_stages, dvc_graph = _dvc_view(pipeline_copy)
    ours = load_pipeline(pipeline_copy)
    smk_outs, smk_graph = _snakemake_view(pipeline_copy, stages_by_rule(ours))

    assert set(dvc_stages) == set(smk_outs) == set(ours), "same stages"
    assert dvc_graph == smk_graph == edges(ours), "same edges"
    for name, spec in dvc_stages.items():
        assert smk_outs[name] == spec["outs"], f"{name}: same outputs"
        assert spec["cmd"] == ours[name].cmd, f"{name}: same command"
        assert spec["deps"] == sorted(ours[name].deps), f"{name}: same deps"
        assert spec["params"] == sorted(ours[name].params), f"{name}: same params keys"


def test_the_transport_tasks_are_one_matrix_declaration():
    declared = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"]
    assert "matrix" in declared["gen"]
    tasks = declared["gen"]["matrix"]["task"]
    assert {f"gen@{t}" for t in tasks} <= set(load_pipeline(Path(__file__).resolve().parents[1]))


def test_invalid_params_stop_snakemake_before_any_stage(pipeline_copy):
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


def test_a_missing_raw_data_folder_stops_every_entry_point(pipeline_copy):
    """`source: real` naming a folder that is not there: check-params, Snakemake and the stage itself
    stop before any work, naming the key and the path."""
    params_file = pipeline_copy / "params.yaml"
    good = params_file.read_text()
    params = yaml.safe_load(good)
    params["data"] = {"source": "real", "raw_dir": "data/raw/echo cem"}
    try:
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        expected = "key data.raw_dir: 'data/raw/echo cem' does not exist (data.source is real"
        env = tool_env(cwd=pipeline_copy)
        check = subprocess.run([sys.executable, "-m", "echocem", "check-params"], cwd=pipeline_copy, env=env,
                               capture_output=True, text=True)
        assert check.returncode == 2 and expected in check.stderr
        dry = snakemake(pipeline_copy, "-n", "--cores", "1", check=False)
        assert dry.returncode != 0 and expected in dry.stdout + dry.stderr
        stage = subprocess.run([sys.executable, "stages/ingest.py", "--params", "params.yaml", "--raw",
                                "data/raw/echo cem", "--out", str(pipeline_copy / "x"), "--card",
                                str(pipeline_copy / "card.json")], cwd=pipeline_copy, env=env,
                               capture_output=True, text=True)
        assert stage.returncode == 2 and expected in stage.stderr
        assert not (pipeline_copy / "logs").exists() and not os.path.exists(pipeline_copy / "x")
    finally:
        params_file.write_text(good)
