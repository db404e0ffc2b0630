"""Fixtures of the teachers tests: a lab whose nexa.yaml prices the fake teacher."""

from __future__ import annotations

import pytest
import yaml
from fake_teacher_server import MODEL, PRICE

from nexa.ledger import Lab


@pytest.fixture
def lab(tmp_path) -> Lab:
    """A fresh lab whose nexa.yaml prices the fake teacher."""
    root = Lab.init(tmp_path / "lab").root
    config = yaml.safe_load((root / "nexa.yaml").read_text())
    config["prices"] = {"models": {MODEL: PRICE}}
    (root / "nexa.yaml").write_text(yaml.safe_dump(config))
    return Lab(root)
