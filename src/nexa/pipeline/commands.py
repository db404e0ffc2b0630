"""Top-level commands of the pipeline layer: ``nexa run PIPELINE.yaml`` and ``nexa demo``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import typer

from nexa.infra.cost import BudgetExceededError
from nexa.ledger import Lab
from nexa.ledger.console import JSON, console, emit_result, table
from nexa.pipeline.runner import PipelineResult, StageFailedError, run_pipeline
from nexa.pipeline.spec import export_demo_tokenizer, install_builtin_pipelines, load_pipeline
from nexa.pipeline.workers import node_threads


def _jobs_option(default_help: str) -> Any:
    return typer.Option(None, "--jobs", min=1, help=(
        "Stages run side by side, each in its own worker process with its share of the node's threads; a stage "
        f"starts once the stages it needs are committed. Default: {default_help}."))


def run(pipeline: Path = typer.Argument(..., help="Pipeline YAML file."),
        lab_dir: Optional[Path] = typer.Option(None, "--lab", help="Lab folder (default: the one containing the file)."),
        jobs: Optional[int] = _jobs_option("1, one stage at a time in this process"),
        json_out: bool = JSON) -> None:
    """Run a pipeline; stages whose code, parameters and inputs are unchanged are reused."""
    lab = Lab.find(lab_dir or pipeline.resolve().parent)
    result = _execute(lab, pipeline, jobs or 1)
    emit_result(result.as_json(lab), json_out)


def demo(lab_dir: Path = typer.Option(Path("nexa-demo"), "--lab", help="Lab folder, created if missing."),
         jobs: Optional[int] = _jobs_option("2 on a node with 2 or more cores (the golden pipeline's stages are "
                                            "small CPU models: one core each), else 1"),
         json_out: bool = JSON) -> None:
    """Create a lab and run the golden pipeline in it (CPU, no network, minutes)."""
    lab = Lab.init(lab_dir)
    install_builtin_pipelines(lab)
    result = _execute(lab, lab.root / "pipelines" / "golden.yaml", jobs or min(2, node_threads()))
    export_demo_tokenizer(lab, result.outputs)
    emit_result(result.as_json(lab), json_out)


def _execute(lab: Lab, pipeline: Path, jobs: int) -> PipelineResult:
    spec = load_pipeline(pipeline)
    started = time.perf_counter()
    try:
        result = run_pipeline(lab, spec, jobs)
    except StageFailedError as exc:
        console.print(f"[red]pipeline {spec.name!r} failed:[/red] {exc}")
        console.print(f"see `nexa runs show {exc.run_id} --lab {lab.root}` and runs/logs/{exc.run_id}.jsonl")
        raise typer.Exit(1) from exc
    except BudgetExceededError as exc:
        console.print(f"[red]pipeline {spec.name!r} stopped:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(table(f"pipeline {spec.name} ({time.perf_counter() - started:.1f}s)", ["stage", "status", "seconds"],
                        [(s.name, s.status, round(s.seconds, 2)) for s in result.stages]))
    return result
