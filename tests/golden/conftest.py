"""The one real golden run (``nexa demo --json`` twice in a fresh lab), shared by every golden test module."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

NEXA = [sys.executable, "-m", "nexa.cli"]


def _demo(lab: Path) -> tuple[dict, float]:
    started = time.perf_counter()
    proc = subprocess.run([*NEXA, "demo", "--lab", str(lab), "--json"], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout), time.perf_counter() - started


@pytest.fixture(scope="session")
def golden(tmp_path_factory):
    lab = tmp_path_factory.mktemp("golden") / "lab"
    first, first_seconds = _demo(lab)
    second, second_seconds = _demo(lab)
    return {"lab": lab, "first": first, "second": second, "t1": first_seconds, "t2": second_seconds}
