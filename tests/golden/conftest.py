"""The golden runs shared by every golden test module; made in the background from the session's start."""

import pytest


@pytest.fixture(scope="session")
def golden(background_runs):
    """The real golden run: ``nexa demo --json`` in a fresh lab, then again (everything cached)."""
    return background_runs.result("demo")


@pytest.fixture(scope="session")
def golden_after_demo(background_runs):
    """The documented commands run in the demo's lab and the bundle re-verified with 1 and 2 torch threads."""
    return background_runs.result("after_demo")


@pytest.fixture(scope="session")
def golden_relaunch(background_runs):
    """The golden pipeline launched on the local backend against S3, SIGKILLed midway and launched again."""
    return background_runs.result("infra_relaunch")


@pytest.fixture(scope="session")
def golden_sigkill(background_runs):
    """A tiny golden variant SIGKILLed at three points, then run to the end."""
    return background_runs.result("sigkill")
