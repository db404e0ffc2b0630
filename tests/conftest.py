"""Test-wide settings: offline, seeded, and a fresh lab per test."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
for _var in ("NEXA_SCRATCH", "NEXA_DURABLE", "NEXA_RUN_ID", "NEXA_CHECKPOINT_DIR", "NEXA_DURABLE_CHECKPOINT_DIR"):
    os.environ.pop(_var, None)


def pytest_collection_modifyitems(session, config, items):
    from golden_background import golden_last

    golden_last(items)


@pytest.fixture(scope="session", autouse=True)
def background_runs(request, tmp_path_factory):
    """Start the golden runs the selected tests need as the session starts (see golden_background.py)."""
    from golden_background import BackgroundRuns, RUNS, runs_needed

    runs = BackgroundRuns(tmp_path_factory.mktemp("background"))
    for name in runs_needed(request.session.items):
        runs.start(name, RUNS[name])
    yield runs
    runs.stop()


@pytest.fixture
def lab(tmp_path):
    from nexa.ledger import Lab

    return Lab.init(tmp_path / "lab")

# Property tests explore the same examples on every run (and in CI), so a red test always reproduces.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("nexa", derandomize=True)
_hypothesis_settings.load_profile("nexa")
