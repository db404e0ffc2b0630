"""Running one stage function outside a pipeline: what every layer's command does.

A command names the stage's inputs as folders (a pipeline's ``.nexa/durable/stages/<stage>/<key>/`` or an
earlier command's ``--out``) and a new ``--out`` folder; :func:`run_stage` checks them all before a run is
opened (so a mistyped path leaves no failed run behind), then calls the same function the pipeline runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from nexa.ledger import Lab
from nexa.ledger.console import command_run
from nexa.ledger.hashing import sha256_file
from nexa.ledger.runs import RunContext


class FolderContext:
    """The :class:`nexa.ledger.stage.StageContext` of a command: input folders given by the user."""

    def __init__(self, lab: Lab, run: RunContext, out: Path, inputs: dict[str, Path], seed: int):
        self.lab, self.run, self.out, self.inputs, self.seed = lab, run, out, inputs, seed
        self.pipeline = "cli"

    def input(self, name: str) -> Path:
        if name not in self.inputs or not self.inputs[name].is_dir():
            raise typer.BadParameter(f"the {name!r} input folder {self.inputs.get(name)} does not exist",
                                     param_hint=_flag(name))
        return self.inputs[name]

    def summary_of(self, name: str) -> dict:
        file = self.input(name) / "summary.json"
        if not file.exists():
            raise typer.BadParameter(f"{file} is missing: point {_flag(name)} at the output of its command or stage")
        return json.loads(file.read_text())


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def new_out(out: Path) -> Path:
    """Outputs are immutable: ``out`` must be new or empty."""
    if out.exists() and any(out.iterdir()):
        raise typer.BadParameter(f"{out} exists and is not empty; outputs are immutable, choose a new folder", param_hint="--out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def outputs(folder: Path) -> list[dict]:
    """Every file of a command's ``--out`` with its hash: the ``outputs`` of its JSON result."""
    return [{"path": str(p), "sha256": sha256_file(p)} for p in sorted(folder.rglob("*")) if p.is_file()]


def require_paths(**paths: Optional[Path]) -> None:
    """Every path the user named must exist, checked before a run opens; the error names the flag."""
    for name, path in paths.items():
        if path is not None and not Path(path).exists():
            raise typer.BadParameter(f"{path} does not exist", param_hint=_flag(name))


def run_stage(lab_dir: Path, run_type: str, out: Path, inputs: dict[str, Optional[Path]], seed: int,
              function: Callable[..., dict], **params: Any) -> tuple[str, dict]:
    """Check the lab and every input folder, open a run, call the stage function, write ``summary.json``."""
    lab = Lab.find(lab_dir)
    given = {name: Path(path) for name, path in inputs.items() if path is not None}
    require_paths(**given)
    out = new_out(out)
    with command_run(lab, run_type, config={k: str(v) for k, v in {**inputs, **params}.items()}, seed=seed) as run:
        summary = function(FolderContext(lab, run, out, given, seed), **params)
        (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return run.run_id, summary
