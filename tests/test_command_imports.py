"""Start-up stays light (issue 19): ``nexa --help`` imports no layer, and importing every layer's ``commands.py``
(what running one command costs before it does any work) pulls in none of the heavy libraries. Those are
imported inside the command function that uses them, so ``nexa --help`` stays well under a second.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = {"torch", "transformers", "fastapi", "uvicorn", "starlette", "peft", "trl", "accelerate", "datasets", "optuna",
         "wandb", "sentence_transformers", "playwright", "lm_eval"}
COMMAND_MODULES = sorted(f"nexa.{path.parent.name}.commands" for path in (SRC / "nexa").glob("*/commands.py"))


def _modules_after(code: str) -> set[str]:
    """Every module a fresh interpreter holds after running ``code``."""
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_nexa_help_imports_no_layer():
    loaded = _modules_after("from typer.testing import CliRunner\nfrom nexa.cli import app\n"
                            "result = CliRunner().invoke(app, ['--help'])\nassert result.exit_code == 0, result.output\n"
                            "assert 'data' in result.output and 'serve' in result.output")
    assert sorted(m for m in loaded if m.startswith("nexa.") and m != "nexa.cli") == []
    assert {m.split(".")[0] for m in loaded} & HEAVY == set()


def test_no_commands_module_imports_a_heavy_library():
    assert len(COMMAND_MODULES) >= 12
    loaded = _modules_after("\n".join(f"import {module}" for module in COMMAND_MODULES))
    assert sorted({m.split(".")[0] for m in loaded} & HEAVY) == []


def _runs_list_reports(setup: str, report: str, name: str, value: str | None) -> list:
    """Run ``nexa runs list`` in a fresh interpreter with the environment variable ``name`` set to ``value`` (None:
    unset); ``setup`` runs before ``nexa.cli`` is imported, and ``report`` (a JSON-able expression, which may read
    ``numpy_before_main``) is evaluated after ``main``."""
    probe = (f"import json, os, sys\n{setup}\nfrom nexa.cli import main\nnumpy_before_main = 'numpy' in sys.modules\n"
             "sys.argv = ['nexa', 'runs', 'list', '--json']\n"
             f"try:\n    main()\nexcept SystemExit:\n    pass\nprint(json.dumps({report}), file=sys.stderr)")
    env = {k: v for k, v in os.environ.items() if k != name}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    if value is not None:
        env[name] = value
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stderr.strip().splitlines()[-1])


def _plugin_lookups(env_value: str | None) -> tuple[str | None, int]:
    """The PYDANTIC_DISABLE_PLUGINS a command ran with, and how many times pydantic looked for plugins' entry points."""
    setup = ("import pydantic.plugin._loader as loader\ncalls = []\nfound = loader.entry_points\n"
             "loader.entry_points = lambda **kw: calls.append(kw) or found(**kw)")
    setting, lookups = _runs_list_reports(setup, "[os.environ.get('PYDANTIC_DISABLE_PLUGINS'), len(calls)]",
                                          "PYDANTIC_DISABLE_PLUGINS", env_value)
    return setting, lookups


def test_commands_skip_pydantics_plugin_lookup_unless_the_user_set_it():
    assert _plugin_lookups(None) == ("__all__", 0)
    assert _plugin_lookups("") == ("", 1)  # the user's choice is kept: plugins are looked up


def _blas_setting(env_value: str | None) -> tuple[bool, str | None]:
    """Whether numpy was loaded before ``main`` ran (then the setting would come too late for OpenBLAS), and the
    OPENBLAS_THREAD_TIMEOUT the command ran with."""
    before, setting = _runs_list_reports("", "[numpy_before_main, os.environ.get('OPENBLAS_THREAD_TIMEOUT')]",
                                         "OPENBLAS_THREAD_TIMEOUT", env_value)
    return before, setting


def test_commands_let_openblas_threads_sleep_unless_the_user_set_it():
    assert _blas_setting(None) == (False, "4")
    assert _blas_setting("20") == (False, "20")  # the user's choice is kept
