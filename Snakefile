# Snakemake view of the pipeline. The DAG is declared once, in dvc.yaml, and
# resolved by DVC (echocem.dag); this file makes one rule per DVC stage and adds
# only execution hints from params.yaml `execution`: threads, memory, wall time, GPUs,
# priority.
#
# DVC decides what is out of date (echocem.staleness): inputs are `ancient` and a
# per-stage marker tells Snakemake which stages DVC reports stale (common.smk), so
# `snakemake -n` and `dvc status` agree by construction. Each job runs its stage
# and records it in dvc.lock (`python -m echocem run-stage`, echocem.stage_job).
# A run holds the checkout (DVC's own lock) from start to end: a second run,
# Snakemake or `dvc repro`, is refused (echocem.checkout).
import sys
from pathlib import Path

from echocem.dag import load_pipeline
from echocem.execution import stage_priority, stage_resources, stage_threads
from echocem.params import load_params
from echocem.staleness import RETIRED, stages_of, status_answer, to_run, write_markers

# Validated before anything is scheduled: a bad key stops the run here, named.
PARAMS = load_params("params.yaml")
STAGES = load_pipeline(".")
# What DVC reports out of date, and everything downstream of it. Asked in the
# main process only: a cluster job runs the one job it was given (--force).
# RETIRING: dvc.lock entries of stages dvc.yaml no longer has (echocem.retired),
# whose outputs and entries the run removes before its first job.
RUN, RETIRING = set(), []
if workflow.is_main_process:
    _ANSWER = status_answer(".", STAGES)
    RUN = to_run(STAGES, stages_of(_ANSWER, STAGES))
    RETIRING = _ANSWER.get(RETIRED, [])
    write_markers(".", STAGES, RUN)

# Stage commands say `python ...`: run them with the interpreter running Snakemake.
shell.prefix(f"export PATH={Path(sys.executable).parent}:$PATH; ")

include: "workflow/rules/common.smk"


rule all:
    default_target: True
    input:
        [out for stage in STAGES.values() for out in stage.outs],


for _stage in STAGES.values():

    rule:
        name:
            _stage.rule
        input:
            stage_inputs(_stage, STAGES, RUN),
        output:
            [declared_output(_stage, out) for out in _stage.outs],
        params:
            # bound here: `shell` is evaluated when the job runs, after the loop moved on
            stage=_stage.name,
        log:
            f"logs/{_stage.name}.log",
        benchmark:
            f"logs/benchmarks/{_stage.name}.tsv"
        threads: stage_threads(PARAMS, _stage)
        priority: stage_priority(PARAMS, _stage)
        resources:
            **stage_resources(PARAMS, _stage),
        message:
            f"stage {_stage.name}"
        shell:
            "ECHOCEM_THREADS={threads} python -m echocem run-stage {params.stage:q} > {log} 2>&1"


onstart:
    start_run(STAGES, RETIRING)


onsuccess:
    finish_run(STAGES)


onerror:
    finish_run(STAGES)
