"""Every ``nexa`` command written in the README and docs/ names a real command, real options and files
that exist, and its ``--help`` runs; ``orchestrate.py`` names configs that exist.

This test checks, in seconds, what goes stale when code moves: command names, option names and shipped
files. ``tests/golden/test_golden_docs.py`` runs them in the lab ``make demo`` leaves.
"""

from __future__ import annotations

import re
import shlex

import pytest
import typer.main
from typer import _click as click
from typer.testing import CliRunner

from documented import ROOT, documented_lines
from nexa.cli import app

ROOT_GROUP = typer.main.get_command(app)


def _resolve(words: list[str]):
    command, path = ROOT_GROUP, []
    while hasattr(command, "list_commands") and words and not words[0].startswith("-"):
        sub = command.get_command(click.Context(command), words[0])
        if sub is None:
            break
        command, path, words = sub, path + [words.pop(0)], words
    return command, path, words


DOCUMENTED = documented_lines()


def test_docs_document_commands():
    assert len(DOCUMENTED) >= 10


@pytest.mark.parametrize("doc, line", DOCUMENTED, ids=[line for _, line in DOCUMENTED])
def test_a_documented_command_exists_with_its_options_and_files(doc, line):
    command, path, rest = _resolve(shlex.split(line)[1:])
    assert path or rest == ["--help"], f"{doc}: `{line}` names no nexa command"
    known = {opt for param in command.params for opt in param.opts + param.secondary_opts}
    used = {word.split("=")[0] for word in rest if word.startswith("--")}
    assert used <= known | {"--help"}, f"{doc}: `{line}` uses options {sorted(used - known)} that `nexa {' '.join(path)}` lacks"
    for word in rest:
        if word.startswith("configs/"):
            assert (ROOT / word).exists() or word == "configs/autotuned.yaml", f"{doc}: `{line}` names {word}, which is not shipped"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output


def test_orchestrate_names_files_that_exist():
    named = set(re.findall(r"configs/[\w./-]+\.(?:yaml|json|csv)", (ROOT / "orchestrate.py").read_text()))
    assert named and all((ROOT / name).exists() for name in named), sorted(n for n in named if not (ROOT / n).exists())
