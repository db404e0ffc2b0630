"""Every command, given a user's mistake, prints one ``error:`` line and exits 2: no traceback, no failed run.

The test walks every command registered in the Typer app (so a command added later is covered
without editing this file), fills its required parameters with paths that do not exist and ids that
are unknown, and runs it twice: outside any lab, and inside an empty lab.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import typer.main
from typer import _click as click
from typer.testing import CliRunner

from nexa.cli import app
from nexa.ledger.runs import list_runs

# Commands whose job is to create a lab or to run one, or to start the token session: given nothing wrong,
# they succeed (their own mistakes are tested beside them).
CREATES_A_LAB = {("init",), ("demo",), ("session", "start")}


def _leaves(command, path=()):
    if hasattr(command, "list_commands"):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            yield from _leaves(command.get_command(ctx, name), path + (name,))
    else:
        yield path, command


def _bogus(param, missing: str) -> list[str]:
    """A wrong but well-formed value: a path that does not exist, an unknown id, a valid number."""
    annotation = param.type_descriptor.annotation
    annotation = (typing.get_args(annotation) or (annotation,))[0] if typing.get_origin(annotation) is list else annotation
    if annotation is int:
        value = str(param.min if param.min is not None else 1)
    elif annotation is float:
        value = "0.5"
    elif annotation is Path:
        value = missing
    else:
        value = "ghost-id"
    return [value] if param.param_type_name == "argument" else [param.opts[0], value]


def _args(command, missing: str, lab: str) -> list[str]:
    args: list[str] = []
    for param in command.params:
        if param.name == "lab_dir":
            args += [param.opts[0], lab]
        elif param.required:
            args += _bogus(param, missing)
    return args


COMMANDS = sorted((path, command) for path, command in _leaves(typer.main.get_command(app)) if path[:1] not in CREATES_A_LAB
                  and path not in CREATES_A_LAB)


def test_every_command_is_walked():
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"data list", "runs list", "lineage", "eval analyze", "niwt profile", "train", "serve"} <= names
    assert len(names) >= 30


@pytest.mark.parametrize("path, command", COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_a_mistake_is_one_error_line_and_exit_2(path, command, tmp_path, monkeypatch):
    outside = tmp_path / "not-a-lab"
    outside.mkdir()
    monkeypatch.chdir(outside)
    missing = str(tmp_path / "missing" / "nothing-here")
    result = CliRunner().invoke(app, [*path, *_args(command, missing, str(outside))])
    _assert_user_error(result)


WITH_AN_INPUT = [(p, c) for p, c in COMMANDS if any(param.required for param in c.params)]


@pytest.mark.parametrize("path, command", WITH_AN_INPUT, ids=[" ".join(p) for p, _ in WITH_AN_INPUT])
def test_a_mistake_in_a_lab_writes_no_failed_run(path, command, lab, tmp_path, monkeypatch):
    monkeypatch.chdir(lab.root)
    missing = str(tmp_path / "missing" / "nothing-here")
    result = CliRunner().invoke(app, [*path, *_args(command, missing, str(lab.root))])
    _assert_user_error(result)
    assert [r.run_id for r in list_runs(lab) if r.status == "failed"] == []


def _assert_user_error(result) -> None:
    output = result.output.strip()
    assert result.exit_code == 2, (result.exit_code, output, result.exception)
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in output, output[-400:]
