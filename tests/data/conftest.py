"""Shared fixtures of the data-stage tests: small params and a simulated raw folder."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from echocem.data.layout import write_raw_layout
from echocem.data.simulate import Dataset, random_suffixes, shuffled_label_order, simulate_dataset
from tests.pipeline import tiny_params


@pytest.fixture(scope="session")
def sim_cfg() -> dict:
    """The tiny simulation settings (tests/tiny_params.yaml): 15 labelled patches, one narrow well."""
    return tiny_params()["simulate"]


@pytest.fixture(scope="session")
def simulated(sim_cfg) -> Dataset:
    return simulate_dataset(sim_cfg, seed=7)


@pytest.fixture(scope="session")
def raw_master(tmp_path_factory, simulated) -> Path:
    root = tmp_path_factory.mktemp("raw_master")
    write_raw_layout(root, simulated.patches, simulated.labels, random_suffixes(7),
                     label_order=shuffled_label_order(list(simulated.labels), 7))
    return root


@pytest.fixture
def raw_copy(raw_master, tmp_path) -> Path:
    """A fresh copy of the simulated raw folder that a test may break."""
    dest = tmp_path / "raw"
    shutil.copytree(raw_master, dest)
    return dest
