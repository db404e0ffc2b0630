"""``nexa data ...``: list, show and create dataset versions."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from nexa.ledger import Lab
from nexa.ledger.console import console, emit_result, table
from nexa.ledger.datasets import read_dataset_manifest, read_dataset_rows
from nexa.ledger.registry import DatasetRegistry

app = typer.Typer(help="Datasets: list, show, prepare, generate, diff.", no_args_is_help=True)


@app.command("list")
def list_datasets(lab_dir: Path = typer.Option(Path("."), "--lab"), json_out: bool = typer.Option(False, "--json")) -> None:
    """Every dataset in the registry with its versions, rows and hash."""
    entries = DatasetRegistry(Lab.find(lab_dir).registry_dir).all()
    if json_out:
        emit_result({"datasets": {k: [v.model_dump() for v in vs] for k, vs in entries.items()}}, True)
        return
    rows = [(k, f"v{v.version}", v.rows, v.hash[:12], ",".join(v.parents)) for k, vs in entries.items() for v in vs]
    console.print(table("datasets", ["id", "version", "rows", "hash", "parents"], rows))


@app.command("show")
def show(ref: str = typer.Argument(..., help="ID or ID@vN"), lab_dir: Path = typer.Option(Path("."), "--lab"),
         samples: int = typer.Option(3, help="Sample rows to print."), json_out: bool = typer.Option(False, "--json")) -> None:
    """A version's schema, counts, filters, lineage and a few rows."""
    lab = Lab.find(lab_dir)
    manifest = read_dataset_manifest(lab, ref)
    rows = read_dataset_rows(lab, ref)[:samples]
    if json_out:
        emit_result({"manifest": json.loads(manifest.model_dump_json()), "samples": rows}, True)
        return
    console.print_json(manifest.model_dump_json())
    for row in rows:
        console.print(row)
