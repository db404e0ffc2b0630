"""The ``nexa`` command: one sub-command group per layer, registered here; no logic of its own."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Optional

import typer

from nexa.ledger import Lab
from nexa.ledger.console import console, emit_result, table

app = typer.Typer(help="NexaCompute: make data, distill teachers into small verified students, ship bundles.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
runs_app = typer.Typer(help="Inspect runs recorded in the lab's ledger.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

# Each layer that has commands owns a Typer app in ``nexa.<layer>.commands``; (module, name, help).
LAYER_COMMANDS: list[tuple[str, str]] = [
    ("nexa.data.commands", "data"),
    ("nexa.teachers.commands", "distill"),
    ("nexa.bundle.commands", "bundle"),
    ("nexa.niwt.commands", "niwt"),
    ("nexa.eval.commands", "eval"),
]
# Layers whose commands sit at the top level (``nexa demo``, ``nexa run``) rather than in a group.
TOP_LEVEL_COMMANDS: list[str] = ["nexa.pipeline.commands", "nexa.train.commands", "nexa.serve.commands", "nexa.feedback.commands",
                               "nexa.ui.commands"]


def _register() -> None:
    for module_name, group in LAYER_COMMANDS:
        module = importlib.import_module(module_name)
        app.add_typer(module.app, name=group)
    for module_name in TOP_LEVEL_COMMANDS:
        importlib.import_module(module_name).register(app)


@app.command()
def init(path: Path = typer.Argument(Path("."), help="Folder of the new lab."),
         name: Optional[str] = typer.Option(None, help="Lab name (default: folder name)."),
         json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout.")) -> None:
    """Create a lab: nexa.yaml, runs/, registry/, pipelines/, .nexa/ (idempotent)."""
    from nexa.pipeline.spec import install_builtin_pipelines

    lab = Lab.init(path, name=name)
    written = install_builtin_pipelines(lab)
    result = {"run_id": None, "status": "succeeded", "lab": str(lab.root),
              "outputs": [{"path": str(p)} for p in written]}
    if not json_out:
        console.print(f"lab ready at [bold]{lab.root}[/bold]; try `nexa run {lab.root}/pipelines/golden.yaml`")
    emit_result(result, json_out)


@runs_app.command("list")
def runs_list(lab_dir: Path = typer.Option(Path("."), "--lab", help="Lab folder."),
              json_out: bool = typer.Option(False, "--json")) -> None:
    """List runs, newest last, with type, status and cost."""
    from nexa.ledger.runs import list_runs

    runs = list_runs(Lab.find(lab_dir))
    if json_out:
        emit_result({"runs": [json.loads(r.model_dump_json(include={"run_id", "run_type", "status", "cost_estimate_usd_total", "parent_run_id"})) for r in runs]}, True)
        return
    rows = [(r.run_id, r.run_type, r.status, r.parent_run_id or "", f"{r.cost_estimate_usd_total:.4f}") for r in runs]
    console.print(table("runs", ["run_id", "type", "status", "parent", "cost $"], rows))


@runs_app.command("show")
def runs_show(run_id: str, lab_dir: Path = typer.Option(Path("."), "--lab"),
              json_out: bool = typer.Option(False, "--json")) -> None:
    """Show one run's manifest."""
    from nexa.ledger.runs import load_run

    manifest = load_run(Lab.find(lab_dir), run_id)
    if json_out:
        emit_result(json.loads(manifest.model_dump_json()), True)
    else:
        console.print_json(manifest.model_dump_json())


@app.command()
def lineage(ref: str = typer.Argument(..., help="A run id, a dataset ID@vN, or a stage output NAME:KEY."),
            lab_dir: Path = typer.Option(Path("."), "--lab"),
            json_out: bool = typer.Option(False, "--json")) -> None:
    """Trace an artifact or run back to the raw data it came from."""
    from nexa.ledger.lineage import render_tree, trace

    tree = trace(Lab.find(lab_dir), ref)
    if json_out:
        emit_result(tree, True)
    else:
        console.print(render_tree(tree))


def main() -> None:
    import sys

    from nexa.ledger.console import reserve_stdout_for_json

    if "--json" in sys.argv[1:]:
        reserve_stdout_for_json()
    app()


_register()

if __name__ == "__main__":
    main()
