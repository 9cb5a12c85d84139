"""Scheduler hints for a stage from params `execution`: threads, memory, wall time, GPUs, priority.

No stage reads these keys, so changing them never makes a result out of date.
A matrix/foreach stage ("gen@banana") takes the hints of its own name, else of
its declaration ("gen"), else the defaults.
"""
from __future__ import annotations

from typing import Mapping

from echocem.dag import Stage


def _lookup(table: Mapping[str, int], stage: Stage, default: int | None) -> int | None:
    for key in (stage.name, stage.base):
        if key in table:
            return int(table[key])
    return default


def stage_threads(params: Mapping, stage: Stage) -> int:
    threads = params["execution"]["threads"]
    return int(_lookup(threads, stage, threads["default"]))


def stage_resources(params: Mapping, stage: Stage) -> dict[str, int]:
    """mem_mb, runtime (minutes) and, when asked for, gpu: Snakemake's standard resources."""
    ex = params["execution"]
    res = {
        "mem_mb": int(_lookup(ex["mem_mb"], stage, ex["mem_mb"]["default"])),
        "runtime": int(_lookup(ex["runtime_min"], stage, ex["runtime_min"]["default"])),
    }
    gpus = _lookup(ex["gpus"], stage, 0)
    if gpus:
        res["gpu"] = gpus
    return res


def stage_priority(params: Mapping, stage: Stage) -> int:
    """Snakemake's rule priority (higher starts first among ready jobs; default 0)."""
    return int(_lookup(params["execution"].get("priority", {}), stage, 0))
