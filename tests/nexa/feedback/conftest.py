"""Fixtures of the feedback tests: a lab with a small versioned capability dataset (train + eval)."""

from __future__ import annotations

import pytest

from nexa.data.generators import generate
from nexa.ledger import Lab
from nexa.ledger.datasets import write_dataset_version


@pytest.fixture
def lab(tmp_path) -> Lab:
    return Lab.init(tmp_path / "lab")


@pytest.fixture
def chem_ref(lab) -> str:
    """``fb-chemistry@v1``: 20 train rows and 10 eval rows of the built-in chemistry generator."""
    evals = generate("chemistry", 10, seed=1042)
    train = generate("chemistry", 20, seed=42, exclude={r["prompt"] for r in evals})
    rows = [{**r, "split": "train"} for r in train] + [{**r, "split": "eval"} for r in evals]
    return write_dataset_version(lab, "fb-chemistry", rows, row_schema="qa", splits={"train": 20, "eval": 10}).ref
