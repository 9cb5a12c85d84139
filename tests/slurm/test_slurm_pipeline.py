"""The same DAG through a real SLURM cluster gives what a local run gives.

One copy of the project (tiny settings) runs locally with profiles/default;
then every result is deleted and the same copy runs through
`snakemake --executor slurm --profile profiles/slurm` on the test cluster.
Each stage must have been one SLURM job that asked for the stage's resources
from params.yaml `execution` (GPU stages for a GPU), and every output and
dvc.lock must be identical. Job ids and both wall times are printed.
"""
from __future__ import annotations

import re
import time

import pytest
import yaml

from echocem.dag import load_pipeline, stages_by_rule
from echocem.execution import stage_resources, stage_threads
from echocem.params import load_params
from tests.pipeline import BIN, REPO, dvc_stale_stages, make_pipeline_copy, run, snakemake
from tests.slurm.snapshot import lock_record, output_hashes, remove_run_results

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

JOB_ID = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+)")


def cluster_sized_execution(cluster) -> dict:
    """params `execution` overrides for the test cluster: the GPU requests of the
    real params.yaml (the cluster has stand-in GPUs; the tiny settings ask for none),
    memory capped so that two jobs fit the node."""
    real = yaml.safe_load((REPO / "params.yaml").read_text())["execution"]
    cap = max(100, cluster.memory_mb // 2)
    return {
        "gpus": {name: min(n, cluster.gpus) for name, n in real["gpus"].items()},
        "mem_mb": {name: min(mb, cap) for name, mb in real["mem_mb"].items()},
    }


def slurm_jobs(cluster, log: str, by_rule: dict[str, str]) -> dict[str, dict[str, str]]:
    """Stage name -> `scontrol show job` of the job that ran it, from the ids in the log."""
    jobs = {}
    for job_id in JOB_ID.findall(log):
        info = cluster.job_info(job_id)
        stage = by_rule[info["Comment"].removeprefix("rule_")]  # the plugin's --comment names the rule
        assert stage not in jobs, f"stage {stage} ran as two jobs"
        jobs[stage] = info
    return jobs


def mem_mb(value: str) -> int:
    """SLURM's MinMemoryNode ('500M', '8G') in MB."""
    number, unit = float(value[:-1]), value[-1]
    return int(number * {"M": 1, "G": 1024, "T": 1024 * 1024}[unit])


def test_slurm_run_equals_local_run(slurm_cluster, tmp_path, capsys):
    root = make_pipeline_copy(tmp_path / "copy", {"execution": cluster_sized_execution(slurm_cluster)})
    stages = load_pipeline(root)

    start = time.perf_counter()
    snakemake(root, "--profile", "profiles/default", "--cores", "2")
    local_s = time.perf_counter() - start
    local_outputs, local_lock = output_hashes(root), lock_record(root)
    assert "missing" not in local_outputs.values()

    remove_run_results(root)
    start = time.perf_counter()
    proc = run(
        [str(BIN / "snakemake"), "--executor", "slurm", "--profile", "profiles/slurm", "--jobs", "2",
         "--default-resources", f"slurm_partition={slurm_cluster.partition}",
         # no accounting database on the test cluster: squeue, and a first check after 1 s
         "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1"],
        root, env=slurm_cluster.env(),
    )
    slurm_s = time.perf_counter() - start

    jobs = slurm_jobs(slurm_cluster, proc.stdout + proc.stderr, stages_by_rule(stages))
    with capsys.disabled():  # in the CI log even when the test passes
        print(f"\nSLURM job ids: {' '.join(info['JobId'] for info in jobs.values())}")
        print(f"SLURM jobs of the tiny pipeline ({len(jobs)}):")
        for stage, info in jobs.items():
            print(f"  jobid {info['JobId']:>4}  {stage:<14} {info['JobState']:<10} "
                  f"cpus={info['CPUs/Task']} mem={info['MinMemoryNode']} time={info['TimeLimit']} "
                  f"gres={info.get('TresPerJob', '-')}")
        print(f"wall time, same DAG, tiny settings: local {local_s:.1f} s, SLURM {slurm_s:.1f} s")

    assert set(jobs) == set(stages), "every stage ran as one SLURM job"
    params = load_params(root / "params.yaml")
    for stage, info in jobs.items():
        asked = stage_resources(params, stages[stage])
        assert info["JobState"] == "COMPLETED", stage
        assert int(info["CPUs/Task"]) == stage_threads(params, stages[stage]), stage
        assert mem_mb(info["MinMemoryNode"]) == asked["mem_mb"], stage
        assert info["TimeLimit"] == f"{asked['runtime'] // 60:02d}:{asked['runtime'] % 60:02d}:00", stage
        assert info.get("TresPerJob") == (f"gres:gpu:{asked['gpu']}" if asked.get("gpu") else None), stage
    assert any("gpu" in stage_resources(params, s) for s in stages.values()), "a GPU stage was exercised"

    assert output_hashes(root) == local_outputs
    assert lock_record(root) == local_lock
    assert dvc_stale_stages(root) == set()
