# Snakemake view of the pipeline. The DAG is declared once, in dvc.yaml; this
# file derives one rule per DVC stage (src/echocem/dag.py) and adds only
# execution hints from params.yaml: threads, memory, wall time, GPUs.
# After a successful run, `dvc commit` records every stage in dvc.lock, so
# `dvc status` is clean and `dvc repro` has nothing to do.
import sys
from pathlib import Path

from echocem.dag import (default_targets, is_dir_path, load_pipeline, snakemake_inputs,
                         stage_resources, stage_threads)
from echocem.record import commit_run
from echocem.params import load_params

# Validated before anything is scheduled: a bad key stops the run here, named.
PARAMS = load_params("params.yaml")
STAGES = load_pipeline(".", PARAMS)

# Stage commands say `python ...`: run them with the interpreter running Snakemake.
shell.prefix(f"export PATH={Path(sys.executable).parent}:$PATH; ")

include: "workflow/rules/common.smk"


rule all:
    default_target: True
    input:
        default_targets(STAGES, PARAMS),


for _stage in STAGES.values():

    rule:
        name:
            _stage.name
        input:
            snakemake_inputs(_stage, STAGES),
        output:
            [declared_output(_stage, out) for out in _stage.outs],
        params:
            # the values of exactly the keys this stage reads: a change reruns it
            values=_stage.param_values(PARAMS),
            # bound here: `shell` is evaluated when the job runs, after the loop moved on
            cmd=_stage.cmd,
        log:
            f"logs/{_stage.name}.log",
        benchmark:
            f"logs/benchmarks/{_stage.name}.tsv"
        threads: stage_threads(PARAMS, _stage.name)
        resources:
            **stage_resources(PARAMS, _stage.name),
        message:
            f"stage {_stage.name}"
        shell:
            "ECHOCEM_THREADS={threads} {params.cmd} > {log} 2>&1"


onsuccess:
    # Record the finished stages in dvc.lock (and the cache); DVC then agrees
    # that everything is up to date. Skipped when no output is newer than dvc.lock.
    commit_run(STAGES)
