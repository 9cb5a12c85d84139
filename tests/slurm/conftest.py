"""Session fixture: a real one-node SLURM cluster, stopped whatever the tests do."""
from __future__ import annotations

import os

import pytest

from tests.slurm.cluster import ClusterUnavailable, start_cluster, stop_cluster


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"true", "1", "yes"}


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """munged + slurmctld + slurmd on loopback. Skipped where they cannot start, except in CI."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except ClusterUnavailable as exc:
        if in_ci():
            pytest.fail(f"the SLURM test cluster must start in CI, but: {exc}", pytrace=False)
        pytest.skip(f"no SLURM test cluster here: {exc}")
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
