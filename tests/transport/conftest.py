"""Shared fixtures of the transport tests: the benchmark arrays shipped in third_party/."""
from __future__ import annotations

import pytest
import torch

from echocem.transport.benchmark import load_pair
from tests.pipeline import REPO

torch.set_num_threads(1)
DATA_DIR = REPO / "third_party" / "w2bench"


@pytest.fixture(scope="session")
def pair2():
    return load_pair(DATA_DIR, 2)


@pytest.fixture(scope="session")
def pair4():
    return load_pair(DATA_DIR, 4)
