"""Session fixture: a real one-node SLURM cluster, stopped whatever happens."""
from __future__ import annotations

import os

import pytest

from tests.slurm.cluster import ClusterUnavailable, start_cluster, stop_cluster


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm"))
    except ClusterUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"SLURM cluster could not start in CI: {exc}")
        pytest.skip(f"SLURM cluster could not start here: {exc}")
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
