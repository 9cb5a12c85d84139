"""The same DAG through a real SLURM cluster gives the same results as a local run."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import yaml

from echocem.dag import load_pipeline
from echocem.io import file_md5
from tests.pipeline import make_pipeline_copy, run, BIN

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# These embed wall times and run dates (the report shows every stage's run time),
# so they differ between any two runs by design; everything else must be identical.
VOLATILE = {"reports/index.html", "reports/summary.md"}


def output_hashes(root: Path) -> dict[str, str]:
    hashes = {}
    for stage in load_pipeline(root).values():
        for out in stage.outs:
            path = root / out
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for f in files:
                rel = f.relative_to(root).as_posix()
                if rel not in VOLATILE and f.name != ".snakemake_timestamp":
                    hashes[rel] = file_md5(f)
    return hashes


def lock_outs(root: Path) -> dict[str, str]:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return {o["path"]: o["md5"] for s in lock["stages"].values() for o in s.get("outs", [])
            if o["path"] not in VOLATILE}


def test_slurm_run_equals_local_run(slurm_cluster, tmp_path):
    local = make_pipeline_copy(tmp_path / "local")
    cluster = make_pipeline_copy(tmp_path / "cluster")

    start = time.perf_counter()
    run([str(BIN / "snakemake"), "--profile", "profiles/default", "--cores", "2"], local)
    local_s = time.perf_counter() - start

    start = time.perf_counter()
    proc = run([str(BIN / "snakemake"), "--profile", "profiles/slurm", "--jobs", "2",
                "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "1",
                "--default-resources", f"slurm_partition={slurm_cluster.partition}", "mem_mb=1000", "runtime=30"],
               cluster, env=slurm_cluster.env())
    slurm_s = time.perf_counter() - start

    log = proc.stdout + proc.stderr
    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", log)
    print(f"\nSLURM job ids: {', '.join(job_ids)}")
    print(f"wall time: local {local_s:.1f} s, SLURM {slurm_s:.1f} s (same DAG, tiny settings)")
    stages = load_pipeline(cluster)
    assert len(job_ids) == len(stages), "every stage ran as a SLURM job"

    assert output_hashes(cluster) == output_hashes(local)
    assert lock_outs(cluster) == lock_outs(local)
