"""SkyPilot as a separate process: find its interpreter, run ``sky_driver.py`` there, exchange JSON.

SkyPilot cannot share the lab's environment (it pins ``click<8.2``; huggingface-hub and wandb need
click >= 8.2), so it is installed on its own and reached only through the driver. Where its interpreter is:

1. ``$NEXA_SKYPILOT_PYTHON`` (an error if it is set and not executable);
2. ``.venv-sky/bin/python`` next to the project (``make test`` creates it with ``skypilot==0.14.1``);
3. the interpreter of a ``sky`` on ``PATH`` (e.g. ``pipx install skypilot``), read from its ``#!`` line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from nexa.infra.launch import LaunchRefused

PYTHON_ENV = "NEXA_SKYPILOT_PYTHON"
DRIVER_FILE = Path(__file__).with_name("sky_driver.py")
PROJECT_VENV = Path(__file__).resolve().parents[3] / ".venv-sky" / "bin" / "python"
INSTALL_HINT = ("install SkyPilot in its own environment: `python3 -m venv .venv-sky && .venv-sky/bin/pip install "
                "'skypilot[lambda,runpod,kubernetes,aws,gcp]==0.14.1'` (or `pipx install skypilot`), or set $NEXA_SKYPILOT_PYTHON")


class SkyPilotNotFound(LaunchRefused):
    """No SkyPilot interpreter on this machine; the message says how to install one."""


class SkyDriverError(ValueError):
    """SkyPilot refused or failed an operation; ``kind`` is its exception's class name.

    A ValueError so the CLI prints it as one ``error: SkyPilot <op>: <kind>: <message>`` line (exit 2).
    """

    def __init__(self, op: str, kind: str, message: str):
        super().__init__(f"SkyPilot {op}: {kind}: {message}")
        self.kind = kind


def find_sky_python() -> Path | None:
    """SkyPilot's interpreter (see the module docstring for the order), or None where there is none."""
    configured = os.environ.get(PYTHON_ENV)
    if configured:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SkyPilotNotFound(f"${PYTHON_ENV}={configured} is not an executable Python interpreter")
        return path
    if PROJECT_VENV.is_file():
        return PROJECT_VENV
    sky = shutil.which("sky")
    if sky:
        first = Path(sky).read_bytes()[:512].split(b"\n", 1)[0].decode(errors="replace")
        if first.startswith("#!") and Path(first[2:].strip()).is_file():
            return Path(first[2:].strip())
    return None


def require_sky_python() -> Path:
    found = find_sky_python()
    if found is None:
        raise SkyPilotNotFound(f"SkyPilot was not found; {INSTALL_HINT}")
    return found


def call(op: str, payload: dict | None = None, *, python: Path | None = None, timeout: float | None = 900,
         env: dict[str, str] | None = None) -> dict:
    """Run one driver operation in SkyPilot's interpreter; its answer, or :class:`SkyDriverError`.

    The payload (secrets included, for ``launch``) goes on stdin only. The interpreter runs isolated
    (``-I``), so the lab's ``PYTHONPATH`` and user site never leak into SkyPilot's environment.
    SkyPilot's own output goes to this process's stderr.
    """
    interpreter = python or require_sky_python()
    request = json.dumps({"op": op, **(payload or {})})
    proc = subprocess.run([str(interpreter), "-I", str(DRIVER_FILE)], input=request, stdout=subprocess.PIPE, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise SkyDriverError(op, "NoAnswer", f"{interpreter} exited {proc.returncode} without an answer (see stderr)")
    answer = json.loads(lines[-1])
    if not answer.get("ok"):
        raise SkyDriverError(op, answer.get("kind", "Error"), answer.get("error", ""))
    return answer


def batch(requests: list[dict], *, python: Path | None = None, timeout: float | None = 900) -> list[dict]:
    """Several driver operations in one SkyPilot process (its import alone takes seconds); each answer as
    the driver gave it (``ok`` true or false), in order: a failed one does not stop the others."""
    return call("batch", {"requests": requests}, python=python, timeout=timeout)["answers"]
