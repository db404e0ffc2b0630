"""Fixtures of the training tests: a lab with a small reasoning dataset, a char tokenizer and tiny configs."""

from __future__ import annotations

import os

import pytest
import torch
from train_fixtures import make_lab

from nexa.ledger import Lab

# One thread: on a shared 2-core machine more threads than free cores make tiny models 20x slower,
# and subprocesses (torchrun workers, the killed run) inherit the same setting.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


@pytest.fixture
def lab(tmp_path) -> Lab:
    return make_lab(tmp_path / "lab")
